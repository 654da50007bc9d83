//! The `powernode-agent` binary.

use clap::{Parser, Subcommand};
use powernode_agent::identity::Identity;
use std::path::PathBuf;

/// powernode-agent — the on-node agent of powernode.
#[derive(Debug, Parser)]
#[command(name = "powernode-agent", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the identity key if missing and print its public key.
    Identity {
        /// Where the key lives.
        #[arg(
            long,
            env = "POWERNODE_AGENT_KEY",
            default_value = "/var/lib/powernode-agent/identity.key"
        )]
        key_file: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Identity { key_file } => {
            let id = Identity::load_or_create(&key_file)?;
            println!("{}", id.public_key_hex());
        }
    }
    Ok(())
}
