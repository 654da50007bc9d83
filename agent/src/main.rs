//! The `powernode-agent` binary.
//!
//! `powernode-agent --nats URL --enroll <credential> --runtime simulated|k3s --state-dir DIR`
//! enrolls once (the identity key and state persist in the state dir, so a
//! restart with the same dir is the same instance), then heartbeats and
//! runs the k3s handshake until stopped.
//!
//! With `--wireguard-endpoint ADDR:PORT` the data plane is on: the agent
//! registers its WireGuard key and applies its networks' configs
//! (`--wireguard-userspace boringtun-cli` where the kernel has no
//! WireGuard), and probes its cluster's VIPs every `--probe-interval-ms`.

use clap::{Parser, Subcommand};
use powernode_agent::agent::Agent;
use powernode_agent::driver::k3s::K3sRuntime;
use powernode_agent::driver::simulated::{SimulatedRuntime, UpgradeBehaviour};
use powernode_agent::driver::{Runtime, RuntimeKind};
use powernode_agent::identity::Identity;
use powernode_agent::link::{NatsAuth, NatsLink};
use powernode_agent::state::StateStore;
use powernode_agent::wireguard::runner::QuickRunner;
use powernode_agent::wireguard::{DataPlane, WireguardKey};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// powernode-agent — the on-node agent of powernode.
#[derive(Debug, Parser)]
#[command(name = "powernode-agent", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// NATS URL of the platform (e.g. nats://10.0.0.1:4222; several servers
    /// of one cluster comma-separated).
    #[arg(long, env = "POWERNODE_NATS_URL")]
    nats: Option<String>,
    /// The enrollment credential `system_provision_instance` returned
    /// (needed only on the first start).
    #[arg(long, env = "POWERNODE_ENROLL")]
    enroll: Option<String>,
    /// Runtime driver.
    #[arg(long, value_enum, default_value = "k3s")]
    runtime: RuntimeKind,
    /// Identity key and agent state.
    #[arg(
        long,
        env = "POWERNODE_AGENT_STATE_DIR",
        default_value = "/var/lib/powernode-agent"
    )]
    state_dir: PathBuf,
    /// Heartbeat / reconcile interval in milliseconds (keep it well under
    /// the platform's silence threshold, 3000 ms by default).
    #[arg(long, default_value_t = 1000)]
    heartbeat_ms: u64,
    /// Node name reported by the simulated runtime (default: the platform's hostname).
    #[arg(long)]
    node_name: Option<String>,
    /// CA certificate (PEM) the NATS server's TLS certificate is checked
    /// against; implies TLS (as does a `tls://` URL).
    #[arg(long, env = "POWERNODE_NATS_CA")]
    nats_ca: Option<PathBuf>,
    /// Prefix of the agent's NATS reply subjects (default
    /// `_INBOX.<its identity key as an NKey>`, the only inbox the
    /// platform's auth callout lets it read).
    #[arg(long, env = "POWERNODE_NATS_INBOX_PREFIX")]
    nats_inbox_prefix: Option<String>,
    /// The network interface a held virtual IP is put on (k3s runtime):
    /// the SD-WAN's WireGuard interface.
    #[arg(long, env = "POWERNODE_VIP_INTERFACE", default_value = powernode_agent::driver::k3s::DEFAULT_VIP_INTERFACE)]
    vip_interface: String,
    /// Turns the data plane on: this node's WireGuard underlay endpoint
    /// (`address:port`, IPv6 in brackets) that other peers send to; the
    /// agent makes a WireGuard key (`<state-dir>/wireguard.key`), registers
    /// it with this endpoint and applies its networks' WireGuard configs.
    #[arg(long, env = "POWERNODE_WG_ENDPOINT")]
    wireguard_endpoint: Option<String>,
    /// Userspace WireGuard to start when the kernel has no WireGuard module
    /// (e.g. `boringtun-cli`; run as `WG_SUDO=1 <cmd> --disable-drop-privileges <interface>`).
    #[arg(long, env = "POWERNODE_WG_USERSPACE")]
    wireguard_userspace: Option<String>,
    /// How often the cluster's VIPs are probed through the tunnel (ms).
    #[arg(long, env = "POWERNODE_PROBE_INTERVAL_MS", default_value_t = 1000)]
    probe_interval_ms: u64,
    /// Serve the simulated k3s API (TLS, certificate from the cluster CA)
    /// on this address once a server is started, e.g. `[::]:6443`
    /// (simulated runtime; off by default).
    #[arg(long, env = "POWERNODE_K3S_API_LISTEN")]
    k3s_api_listen: Option<std::net::SocketAddr>,
    /// How long a whole simulated node upgrade takes (ms), shared among
    /// its phases (simulated runtime).
    #[arg(long, env = "POWERNODE_NODE_UPGRADE_MS", default_value_t = 300)]
    node_upgrade_ms: u64,
    /// For tests: upgrading to this catalog version (e.g. `v-k3s-1.31.0`)
    /// never gets ready, so the step rolls back (simulated runtime).
    #[arg(long, env = "POWERNODE_FAIL_UPGRADE_TO")]
    fail_upgrade_to: Option<String>,
    /// For tests: the rollback after a failed upgrade fails too (simulated
    /// runtime).
    #[arg(long, env = "POWERNODE_FAIL_ROLLBACK")]
    fail_rollback: bool,
    /// How long an upgrade waits for the node to be ready again (ms).
    #[arg(long, env = "POWERNODE_READY_TIMEOUT_MS", default_value_t = 300_000)]
    ready_timeout_ms: u64,
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
    /// Create a NATS NKey user (seed file, mode 0600) if missing and print
    /// its public key (`U…`), the key the server's `authorization` names.
    Nkey {
        /// Where the seed lives.
        #[arg(long, env = "POWERNODE_NATS_NKEY_FILE")]
        seed_file: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Identity { key_file }) = cli.command {
        let id = Identity::load_or_create(&key_file)?;
        println!("{}", id.public_key_hex());
        return Ok(());
    }
    if let Some(Command::Nkey { seed_file }) = cli.command {
        println!("{}", powernode_agent::nkey::load_or_create(&seed_file)?);
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let args = cli.run;
    let url = args
        .nats
        .ok_or_else(|| anyhow::anyhow!("--nats URL is required (the platform's NATS server)"))?;
    std::fs::create_dir_all(&args.state_dir)?;
    let data_plane = match &args.wireguard_endpoint {
        Some(endpoint) => {
            powernode_events::wireguard::parse_endpoint(endpoint)
                .map_err(|e| anyhow::anyhow!("--wireguard-endpoint: {e}"))?;
            let key = WireguardKey::load_or_create(&args.state_dir)?;
            tracing::info!(public_key = %key.public_key(), %endpoint, "data plane on");
            let mut plane = DataPlane::new(key, endpoint.clone(), Box::new(QuickRunner::new()));
            if let Some(cmd) = &args.wireguard_userspace {
                plane = plane.with_userspace(cmd.clone());
            }
            Some(plane)
        }
        None => None,
    };
    let key_file = args.state_dir.join("identity.key");
    let store = StateStore::in_dir(&args.state_dir);
    let node_name = args
        .node_name
        .clone()
        .or(store.load()?.hostname)
        .unwrap_or_else(|| "simulated-node".into());
    // The simulated node is saved in the state dir like k3s's data dir: a
    // restarted agent's server is still started and serves its API again.
    let make_runtime = || -> anyhow::Result<Box<dyn Runtime>> {
        Ok(match args.runtime {
            RuntimeKind::K3s => {
                Box::new(K3sRuntime::system().with_vip_interface(args.vip_interface.clone()))
            }
            RuntimeKind::Simulated => {
                let rt = SimulatedRuntime::new(node_name.clone(), "v1.30.5+k3s1".into())
                    .with_upgrade_behaviour(UpgradeBehaviour {
                        node_upgrade: Duration::from_millis(args.node_upgrade_ms),
                        fail_upgrade_to: args.fail_upgrade_to.clone(),
                        fail_rollback: args.fail_rollback,
                    });
                let rt = match args.k3s_api_listen {
                    Some(addr) => rt.with_api_listen(addr),
                    None => rt,
                };
                Box::new(rt.with_state_dir(&args.state_dir)?)
            }
        })
    };
    // The identity key is the agent's NATS credential; until it has
    // enrolled, the one-time enrollment credential goes along as the token.
    let identity = Identity::load_or_create(&key_file)?;
    let enrolled = store.load()?.instance_id.is_some();
    let mut auth =
        NatsAuth::from_identity(&identity, if enrolled { None } else { args.enroll.clone() });
    auth.inbox_prefix = args.nats_inbox_prefix.clone();
    auth.ca_file = args.nats_ca.clone();
    let link = loop {
        match NatsLink::connect_with(&url, &auth).await {
            Ok(link) => break Arc::new(link),
            Err(e) => {
                tracing::warn!(error = %e, "platform unavailable; retrying in 2 s");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    let agent = loop {
        match Agent::start(
            Identity::load_or_create(&key_file)?,
            link.clone(),
            make_runtime()?,
            store.clone(),
            args.enroll.clone(),
        )
        .await
        {
            Ok(a) => break a,
            Err(
                e @ powernode_agent::agent::AgentError::Link(
                    powernode_protocol::link::LinkError::Unavailable(_),
                ),
            ) => {
                tracing::warn!(error = %e, "platform unavailable; retrying in 2 s");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    let agent = agent.with_ready_timeout(Duration::from_millis(args.ready_timeout_ms));
    let agent = match data_plane {
        Some(plane) => {
            agent.with_data_plane(plane, Duration::from_millis(args.probe_interval_ms.max(10)))
        }
        None => agent,
    };
    tracing::info!(instance = %agent.instance_id(), runtime = ?args.runtime, "agent running");
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    #[cfg(unix)]
    {
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                term.recv().await;
                stop.cancel();
            }
        });
    }
    agent
        .run(Duration::from_millis(args.heartbeat_ms), shutdown)
        .await;
    Ok(())
}
