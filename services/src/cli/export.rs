//! `powernode events export` and `powernode events import`. (being written)

use super::client::ApiArgs;

/// `powernode events export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {}

/// `powernode events import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {}

/// Runs `powernode events export`.
pub async fn export(_api: &ApiArgs, _args: ExportArgs) -> anyhow::Result<()> {
    anyhow::bail!("events export: not yet built")
}

/// Runs `powernode events import`.
pub async fn import(_args: ImportArgs) -> anyhow::Result<()> {
    anyhow::bail!("events import: not yet built")
}
