//! The `powernode` binary: parse, set up diagnostics, run.

use clap::Parser;

/// mimalloc: the services allocate many small objects from several threads
/// (decoded events, JSON answers), where glibc's allocator showed up as the
/// top cost in profiles.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use powernode_cli::{init_tracing, run, Cli};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    powernode_log::metrics::set_revision(powernode_cli::REVISION);
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
