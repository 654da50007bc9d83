//! `powernode replay`. (being written)

/// `powernode replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {}

/// Runs `powernode replay`.
pub async fn run(_args: ReplayArgs) -> anyhow::Result<()> {
    anyhow::bail!("replay: not yet built")
}
