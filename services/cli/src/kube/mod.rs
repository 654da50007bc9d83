//! kubectl-grade verbs (issue 17 item 3): `get`, `describe`, `create`,
//! `delete`, `apply -f`, `wait`, `completion`, `man`, generated from the
//! action table.
//!
//! (Stub of the contract commit: filled in by the CLI-verbs work.)

use crate::ApiArgs;

/// The kubectl-grade verbs (flattened into the top-level commands).
#[derive(Debug, clap::Subcommand)]
pub enum KubeCommand {
    /// Show objects: `powernode get clusters`, `powernode get cluster prod`.
    Get {
        /// Object kind.
        kind: String,
        /// Object name or id.
        name: Option<String>,
    },
}

/// Runs a verb.
pub async fn run(_api: &ApiArgs, _cmd: KubeCommand) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
