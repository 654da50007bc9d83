//! `/mcp` (issue 17 item 6): the MCP server for the concierge over
//! streamable HTTP.
//!
//! (Stub of the contract commit: filled in by the MCP work.)

use super::ApiState;

/// The `/mcp` routes (their state applied).
pub fn router(_state: ApiState) -> axum::Router {
    axum::Router::new()
}
