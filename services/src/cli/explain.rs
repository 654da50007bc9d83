//! `powernode events explain <id>`. (being written)

use super::client::ApiArgs;

/// `powernode events explain`.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {}

/// Runs `powernode events explain`.
pub async fn run(_api: &ApiArgs, _args: ExplainArgs) -> anyhow::Result<()> {
    anyhow::bail!("events explain: not yet built")
}
