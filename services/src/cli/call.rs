//! `powernode call <action> '<json>'`: any action, its answer printed as JSON.

use super::client;
use anyhow::{bail, Context};
use std::path::PathBuf;

/// Arguments of `powernode call`.
#[derive(Debug, clap::Args)]
pub struct CallArgs {
    /// The action, e.g. `system_create_template`.
    pub action: String,
    /// Its arguments as a JSON object (default `{}`); `-` reads stdin.
    pub args: Option<String>,
    /// The API address.
    #[arg(long, env = "POWERNODE_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Operator token; defaults to `<data-dir>/admin.token`.
    #[arg(long, env = "POWERNODE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Where `powernode up` keeps its state (for the admin token).
    #[arg(long, env = "POWERNODE_DATA_DIR", default_value = "./.powernode")]
    pub data_dir: PathBuf,
}

/// Runs the action; exits non-zero with the error's code and message when refused.
pub async fn run(a: CallArgs) -> anyhow::Result<()> {
    let token = match a.token {
        Some(t) => t,
        None => {
            let path = a.data_dir.join("admin.token");
            std::fs::read_to_string(&path)
                .with_context(|| {
                    format!(
                        "no --token / POWERNODE_TOKEN and cannot read {}",
                        path.display()
                    )
                })?
                .trim()
                .to_string()
        }
    };
    let body = match a.args.as_deref() {
        None => "{}".to_string(),
        Some("-") => {
            std::io::read_to_string(std::io::stdin()).context("cannot read arguments from stdin")?
        }
        Some(s) => s.to_string(),
    };
    let answer = client::request(
        &a.url,
        "POST",
        &format!("/v1/actions/{}", a.action),
        Some(&token),
        body.as_bytes(),
    )
    .await?;
    if answer.status == 200 {
        println!("{}", serde_json::to_string_pretty(&answer.body["data"])?);
        Ok(())
    } else {
        let code = answer.body["error"]["code"].as_str().unwrap_or("error");
        let message = answer.body["error"]["message"].as_str().unwrap_or("");
        bail!("{} ({}): {message}", code, answer.status)
    }
}
