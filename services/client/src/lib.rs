//! `powernode-client`: the one HTTP client of powernode's operator API,
//! for the CLI, the benches and the tests. It calls actions
//! (`POST {base}/v1/actions/<name>`), reads the event stream
//! (`GET {base}/v1/events/stream`, server-sent events) and downloads
//! exports (`GET {base}/v1/events/export`), over http or https, on
//! [reqwest] (HTTP/1.1, keep-alive, chunked bodies, proxies from the
//! environment) with rustls on the `ring` provider, [url] for the URLs and
//! [percent_encoding] for query values.
//!
//! * [`config`]: [`ClientConfig`] (URL, token, CA file, time limit), the
//!   base URL with its path prefix (`https://host:8443/powernode/` →
//!   `https://host:8443/powernode/v1/actions/x`) and the TLS set-up:
//!   the system's CA roots, or only those of a given PEM file.
//! * [`api`]: [`Api`], actions on pooled connections (raw JSON, raw bytes,
//!   or typed through serde: [`Api::call_json`], the hook a typed action
//!   table wraps), and [`request`], one request on its own connection.
//! * [`events`]: [`EventStream`], resumable with `Last-Event-ID`, and the
//!   one percent-encoder of query values.
//! * [`export`]: [`ExportBody`] (the export as a stream of bytes) and
//!   [`Api::download`] (into a file, with progress).
//! * [`tls`]: whom https trusts (the CA pinned in a context, the
//!   `--ca-cert` file, or the system's roots) and refusals in words
//!   ([`CertProblem`]: a changed CA with both fingerprints, an expiry time,
//!   a name mismatch), [`probe`] for trust on first use, [`fingerprint`].
//! * [`error`]: [`ActionError`] (a [`Refusal`] of the API, keeping its
//!   code and HTTP status, versus a timeout or a transport failure),
//!   [`ConfigError`], [`DownloadError`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use powernode_client::{Api, ClientConfig, EventsQuery};
//! use std::time::Duration;
//!
//! let config = ClientConfig::new("https://host:8443/powernode/", "the-token")
//!     .with_ca_cert("/etc/powernode/ca.pem")
//!     .with_timeout(Duration::from_secs(30));
//! let api = Api::from_config(&config)?;
//! let instances = api.call("system_list_instances", &serde_json::json!({})).await?;
//! let query = EventsQuery { kind_prefix: Some("system.k3s".into()), ..Default::default() };
//! let mut events = api.events(&query.path(), None).await?;
//! while let Some(event) = events.next().await? {
//!     let _ = (event.seq(), event.data);
//! }
//! # let _ = instances;
//! # Ok(())
//! # }
//! ```
//!
//! What it must never do: print (errors and events go to the caller, which
//! decides what a terminal sees); hold state beyond the connection pool
//! and an open stream's own position (no cache, no global: the TLS
//! provider is set per client, never installed process-wide); parse a command line or read a token file
//! (the CLI's clap `ApiArgs` does that and converts into a
//! [`ClientConfig`]); follow redirects (a 3xx is answered as it is, so the
//! token goes nowhere else); retry a call on its own (whether an action
//! may be sent twice is the caller's decision: [`ActionError::is_unheard`]
//! tells it the call may or may not have run); know the archive format
//! (checking an export's frames is the archive reader's, on top of
//! [`ExportBody`]).
//!
//! # From the three hand-written clients
//!
//! Every public item of the hand-written clients (`cli/client.rs`,
//! `cli/sse_client.rs` and `archive/download.rs` before the crate split;
//! the interim `services/client` crate's `lib.rs`, `sse.rs` and
//! `download.rs` after it) and what replaces it:
//!
//! | old | new |
//! | --- | --- |
//! | `cli::client::ApiArgs` (clap) | `powernode_cli::ApiArgs`; `ApiArgs::config` converts into [`ClientConfig`] (`url`, `token`; `ca_cert` and `timeout` are new) |
//! | `ApiArgs::connect(data_dir)` (admin-token fallback) | `powernode_cli::ApiArgs::connect`: reads the token, then [`Api::from_config`] |
//! | `cli::client::Api` | [`Api`] |
//! | `Api::new(url, token) -> Api` | [`Api::new`]`(url, token) -> Result<Api, ConfigError>` (the URL is checked up front) |
//! | `Api::url()`, `Api::token()`, `Api::with_token(t)` | [`Api::url`], [`Api::token`], [`Api::with_token`] |
//! | `Api::call(action, &Value) -> anyhow::Result<Value>` | [`Api::call`] / [`Api::call_raw`]`(name, &Value) -> Result<Value, ActionError>` |
//! | `Api::call_raw(action, &[u8])` (body as typed) | [`Api::call_bytes`]`(name, &[u8])` |
//! | — | [`Api::call_json`]`::<A, R>(name, &A) -> Result<R, ActionError>` |
//! | `cli::client::ActionError { status, code, message }` (struct) | [`Refusal`] `{ status, code, message }` (same fields, same `Display`); [`ActionError::Refused`] carries it |
//! | `ActionError::of(&anyhow::Error) -> Option<&ActionError>` | [`Refusal::of`]`(&e) -> Option<&Refusal>`; [`ActionError::of`] finds any client error |
//! | `ActionError::is(&anyhow::Error, code)` | [`ActionError::is`] / [`Refusal::is`] (same meaning); on a typed error [`ActionError::has_code`] |
//! | "not an `ActionError`" (transport, timeout, bad answer) | [`ActionError::Transport`], [`ActionError::Timeout`], [`ActionError::Malformed`]; [`ActionError::refusal`], [`ActionError::status`], [`ActionError::code`] (`transport`, `timeout`, …, as the tests' `status 0 / "transport"`) |
//! | `cli::client::Answer { status, body }` | [`Answer`] (same fields) |
//! | `cli::client::request(addr, method, path, token, body)` | [`request`] (same arguments; https and path prefixes too); on a pooled client [`Api::request`] |
//! | `cli::sse_client::EventStream::open(url, path, token, last_event_id)` | [`EventStream::open`]`(&api, path, last_event_id)` or [`Api::events`] |
//! | `EventStream::next()`, `EventStream::set_idle_timeout(d)` | [`EventStream::next`], [`EventStream::set_idle_timeout`] |
//! | — (the caller reopened with the last seq) | also [`EventStream::reconnect`], [`EventStream::last_event_id`] |
//! | `cli::sse_client::SseEvent`, `SseEvent::seq()` | [`SseEvent`], [`SseEvent::seq`] |
//! | `cli::sse_client::IDLE_TIMEOUT` | [`IDLE_TIMEOUT`] |
//! | `cli::sse_client::query_string(pairs)` | [`query_string`] (keys encoded too); `api::sse::PATH` + filters: [`EVENTS_PATH`], [`EventsQuery::path`] |
//! | `archive::download::percent_encode` (private) | [`percent_encode`] (the one encoder) |
//! | `archive::download::EXPORT_PATH` | [`EXPORT_PATH`] |
//! | `archive::download::ExportQuery`, `ExportQuery::path()` | [`ExportQuery`], [`ExportQuery::path`] |
//! | `archive::download::token(api, data_dir)` | `powernode_cli::ApiArgs::token` (the same admin-token fallback as `ApiArgs::connect`) |
//! | `archive::download::download(url, token, query, out, on_record)` | the bytes: [`Api::export`] → [`ExportBody::into_stream`] fed to `powernode_archive::download::receive`, which still checks each frame with the archive reader and calls `on_record` (`powernode_inspect::download_export` does both); or [`Api::download`]`(query, out, on_progress)` for a plain file with a byte count |
//!
//! Behaviour kept: bearer token on every request, `Content-Type:
//! application/json`, `{"data": …}` unwrapped (`Null` when absent), the
//! error body decoded (`code` `error` and the raw body as message when it
//! is not the API's JSON), keep-alive with at most [`MAX_IDLE`] idle
//! connections per host shared by clones, `Accept: text/event-stream`,
//! `Cache-Control: no-cache` and `Last-Event-ID` on the stream, a 45 s
//! silence limit on it, events with only an `id:` dispatched (the stream's
//! opening position), a cut-short export body an error, not an end.
//!
//! Behaviour changed: a non-JSON error answer to an action is a
//! [`Refusal`] (code `error`), as it already was on the stream and the
//! export; any 2xx is a success (the API only answers 200); a pooled
//! connection the server closed as the request went out is no longer
//! re-sent by hand (hyper re-sends only requests it had not started
//! writing; the rest is an [`ActionError::Transport`], the caller decides).

pub mod api;
pub mod config;
pub mod error;
pub mod events;
pub mod export;
pub mod tls;

pub use api::{request, Answer, Api};
pub use config::{ClientConfig, MAX_IDLE};
pub use error::{printable, ActionError, ConfigError, Refusal};
pub use events::{
    percent_encode, query_string, EventStream, EventsQuery, SseEvent, EVENTS_PATH, IDLE_TIMEOUT,
};
pub use export::{DownloadError, ExportBody, ExportQuery, EXPORT_PATH};
pub use tls::{cert_info, fingerprint, probe, CertInfo, CertProblem};
