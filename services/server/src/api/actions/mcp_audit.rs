//! The audit of MCP tool calls: a call the concierge's MCP server makes
//! carries [`TOOL_HEADER`] (and the transport, a confirmation id, or an
//! outcome it settled itself), and the dispatch appends one
//! `system.mcp.tool_called` event for it — never the arguments, only the
//! id of the object acted on.

use super::ActionContext;
use crate::api::error::{ApiError, ErrorCode};
use axum::http::HeaderMap;
use powernode_actions::ActionName;
use powernode_events::payloads::mcp::{McpToolCalled, McpTransport};
use powernode_events::Envelope;

/// The tool (an action's name) the call is made for.
pub const TOOL_HEADER: &str = "x-powernode-mcp-tool";
/// `stdio` or `http`.
pub const TRANSPORT_HEADER: &str = "x-powernode-mcp-transport";
/// The confirmation id the call presents or was answered.
pub const CONFIRMATION_HEADER: &str = "x-powernode-mcp-confirmation";
/// An outcome the MCP server settled itself (`confirmation_requested`,
/// `confirmation_expired` …): the action is not run, only audited.
pub const OUTCOME_HEADER: &str = "x-powernode-mcp-outcome";

/// What the MCP headers of a request say.
pub struct Tag {
    transport: McpTransport,
    confirmation_id: Option<String>,
    /// Set when the action is only to be audited.
    pub outcome: Option<String>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    let text = value.to_str().ok().filter(|v| {
        !v.is_empty()
            && v.len() <= 64
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    });
    match text {
        Some(text) => Ok(Some(text)),
        None => Err(ApiError::bad_request(
            ErrorCode::InvalidArguments,
            format!("header {name}: 1-64 characters of [A-Za-z0-9_-] expected"),
        )),
    }
}

impl Tag {
    /// The tag of an MCP tool call, `None` for any other request.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Self>, ApiError> {
        if header(headers, TOOL_HEADER)?.is_none() {
            return Ok(None);
        }
        let transport = match header(headers, TRANSPORT_HEADER)? {
            None | Some("stdio") => McpTransport::Stdio,
            Some("http") => McpTransport::Http,
            Some(other) => {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidArguments,
                    format!("header {TRANSPORT_HEADER}: {other:?} is neither stdio nor http"),
                ))
            }
        };
        Ok(Some(Self {
            transport,
            confirmation_id: header(headers, CONFIRMATION_HEADER)?.map(str::to_string),
            outcome: header(headers, OUTCOME_HEADER)?.map(str::to_string),
        }))
    }
}

/// Appends the audit event of one tool call (the tool is the action).
pub async fn append(
    ctx: &ActionContext<'_>,
    action: ActionName,
    tag: Tag,
    outcome: String,
    object_id: Option<String>,
) -> Result<(), ApiError> {
    let event = Envelope::new(
        ctx.operator.account.clone(),
        ctx.actor(),
        McpToolCalled {
            tool: action.as_str().to_string(),
            token_id: ctx.operator.token_id.clone(),
            transport: tag.transport,
            outcome,
            confirmation_id: tag.confirmation_id,
            object_id,
        },
    );
    ctx.append(&[event]).await?;
    Ok(())
}
