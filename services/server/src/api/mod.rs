//! The operator HTTP surface: `GET /healthz` and `POST /v1/actions/<name>`.
//!
//! Answers are `200 {"data": …}` or `4xx/5xx {"error": {"code", "message"}}`.
//! [`auth`] checks bearer tokens, [`actions`] holds the actions, [`bootstrap`]
//! creates the first admin token.

pub mod actions;
pub mod auth;
pub mod bootstrap;
pub mod error;
pub mod export;
pub mod index;
pub mod mcp;
pub mod openapi;
pub mod sse;

use error::{ApiError, ErrorCode};

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use powernode_log::SharedLog;
use powernode_projections::FleetState;
use powernode_runtime::Shared;
use serde_json::json;
use std::time::Duration;

/// An action's answer: a JSON value, or (for large reads) the `data`
/// object already serialized, which spares building a `Value` tree.
pub enum Answer {
    /// Serialized under `data`.
    Json(serde_json::Value),
    /// Serialized JSON text placed under `data` as it is.
    Raw(String),
}

impl From<serde_json::Value> for Answer {
    fn from(v: serde_json::Value) -> Self {
        Self::Json(v)
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The event log.
    pub log: SharedLog,
    /// The API's projection.
    pub fleet: Shared<FleetState>,
    /// Join tokens and kubeconfigs.
    pub secrets: crate::secrets::SharedSecrets,
    /// Told about every provisioned instance and its credential, when
    /// simulated agents run in this process.
    pub on_provision: Option<tokio::sync::mpsc::UnboundedSender<Provisioned>>,
    /// When agents were last heard (failover dry runs score with it).
    pub liveness: crate::liveness::SharedLiveness,
    /// Failover tuning (scoring, damping).
    pub failover: crate::services::failover::FailoverConfig,
    /// Cancelled when the node stops: ends open event streams so the HTTP
    /// server's graceful shutdown does not wait for their clients.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Every service replica's status (`agent_introspect`).
    pub status: crate::status::SharedBoard,
    /// True when the API is served over https (the dashboard's session
    /// cookie is then `Secure`).
    pub https: bool,
    /// Set when this state serves a read-only view (an export file, or the
    /// fleet as of a past sequence): why. The dispatch then refuses every
    /// action that would append (409 `read_only`) before any handler runs.
    pub read_only: Option<std::sync::Arc<str>>,
    /// Recent events by the ids they name (`recent_events` by cluster or
    /// instance); follows the log from the first filtered query on.
    pub events_index: index::SharedIndex,
}

/// The router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/actions/{name}", post(action))
        .route(export::PATH, get(export::export))
        .route(sse::PATH, get(sse::stream))
        .route(crate::metrics::PATH, get(crate::metrics::scrape))
        .route(openapi::PATH, get(openapi::document))
        .with_state(state.clone())
        .merge(mcp::router(state.clone()))
        .merge(powernode_ui::router(powernode_ui::Ui::new(
            std::sync::Arc::new(crate::ui::live::LiveBackend::new(
                state.clone(),
                state.https,
            )),
        )))
}

async fn healthz(State(st): State<ApiState>) -> Response {
    let applied = st.fleet.applied();
    match tokio::time::timeout(Duration::from_secs(2), st.log.last_seq()).await {
        Ok(Ok(last)) => Json(json!({
            "status": "ok",
            "log": st.log.describe(),
            "last_seq": last,
            "applied_seq": applied,
        }))
        .into_response(),
        Ok(Err(e)) => ApiError::new(ErrorCode::LogUnavailable, e.to_string()).into_response(),
        Err(_) => ApiError::new(
            ErrorCode::LogUnavailable,
            format!("{} did not answer within 2 s", st.log.describe()),
        )
        .into_response(),
    }
}

/// `POST /v1/actions/<name>`, timed: `powernode_action_duration_seconds`
/// by action (`unknown` for a name that is none, so callers cannot make
/// series up) and answered code (`ok` or the error code).
async fn action(
    State(st): State<ApiState>,
    name: Result<Path<String>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let started = std::time::Instant::now();
    let label = match &name {
        Ok(Path(n)) => n
            .parse::<powernode_actions::ActionName>()
            .map_or("unknown", |a| a.as_str()),
        Err(_) => "unknown",
    };
    let answer = answer_action(&st, name, &headers, body).await;
    let code = match &answer {
        Ok(_) => "ok",
        Err(e) => e.code.as_str(),
    };
    powernode_log::metrics::action_answered(label, code, started.elapsed());
    match answer {
        Ok(Answer::Json(data)) => Json(json!({ "data": data })).into_response(),
        Ok(Answer::Raw(data)) => {
            let mut body = String::with_capacity(data.len() + 10);
            body.push_str("{\"data\":");
            body.push_str(&data);
            body.push('}');
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn answer_action(
    st: &ApiState,
    name: Result<Path<String>, axum::extract::rejection::PathRejection>,
    headers: &HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Answer, ApiError> {
    let (name, body) = match (name, body) {
        (Ok(Path(name)), Ok(body)) => (name, body),
        (name, body) => {
            // Authentication first, as for every other refusal; then the
            // same error shape as every action's (axum's own is plain text).
            auth::authenticate(headers, &*st.fleet.state.read().await)?;
            return Err(match (name, body) {
                (_, Err(r)) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                    ApiError::new(ErrorCode::BodyTooLarge, r.body_text())
                }
                (_, Err(r)) => ApiError {
                    status: r.status(),
                    ..ApiError::new(ErrorCode::MalformedBody, r.body_text())
                },
                (Err(r), _) => ApiError::new(ErrorCode::UnknownAction, r.body_text()),
                (Ok(_), Ok(_)) => unreachable!("handled above"),
            });
        }
    };
    actions::dispatch(st, headers, &name, &body).await
}

/// A freshly provisioned instance and the credential its agent enrolls with.
#[derive(Clone)]
pub struct Provisioned {
    /// Instance id.
    pub instance_id: String,
    /// The node's hostname.
    pub hostname: String,
    /// The one-time enrollment credential (secret).
    pub credential: String,
}
