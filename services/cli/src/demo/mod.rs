//! `powernode demo`: the first thing a newcomer runs. A throwaway platform
//! (embedded log, every service, simulated agents) in a temporary
//! directory, then the tutorial and the multi-cluster runbook played
//! through the HTTP API step by step, with the events each step caused.

mod dataplane;
mod failover;
mod flow;
mod narrator;
mod runbook;
mod tutorial;
mod upgrade;

use anyhow::{anyhow, Context};
use narrator::say;
use powernode_client::Api;
use powernode_log::embedded::EmbeddedLog;
use powernode_server::node::{start_node_with, NodeExtras, RunningNode};
use powernode_server::services::ServiceName;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Arguments of `powernode demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Keep the platform running after the tour (until Ctrl-C) to poke at it.
    #[arg(long)]
    pub keep: bool,
    /// Address the demo's API listens on (default: a free loopback port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// The global `--data-dir`: keep the demo's state there instead of a
    /// temporary directory that is deleted at the end.
    #[arg(skip)]
    pub data_dir: Option<PathBuf>,
    /// Heartbeat interval of the simulated agents, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub heartbeat_ms: u64,
    /// How long a simulated node's upgrade takes, in milliseconds (shared
    /// among cordon, drain, upgrade, wait ready, uncordon).
    #[arg(long, default_value_t = 250)]
    pub node_upgrade_ms: u64,
    /// How long one step may wait for the platform, in seconds.
    #[arg(long, default_value_t = 30)]
    pub timeout_secs: u64,
}

/// Where the demo keeps its state: a temporary directory (deleted on drop)
/// or the operator's.
enum DataDir {
    Temp(tempfile::TempDir),
    Kept(PathBuf),
}

impl DataDir {
    fn path(&self) -> &Path {
        match self {
            Self::Temp(t) => t.path(),
            Self::Kept(p) => p,
        }
    }
}

/// Runs the demo; fails (non-zero exit) when a step fails or times out.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    crate::quiet_diagnostics();
    let dir = match &args.data_dir {
        Some(p) => {
            std::fs::create_dir_all(p).with_context(|| format!("cannot create {}", p.display()))?;
            DataDir::Kept(p.clone())
        }
        None => DataDir::Temp(
            tempfile::Builder::new()
                .prefix("powernode-demo-")
                .tempdir()
                .context("cannot create a temporary directory")?,
        ),
    };
    say("powernode demo — a guided tour: the K3s tutorial, then the multi-cluster runbook,");
    say("played against a throwaway platform whose node agents are simulated.");
    let node = start(&args, dir.path()).await?;
    let outcome = tokio::select! {
        r = tour(&args, dir.path(), &node) => r,
        _ = stop_signal() => Err(anyhow!("interrupted")),
    };
    if outcome.is_ok() && args.keep {
        say("");
        say("The platform keeps running; press Ctrl-C to stop it.");
        stop_signal().await;
    }
    say("");
    say("Stopping the demo platform …");
    let stopped = node.stop().await;
    match &dir {
        DataDir::Temp(t) => say(&format!("Deleting {}.", t.path().display())),
        DataDir::Kept(p) => say(&format!("Its state stays in {}.", p.display())),
    }
    drop(dir);
    outcome?;
    stopped.context("the demo platform did not stop cleanly")
}

/// Starts every service on an embedded log in `dir`, with simulated agents.
async fn start(args: &DemoArgs, dir: &Path) -> anyhow::Result<RunningNode> {
    let log_dir = dir.join("log");
    std::fs::create_dir_all(&log_dir)
        .with_context(|| format!("cannot create {}", log_dir.display()))?;
    let log = Arc::new(EmbeddedLog::open(&log_dir)?);
    start_node_with(
        log,
        dir,
        &ServiceName::ALL,
        args.listen,
        "demo",
        NodeExtras {
            simulate_agents: Some(crate::sim::agents_with(
                Duration::from_millis(args.heartbeat_ms.max(10)),
                crate::sim::SimUpgrades {
                    node_upgrade: Duration::from_millis(args.node_upgrade_ms),
                    fail_upgrade_to: None,
                },
            )),
            // https, as `powernode up`: a CA made in the demo's data dir.
            tls: powernode_server::tls::ApiTransport::Https(Default::default()),
            ..NodeExtras::default()
        },
    )
    .await
    .context("cannot start the demo platform")
}

/// The tour proper, then how to poke at what it built.
async fn tour(args: &DemoArgs, dir: &Path, node: &RunningNode) -> anyhow::Result<()> {
    let url = node.api_url().context("the demo platform has no API")?;
    let ca = node.api_ca_file.clone();
    let token_file = node
        .admin_token_file
        .clone()
        .context("the demo platform wrote no admin token")?;
    let admin_token = std::fs::read_to_string(&token_file)
        .with_context(|| format!("cannot read {}", token_file.display()))?;
    let mut config = powernode_client::ClientConfig::new(&url, admin_token.trim());
    config.ca_cert = ca.clone();
    let admin = Api::from_config(&config)?;
    let timeout = Duration::from_secs(args.timeout_secs.max(1));
    let built = flow::Tour::new(admin, timeout)
        .run(args, dir, &url, &token_file)
        .await?;
    hints(args, dir, &url, ca.as_deref(), &built);
    if let Some(staged) = &built.staged {
        failover::say_waiting(staged, &url, &built.prod);
    }
    Ok(())
}

/// How to poke at the platform with the friendly CLI.
fn hints(args: &DemoArgs, dir: &Path, url: &str, ca: Option<&Path>, built: &flow::Built) {
    let token_file = dir.join("demo.token");
    let ca_line = ca.map(|ca| format!("export POWERNODE_CA_CERT={}", ca.display()));
    say("");
    say("Done. Everything above went through the same HTTP API the CLI uses.");
    if args.keep {
        say("Poke at it from another terminal:");
    } else {
        say("Run `powernode demo --keep` to poke at it afterwards, e.g.:");
    }
    say(&format!(
        "Dashboard: {url}/ui/ — sign in with the token in {}",
        token_file.display()
    ));
    if args.keep {
        if let Some(ca) = ca {
            say(&format!(
                "(or once: `powernode context add demo --url {url} --token-file {} --ca-cert {}`)",
                token_file.display(),
                ca.display()
            ));
        }
    }
    let lines = [
        format!("export POWERNODE_URL={url}"),
        format!("export POWERNODE_TOKEN=$(cat {})", token_file.display()),
        ca_line.unwrap_or_default(),
        "powernode clusters list --all".to_string(),
        format!("powernode clusters get {}", built.prod),
        format!("powernode clusters nodes {}", built.prod),
        format!(
            "powernode clusters kubeconfig {} --write ./prod.kubeconfig",
            built.prod
        ),
        format!("powernode vip get --cluster {}", built.prod),
        "powernode instances list".to_string(),
        "powernode networks list".to_string(),
        "powernode events tail --kind-prefix system.k3s --follow".to_string(),
        "powernode modules list".to_string(),
        "powernode skills list".to_string(),
        format!(
            "powernode --url {url} call {} '{{}}'",
            powernode_actions::ActionName::ListClusters
        ),
    ];
    for l in lines.iter().filter(|l| !l.is_empty()) {
        say(&format!("    {l}"));
    }
}

/// Ctrl-C or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
