//! `powernode ui --file export.pnx`: the web dashboard over an export file,
//! read-only, with no network but the loopback listener, no NATS and no
//! data directory. The work is [`powernode_server::ui::serve_file`].

use std::net::SocketAddr;
use std::path::PathBuf;

/// `powernode ui`.
#[derive(Debug, clap::Args)]
pub struct UiArgs {
    /// The export file to serve (`powernode events export`).
    #[arg(long, value_name = "FILE")]
    pub file: PathBuf,
    /// Where to listen: a loopback address only (plain http, no sign-in).
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// The account shown first (default: the first one holding clusters).
    #[arg(long, value_name = "ACCOUNT")]
    pub account: Option<String>,
}

/// Runs `powernode ui` until Ctrl-C.
pub async fn run(args: UiArgs) -> anyhow::Result<()> {
    powernode_server::ui::serve_file(&args.file, args.listen, args.account.as_deref()).await
}
