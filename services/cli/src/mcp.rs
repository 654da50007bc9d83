//! `powernode mcp` (issue 17 item 6): the MCP server for the concierge over
//! stdio, calling the API with the selected context's token.
//!
//! (Stub of the contract commit: filled in by the MCP work.)

use crate::ApiArgs;

/// `powernode mcp`.
#[derive(Debug, clap::Args)]
pub struct McpArgs {}

/// Runs the MCP server on stdin/stdout until the client hangs up.
pub async fn run(_api: &ApiArgs, _args: McpArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
