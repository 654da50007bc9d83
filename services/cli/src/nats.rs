//! `powernode nats init --dir D`: the platform's NATS server config and
//! credentials (see [`powernode_server::natsauth`]).

use clap::Subcommand;
use powernode_server::natsauth::init::init;
use std::path::PathBuf;

/// `powernode nats …`.
#[derive(Debug, Subcommand)]
pub enum NatsCommand {
    /// Write a ready nats-server config (JetStream with `sync_interval:
    /// always`, the platform account, the auth callout that admits agents)
    /// and the platform's credentials into --dir.
    Init {
        /// Where to write `nats-server.conf`, `platform.creds` and
        /// `service.creds` (created 0700; the JetStream store goes to
        /// `<dir>/jetstream`).
        #[arg(long)]
        dir: PathBuf,
        /// The address nats-server listens on.
        #[arg(long, default_value = "127.0.0.1:4222")]
        listen: String,
        /// Replace existing files (new keys: restart the platform with them).
        #[arg(long)]
        force: bool,
    },
}

/// Runs a `nats` subcommand; `-o json` prints what was made as JSON.
pub fn run(cmd: NatsCommand, output: crate::output::Format) -> anyhow::Result<()> {
    match cmd {
        NatsCommand::Init { dir, listen, force } => {
            let made = init(&dir, &listen, force)?;
            if output.is_data() {
                println!(
                    "{}",
                    serde_json::json!({
                        "config": made.config,
                        "creds": made.creds,
                        "service_creds": made.service_creds,
                        "auth_config": made.auth_config,
                        "platform_user": made.platform_user,
                        "callout_issuer": made.issuer,
                    })
                );
                return Ok(());
            }
            let host = listen.rsplit_once(':').map_or("127.0.0.1", |(h, _)| h);
            let port = listen.rsplit_once(':').map_or("4222", |(_, p)| p);
            let host = if host == "0.0.0.0" { "127.0.0.1" } else { host };
            println!(
                "wrote {} (includes {}: the platform account, its user, the auth callout)",
                made.config.display(),
                made.auth_config.display()
            );
            println!(
                "wrote {} (platform user {}, auth-callout issuer {}; mode 0600)",
                made.creds.display(),
                made.platform_user,
                made.issuer
            );
            println!(
                "wrote {} (the same user without the callout key, for services other than the API)",
                made.service_creds.display()
            );
            println!();
            println!("next:");
            println!("  nats-server -c {}", made.config.display());
            println!(
                "  powernode up --nats nats://{host}:{port} --nats-creds {}",
                made.creds.display()
            );
            println!("agents need no NATS credentials of their own: the key they enroll with is their credential.");
            Ok(())
        }
    }
}
