//! `powernode mcp` (issue 17 item 6): the concierge's MCP server over
//! stdio, for an assistant on the operator's machine. Every tool call goes
//! to the API with the selected token (`--token`, `--context`, the data
//! dir's admin token), tagged so the API audits it
//! (`system.mcp.tool_called`, transport `stdio`). Confirmations of
//! destructive tools are kept in this process: an id issued here is
//! redeemed here (a new `powernode mcp` knows none).

use crate::ApiArgs;
use anyhow::Context;
use powernode_actions::ActionName;
use powernode_client::Api;
use powernode_mcp::{confirm, Caller, Concierge, Refusal, Tag};
use rmcp::model::Extensions;
use rmcp::ServiceExt;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// `powernode mcp`.
#[derive(Debug, clap::Args)]
pub struct McpArgs {
    /// How long a confirmation id of a destructive tool stays good for
    /// (`120s`, `2m`; default 120 s, or
    /// `POWERNODE_MCP_CONFIRMATION_TTL_SECS` seconds).
    #[arg(long, value_parser = crate::api_args::parse_duration)]
    pub confirmation_ttl: Option<Duration>,
}

/// Calls the API over HTTP with the operator's token.
struct OverHttp {
    api: Api,
}

impl Caller for OverHttp {
    async fn call(
        &self,
        _ext: &Extensions,
        action: ActionName,
        args: Value,
        tag: Option<Tag>,
    ) -> Result<Value, Refusal> {
        let headers = tag.map(|t| t.headers(action, "stdio")).unwrap_or_default();
        self.api
            .call_with_headers(action.as_str(), &args, &headers)
            .await
            .map_err(|e| match e.refusal() {
                Some(r) => Refusal::new(r.code.clone(), r.message.clone()),
                None => Refusal::new(e.code().to_string(), e.to_string()),
            })
    }
}

/// Runs the MCP server on stdin/stdout until the client hangs up.
pub async fn run(api: &ApiArgs, args: McpArgs) -> anyhow::Result<()> {
    let client = api.client()?;
    let store = match args.confirmation_ttl {
        Some(ttl) => confirm::Store::new(ttl),
        None => confirm::Store::default(),
    };
    let concierge = Concierge::new(Arc::new(OverHttp { api: client }), store);
    let service = concierge
        .serve(rmcp::transport::stdio())
        .await
        .context("the MCP session over stdin/stdout did not start")?;
    service
        .waiting()
        .await
        .context("the MCP session over stdin/stdout failed")?;
    Ok(())
}
