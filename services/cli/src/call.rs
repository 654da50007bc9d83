//! `powernode call <action> '<json>'`: any action, its answer printed as JSON.

use crate::ApiArgs;
use anyhow::Context;

/// Arguments of `powernode call` (the API address and token are the global
/// `--url` / `--token`).
#[derive(Debug, clap::Args)]
pub struct CallArgs {
    /// The action, e.g. `system_create_template`.
    pub action: String,
    /// Its arguments as a JSON object (default `{}`); `-` reads stdin.
    pub args: Option<String>,
}

/// Runs the action; exits non-zero with the error's code and message when refused.
pub async fn run(api: &ApiArgs, a: CallArgs) -> anyhow::Result<()> {
    let client = api.client()?;
    let body = match a.args.as_deref() {
        None => "{}".to_string(),
        Some("-") => {
            std::io::read_to_string(std::io::stdin()).context("cannot read arguments from stdin")?
        }
        Some(s) => s.to_string(),
    };
    let data = client.call_bytes(&a.action, body.as_bytes()).await?;
    super::output::print_data(api.output, &data);
    Ok(())
}
