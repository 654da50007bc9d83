//! The `powernode` binary: parse, set up diagnostics, run.

use clap::Parser;
use powernode_services::cli::{init_tracing, run, Cli};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("powernode: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
