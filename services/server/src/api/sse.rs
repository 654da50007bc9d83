//! `GET /v1/events/stream?kind_prefix=&since=&cluster=&instance=`: the
//! account's events as server-sent events, catch-up then live, for tools
//! and `powernode events tail --follow`.
//!
//! * Each event is `id: <seq>`, `event: <kind>`, `data: <the JSON object
//!   recent_events answers, with seq>`; a comment every 15 s keeps idle
//!   connections (and the proxies in between) alive.
//! * Where it starts: after the `Last-Event-ID` header's sequence when one
//!   is sent (a reconnecting client gets exactly what it has not seen; it
//!   wins over `since`), else at `since` (a sequence, an RFC 3339 time or a
//!   duration like `10m`, see [`query::Since`]), else *from now*: after the
//!   log's last sequence, read once, never the whole history.
//! * When the start is a sequence, the stream opens with an event that
//!   carries only `id: <start - 1>`: a client that loses the connection
//!   before any event arrives still knows where to resume.
//! * Bearer authentication as for actions; only the token's account.
//! * The stream rides on [`EventLog::subscribe`](powernode_log::EventLog::subscribe),
//!   so it works on both backends and survives a nats-server restart.

pub mod query;

use super::auth::authenticate;
use super::error::{ApiError, ErrorCode};
use super::ApiState;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use powernode_log::{Record, StartAt};
use query::{Scope, Since};
use serde::Deserialize;
use std::convert::Infallible;
use std::time::Duration;
use tracing::{debug, warn};

/// The route.
pub const PATH: &str = "/v1/events/stream";
/// How often an idle stream sends a keep-alive comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The reconnection delay suggested to browsers (`retry:`).
const RETRY: Duration = Duration::from_secs(1);

/// Query parameters of the stream.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Only kinds starting with this.
    #[serde(default)]
    pub kind_prefix: Option<String>,
    /// Where to start (ignored when `Last-Event-ID` is sent).
    #[serde(default)]
    pub since: Option<String>,
    /// Only events about this cluster.
    #[serde(default)]
    pub cluster: Option<String>,
    /// Only events about this instance.
    #[serde(default)]
    pub instance: Option<String>,
}

/// `GET /v1/events/stream`.
pub async fn stream(State(st): State<ApiState>, headers: HeaderMap, uri: Uri) -> Response {
    match open(&st, &headers, &uri).await {
        Ok(sse) => sse.into_response(),
        Err(e) => e.into_response(),
    }
}

/// Authenticates, parses where to start, and subscribes.
async fn open(
    st: &ApiState,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let operator = authenticate(headers, &*st.fleet.state.read().await)?;
    let Query(q) = Query::<StreamQuery>::try_from_uri(uri)
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidArguments, e.body_text()))?;
    let scope = Scope::new(operator.account, q.kind_prefix, q.cluster, q.instance);
    let since = q
        .since
        .filter(|s| !s.trim().is_empty())
        .map(|s| Since::parse(&s, chrono::Utc::now()))
        .transpose()
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidArguments, format!("since: {e}")))?;
    let (start, position) = match (last_event_id(headers)?, since) {
        (Some(id), _) => (StartAt::Seq(id.saturating_add(1)), Some(id)),
        (None, Some(Since::Seq(s))) => (StartAt::Seq(s.max(1)), Some(s.max(1) - 1)),
        (None, Some(Since::Time(t))) => (StartAt::Time(t), None),
        (None, None) => {
            // From now: the position is read once and the subscription
            // starts right after it, so nothing older is ever sent and
            // nothing appended after this point is missed.
            let last = st.log.last_seq().await?;
            (StartAt::Seq(last + 1), Some(last))
        }
    };
    debug!(?start, ?scope, "event stream opened");
    let records = st.log.subscribe(start, scope.filter.clone()).await?;
    let opening = position.map(|p| Event::default().id(p.to_string()).retry(RETRY));
    let events = records
        .take_while(|r| {
            let ok = r.is_ok();
            if let Err(e) = r {
                // Subscriptions carry on through transient errors: this one
                // is final. The client reconnects with Last-Event-ID.
                warn!(error = %e, "event stream ended by the log");
            }
            std::future::ready(ok)
        })
        .filter_map(move |r| {
            let shown = r.ok().and_then(|record| to_event(&scope, &record));
            std::future::ready(shown)
        });
    let body = futures::stream::iter(opening)
        .chain(events)
        .map(Ok)
        .take_until(st.shutdown.clone().cancelled_owned());
    Ok(Sse::new(body).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive")))
}

/// The SSE event for a record in scope.
fn to_event(scope: &Scope, record: &Record) -> Option<Event> {
    let v = scope.event_json(record)?;
    let kind = v["kind"].as_str().unwrap_or_default().to_string();
    let mut event = Event::default().id(record.seq.to_string());
    if !kind.is_empty() {
        event = event.event(kind);
    }
    Some(event.data(v.to_string()))
}

/// The `Last-Event-ID` header as a sequence; a malformed one is refused.
fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(v) = headers.get("last-event-id") else {
        return Ok(None);
    };
    let text = v.to_str().unwrap_or_default().trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        ApiError::bad_request(
            ErrorCode::InvalidArguments,
            format!(
                "Last-Event-ID: expected the sequence of the last event received, got {text:?}"
            ),
        )
    })
}
