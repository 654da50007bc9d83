//! `/mcp` (issue 17 item 6): the concierge's MCP server over streamable
//! HTTP, on the API itself. Each request's `Authorization: Bearer` token is
//! the principal: requests without a valid one are answered 401 before the
//! MCP layer sees them, and every tool call runs the action dispatch
//! in-process with that request's headers, so operator token scoping
//! applies unchanged. Confirmations of destructive tools are kept in this
//! process (one store shared by every session; with several API replicas a
//! confirmation must be redeemed on the replica that issued it).

use super::actions::dispatch;
use super::{auth, Answer, ApiState};
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use powernode_actions::ActionName;
use powernode_mcp::{confirm, headers, Caller, Concierge, Refusal, Tag};
use rmcp::model::Extensions;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::Value;
use std::sync::Arc;
use tower_service::Service;

/// Where the MCP server answers.
pub const PATH: &str = "/mcp";

/// Calls actions in-process with the MCP request's own headers.
struct InProcess {
    api: ApiState,
}

impl Caller for InProcess {
    async fn call(
        &self,
        ext: &Extensions,
        action: ActionName,
        args: Value,
        tag: Option<Tag>,
    ) -> Result<Value, Refusal> {
        let mut headers = ext
            .get::<axum::http::request::Parts>()
            .map(|p| p.headers.clone())
            .unwrap_or_default();
        // Only this server tags calls for the audit.
        for name in [
            headers::TOOL,
            headers::TRANSPORT,
            headers::CONFIRMATION,
            headers::OUTCOME,
        ] {
            headers.remove(name);
        }
        if let Some(tag) = tag {
            for (name, value) in tag.headers(action, "http") {
                let value = HeaderValue::from_str(&value).map_err(|_| {
                    Refusal::new("invalid_arguments", format!("{name}: not a header value"))
                })?;
                headers.insert(name, value);
            }
        }
        let body = serde_json::to_vec(&args)
            .map_err(|e| Refusal::new("invalid_arguments", e.to_string()))?;
        match dispatch(&self.api, &headers, action.as_str(), &body).await {
            Ok(Answer::Json(data)) => Ok(data),
            Ok(Answer::Raw(text)) => serde_json::from_str(&text)
                .map_err(|e| Refusal::new("unavailable", format!("the answer is not JSON: {e}"))),
            Err(e) => Err(Refusal::new(e.code.to_string(), e.message)),
        }
    }
}

type Mcp = StreamableHttpService<Concierge<InProcess>, LocalSessionManager>;

#[derive(Clone)]
struct McpState {
    api: ApiState,
    service: Mcp,
}

/// The `/mcp` routes (their state applied).
pub fn router(state: ApiState) -> axum::Router {
    let caller = Arc::new(InProcess { api: state.clone() });
    let store = confirm::Store::default();
    let concierge = Concierge::new(caller, store);
    // Every request must carry an operator token, so a page in a browser
    // cannot use the API through DNS rebinding: no Host allow-list here.
    let mut config = StreamableHttpServerConfig::default().disable_allowed_hosts();
    config.cancellation_token = state.shutdown.child_token();
    let service = StreamableHttpService::new(
        move || Ok(concierge.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    axum::Router::new()
        .route(PATH, axum::routing::any(handle))
        .with_state(McpState {
            api: state,
            service,
        })
}

async fn handle(State(st): State<McpState>, request: Request) -> Response {
    if let Err(e) = auth::authenticate(request.headers(), &*st.api.fleet.state.read().await) {
        return e.into_response();
    }
    let mut service = st.service.clone();
    match service.call(request).await {
        Ok(response) => response.map(axum::body::Body::new),
        Err(never) => match never {},
    }
}
