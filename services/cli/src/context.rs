//! `powernode context add|use|list|current|delete` (issue 17 item 2): named
//! APIs with their token and pinned CA, in the XDG config dir.
//!
//! (Stub of the contract commit: filled in by the TLS/contexts work.)

use crate::ApiArgs;

/// `powernode context`.
#[derive(Debug, clap::Args)]
pub struct ContextArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ContextCommand,
}

/// Subcommands of `powernode context`.
#[derive(Debug, clap::Subcommand)]
pub enum ContextCommand {
    /// List the contexts.
    List,
}

/// Runs `powernode context …`.
pub async fn run(_api: &ApiArgs, _args: ContextArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
