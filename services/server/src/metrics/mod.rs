//! Prometheus metrics (issue 17 item 4): `GET /metrics` on every node.
//!
//! The API serves it beside the actions ([`scrape`]); a node without the
//! API (`powernode serve sensor …`) serves it on `--metrics-listen`
//! ([`start`], plain http). The counters and histograms are the process's
//! ([`powernode_log::metrics`]); a scrape adds the log head and the lag of
//! every consumer this process runs. With `--metrics-token` (or
//! `--metrics-token-file`, env `POWERNODE_METRICS_TOKEN`) a scrape must
//! carry `Authorization: Bearer <token>`, or is answered 401; without one
//! `/metrics` is open (said once at start). Operator tokens are not
//! accepted there: Prometheus gets a token of its own, which grants
//! nothing else. The token is the process's: every `/metrics` of the
//! process asks for it.

use crate::api::ApiState;
use crate::status::SharedBoard;
use anyhow::Context;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use powernode_log::metrics::{self as m, labels, sample};
use powernode_log::SharedLog;
use powernode_runtime::supervisor::Spawner;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tracing::{info, warn};

/// Where the API serves the scrape.
pub const PATH: &str = "/metrics";

/// The content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Env var of the scrape token.
pub const ENV_TOKEN: &str = "POWERNODE_METRICS_TOKEN";

/// Metrics options of a node.
#[derive(Clone, Default, clap::Args)]
pub struct MetricsArgs {
    /// Also serve /metrics (Prometheus text, plain http) on this address:
    /// for nodes without the API (`serve sensor`, …); the API serves
    /// /metrics on its own listener.
    #[arg(long, env = "POWERNODE_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Bearer token a scrape of /metrics must carry (operator tokens do
    /// not work there). Without it (or --metrics-token-file) /metrics is
    /// open.
    #[arg(long, env = ENV_TOKEN, hide_env_values = true, value_name = "TOKEN")]
    pub metrics_token: Option<String>,
    /// File holding the /metrics bearer token (first line).
    #[arg(long, value_name = "FILE", conflicts_with = "metrics_token")]
    pub metrics_token_file: Option<PathBuf>,
}

impl std::fmt::Debug for MetricsArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsArgs")
            .field("metrics_listen", &self.metrics_listen)
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "<secret>"),
            )
            .field("metrics_token_file", &self.metrics_token_file)
            .finish()
    }
}

impl MetricsArgs {
    /// The scrape token the options name, if any (read from the file).
    pub fn token(&self) -> anyhow::Result<Option<String>> {
        let token = match (&self.metrics_token, &self.metrics_token_file) {
            (Some(t), _) => t.trim().to_string(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the metrics token file {}", path.display()))?
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string(),
            (None, None) => return Ok(None),
        };
        if token.is_empty() {
            anyhow::bail!("the metrics token is empty (--metrics-token / --metrics-token-file)");
        }
        Ok(Some(token))
    }
}

/// The process's scrape token.
fn token_slot() -> &'static RwLock<Option<Arc<str>>> {
    static TOKEN: RwLock<Option<Arc<str>>> = RwLock::new(None);
    &TOKEN
}

/// Applies a node's metrics options: keeps the scrape token (the process's
/// from then on), says whether /metrics is open, and with
/// `--metrics-listen` serves /metrics there under `tasks`. `log` and
/// `board` are the node's (head and consumer lag).
pub async fn start(
    args: &MetricsArgs,
    log: &SharedLog,
    board: &SharedBoard,
    tasks: &Spawner,
) -> anyhow::Result<()> {
    if let Some(token) = args.token()? {
        *token_slot().write().unwrap_or_else(|e| e.into_inner()) = Some(token.into());
    }
    let guarded = token_slot()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .is_some();
    if guarded {
        info!("/metrics needs the metrics bearer token");
    } else {
        info!("/metrics is open: no --metrics-token (scrapes need no token)");
    }
    let Some(listen) = args.metrics_listen else {
        return Ok(());
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen for /metrics on {listen}"))?;
    let addr = listener.local_addr()?;
    info!("metrics listening on http://{addr}{PATH}");
    let source = Source {
        log: log.clone(),
        board: board.clone(),
    };
    let app = Router::new()
        .route(PATH, get(scrape_source))
        .with_state(source);
    let stop = tasks.shutdown().clone();
    tasks.spawn("metrics server", async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    });
    Ok(())
}

/// What a scrape reads besides the process's registry.
#[derive(Clone)]
struct Source {
    log: SharedLog,
    board: SharedBoard,
}

/// `GET /metrics` on the API.
pub async fn scrape(State(st): State<ApiState>, headers: HeaderMap) -> Response {
    answer(&st.log, &st.status, &headers).await
}

async fn scrape_source(State(src): State<Source>, headers: HeaderMap) -> Response {
    answer(&src.log, &src.board, &headers).await
}

async fn answer(log: &SharedLog, board: &SharedBoard, headers: &HeaderMap) -> Response {
    if let Err(why) = authorized(headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                "Bearer realm=\"powernode metrics\"",
            )],
            format!("{why}\n"),
        )
            .into_response();
    }
    let body = render(log, board).await;
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

/// Whether the scrape carries the process's token (always, without one).
fn authorized(headers: &HeaderMap) -> Result<(), &'static str> {
    let Some(token) = token_slot()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
    else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        None => Err("/metrics needs `Authorization: Bearer <metrics token>` (the node's --metrics-token; operator tokens do not work here)"),
        Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err("/metrics: wrong metrics token"),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The whole scrape: the registry, the log head, the consumers' lag.
pub async fn render(log: &SharedLog, board: &SharedBoard) -> String {
    let mut out = String::with_capacity(16 * 1024);
    m::encode(&mut out);
    let head = match tokio::time::timeout(Duration::from_secs(2), log.last_seq()).await {
        Ok(Ok(head)) => Some(head),
        Ok(Err(e)) => {
            warn!(error = %e, "metrics: the log head is unknown");
            None
        }
        Err(_) => {
            warn!("metrics: the log did not answer its head within 2 s");
            None
        }
    };
    let reports = board.local_reports(head.unwrap_or(0));
    m::header(&mut out, &m::LOG_HEAD);
    if let Some(head) = head {
        sample(&mut out, m::LOG_HEAD.name, "", head);
    }
    m::header(&mut out, &m::CONSUMER_APPLIED);
    for r in &reports {
        let l = labels(m::CONSUMER_APPLIED.labels, &[&r.service, &r.replica]);
        sample(&mut out, m::CONSUMER_APPLIED.name, &l, r.applied_seq);
    }
    m::header(&mut out, &m::CONSUMER_LAG);
    if let Some(head) = head {
        for r in &reports {
            let l = labels(m::CONSUMER_LAG.labels, &[&r.service, &r.replica]);
            sample(&mut out, m::CONSUMER_LAG.name, &l, r.lag(head));
        }
    }
    out
}

#[cfg(test)]
mod tests;
