//! # powernode-cli — the `powernode` command line
//!
//! The commands (`up`, `serve`, `call`, the friendly verbs, `events`,
//! `replay`, `demo`, `nats init`, `bench`), the demo, the simulated agents
//! ([`sim`]) and table/JSON output ([`output`]). The binary
//! (`src/main.rs`) only parses and calls [`run`]; a node's wiring is
//! `powernode_server::node`.
//!
//! This crate presents and dispatches; it must never hold rules of the
//! platform (those live in the server's services and the projections), and
//! it prints only what a command was asked for (diagnostics go to stderr
//! through `tracing`).

pub mod agents;
mod api_args;
pub mod approvals;
mod call;
pub mod clusters;
mod confirm;
pub mod context;
pub mod demo;
pub mod events;
pub mod explain;
pub mod export;
pub mod fleet;
pub mod grants;
pub mod hint;
pub mod kube;
pub mod mcp;
pub mod modules;
pub mod nats;
pub mod output;
pub mod peer_config;
pub mod replay;
pub mod replay_show;
pub mod sim;
pub mod skills;
pub mod ui;

pub use api_args::ApiArgs;

use clap::{Parser, Subcommand};
use powernode_server::node::{LogArgs, NodeExtras};
use powernode_server::services::ServiceName;
use std::net::SocketAddr;
use std::sync::OnceLock;

/// The git revision this binary was built from (`build.rs`): 12 hex
/// digits, `-dirty` when built with uncommitted changes, or `unknown`.
pub const REVISION: &str = env!("POWERNODE_BUILD_REV");

/// `--version`: `0.1.0 (rev 1a2b3c4d5e6f)`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (rev ",
    env!("POWERNODE_BUILD_REV"),
    ")"
);

/// powernode — an event-sourced control plane for fleets of K3s clusters.
#[derive(Debug, Parser)]
#[command(name = "powernode", version = VERSION, about)]
pub struct Cli {
    /// Log format for diagnostics on stderr.
    #[arg(
        long,
        env = "POWERNODE_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
    /// Where client commands find the API, and with which token.
    #[command(flatten)]
    pub api: ApiArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Diagnostic log formats.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every service in one process (embedded log unless --nats).
    Up {
        /// Log selection.
        #[command(flatten)]
        log: LogArgs,
        /// Address the HTTP API listens on.
        #[arg(long, env = "POWERNODE_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Run a simulated agent in this process for every instance
        /// provisioned through the API (no k3s, nothing else to install).
        #[arg(long, env = "POWERNODE_SIMULATE_AGENTS")]
        simulate_agents: bool,
        /// Heartbeat interval of simulated agents, in milliseconds.
        #[arg(long, env = "POWERNODE_HEARTBEAT_MS", default_value_t = 1000)]
        heartbeat_ms: u64,
        /// How long a simulated node's upgrade takes, in milliseconds.
        #[arg(long, env = "POWERNODE_NODE_UPGRADE_MS", default_value_t = 300)]
        node_upgrade_ms: u64,
        /// For tests: simulated upgrades to this catalog version (e.g.
        /// `v-k3s-agent-1.31.0`) never get ready, so the node rolls back.
        #[arg(long, env = "POWERNODE_FAIL_UPGRADE_TO")]
        fail_upgrade_to: Option<String>,
        /// Silence detection and failover.
        #[command(flatten)]
        failover: powernode_server::services::failover::FailoverConfig,
        /// Skill executions.
        #[command(flatten)]
        skills: powernode_server::services::skills::SkillsConfig,
        /// How the API serves (https by default).
        #[command(flatten)]
        tls: powernode_server::tls::TlsArgs,
        /// Metrics.
        #[command(flatten)]
        metrics: powernode_server::metrics::MetricsArgs,
    },
    /// Run one service alone.
    Serve {
        /// Which service.
        #[arg(value_enum)]
        service: ServiceName,
        /// Log selection.
        #[command(flatten)]
        log: LogArgs,
        /// Address the HTTP API listens on (api service only).
        #[arg(long, env = "POWERNODE_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Silence detection and failover (sensor and failover services).
        #[command(flatten)]
        failover: powernode_server::services::failover::FailoverConfig,
        /// Skill executions (skills service).
        #[command(flatten)]
        skills: powernode_server::services::skills::SkillsConfig,
        /// Name of this replica, when several run the same service: each
        /// gets its own durable cursor and checkpoint (`<service>-<replica>`).
        #[arg(long, env = "POWERNODE_REPLICA")]
        replica: Option<String>,
        /// Splitting the accounts among the service's replicas.
        #[command(flatten)]
        partitions: powernode_server::services::partitions::PartitionArgs,
        /// How the API serves (https by default; api service only).
        #[command(flatten)]
        tls: powernode_server::tls::TlsArgs,
        /// Metrics.
        #[command(flatten)]
        metrics: powernode_server::metrics::MetricsArgs,
    },
    /// Named APIs with their token and pinned CA: add, use, list, current,
    /// delete.
    Context(context::ContextArgs),
    /// kubectl-grade verbs.
    #[command(flatten)]
    Kube(kube::KubeCommand),
    /// Serve the MCP tools (every action) on stdin/stdout for an assistant.
    Mcp(mcp::McpArgs),
    /// Run one action: `powernode call kubernetes_list_clusters '{}'`.
    Call(call::CallArgs),
    /// K3s clusters: list, get, nodes, kubeconfig, decommission, rotate-token.
    Clusters(clusters::ClustersArgs),
    /// Node instances: list, drain, terminate.
    Instances(fleet::InstancesArgs),
    /// SD-WAN networks.
    Networks(fleet::NetworksArgs),
    /// SD-WAN virtual IPs (a cluster's API endpoint).
    Vip(fleet::VipArgs),
    /// Failover proposals waiting for an operator: list, approve, reject.
    Approvals(approvals::ApprovalsArgs),
    /// Platform services and node agents: introspect.
    Agents(agents::AgentsArgs),
    /// The module catalog: list (versions, who runs what), add-version.
    Modules(modules::ModulesArgs),
    /// Skills (rolling upgrades, cluster provisioning): run (with
    /// --dry-run for the plan), list, get, pause, resume, cancel.
    Skills(skills::SkillsArgs),
    /// The event log: tail, export, import, explain.
    Events(events::EventsArgs),
    /// Rebuild the fleet state from the log up to a point and print it
    /// (`--hash` for a digest, `--diff A B` for what changed between two points).
    Replay(replay::ReplayArgs),
    /// A guided tour: a throwaway platform with simulated agents, two K3s
    /// clusters built step by step through the API, narrated.
    Demo(demo::DemoArgs),
    /// The web dashboard over an export file, read-only:
    /// `powernode ui --file export.pnx` (a running node serves it at /ui).
    Ui(ui::UiArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(powernode_bench::BenchCommand),
    /// The platform's NATS server: `nats init` writes its config and credentials.
    #[command(subcommand)]
    Nats(nats::NatsCommand),
}

/// Replaces the diagnostics filter set up by [`init_tracing`].
type Refilter = Box<dyn Fn(tracing_subscriber::EnvFilter) + Send + Sync>;
static REFILTER: OnceLock<Refilter> = OnceLock::new();

/// Sets up diagnostics (`RUST_LOG` filters, default `info`).
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    match format {
        LogFormat::Text => {
            let builder = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(ansi)
                .with_writer(std::io::stderr)
                .with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            let _ = REFILTER.set(Box::new(move |f| {
                let _ = handle.reload(f);
            }));
        }
        LogFormat::Json => {
            let builder = tracing_subscriber::fmt()
                .json()
                .with_env_filter(filter)
                .with_ansi(ansi)
                .with_writer(std::io::stderr)
                .with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            let _ = REFILTER.set(Box::new(move |f| {
                let _ = handle.reload(f);
            }));
        }
    }
}

/// Lowers diagnostics to errors (unless `RUST_LOG` says otherwise), for
/// commands whose stdout tells the story, like `demo`.
pub fn quiet_diagnostics() {
    if std::env::var_os("RUST_LOG").is_some() {
        return;
    }
    if let Some(refilter) = REFILTER.get() {
        refilter(tracing_subscriber::EnvFilter::new("error"));
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    output::set_no_headers(cli.api.no_headers);
    match cli.command {
        Command::Up {
            mut log,
            listen,
            simulate_agents,
            heartbeat_ms,
            node_upgrade_ms,
            fail_upgrade_to,
            failover,
            skills,
            tls,
            metrics,
        } => {
            log.data_dir = cli.api.data_dir();
            let upgrades = sim::SimUpgrades {
                node_upgrade: std::time::Duration::from_millis(node_upgrade_ms),
                fail_upgrade_to,
            };
            let extras = NodeExtras {
                simulate_agents: simulate_agents.then(|| {
                    sim::agents_with(std::time::Duration::from_millis(heartbeat_ms), upgrades)
                }),
                failover,
                skills,
                replica: None,
                partitions: Default::default(),
                nats_creds: None,
                secrets_key_file: None,
                tls: tls.transport(listen)?,
                metrics,
                seal: None,
            };
            powernode_server::node::run_node(&log, &ServiceName::ALL, listen, "up", extras).await
        }
        Command::Serve {
            service,
            mut log,
            listen,
            failover,
            skills,
            replica,
            partitions,
            tls,
            metrics,
        } => {
            log.data_dir = cli.api.data_dir();
            let checkpoint_name = match &replica {
                Some(r) => format!("{}-{r}", service.as_str()),
                None => service.as_str().to_string(),
            };
            let extras = NodeExtras {
                failover,
                skills,
                replica,
                partitions,
                tls: if service == ServiceName::Api {
                    tls.transport(listen)?
                } else {
                    powernode_server::tls::ApiTransport::Http
                },
                metrics,
                ..NodeExtras::default()
            };
            powernode_server::node::run_node(&log, &[service], listen, &checkpoint_name, extras)
                .await
        }
        Command::Call(args) => call::run(&cli.api, args).await,
        Command::Context(args) => context::run(&cli.api, args).await,
        Command::Kube(cmd) => kube::run(&cli.api, cmd).await,
        Command::Mcp(args) => mcp::run(&cli.api, args).await,
        Command::Clusters(args) => clusters::run(&cli.api, args).await,
        Command::Instances(args) => fleet::run_instances(&cli.api, args).await,
        Command::Networks(args) => fleet::run_networks(&cli.api, args).await,
        Command::Vip(args) => fleet::run_vip(&cli.api, args).await,
        Command::Approvals(args) => approvals::run(&cli.api, args).await,
        Command::Agents(args) => agents::run(&cli.api, args).await,
        Command::Modules(args) => modules::run(&cli.api, args).await,
        Command::Skills(args) => skills::run(&cli.api, args).await,
        Command::Events(args) => events::run(&cli.api, args).await,
        Command::Replay(mut args) => {
            (args.data_dir, args.output) = (cli.api.data_dir(), cli.api.output);
            replay::run(args).await
        }
        Command::Demo(mut args) => {
            args.data_dir = cli.api.data_dir.clone();
            demo::run(args).await
        }
        Command::Ui(args) => ui::run(args).await,
        Command::Bench(b) => powernode_bench::run(b).await,
        Command::Nats(n) => nats::run(n, cli.api.output),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        // Clap's own checks: no two arguments share a name or a flag (the
        // global options reach every subcommand).
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
