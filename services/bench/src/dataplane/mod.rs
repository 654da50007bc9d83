//! `powernode bench dataplane`: the SD-WAN data plane with real parts —
//! every agent a real `powernode-agent` in its own network namespace with
//! its WireGuard interface (`boringtun-cli`), one cluster of 2 servers and
//! N-2 workers on one network, an operator namespace with an access grant
//! (imported with the real `wg-quick`, through a worker as gateway) — and
//! the figures of issue 15 item 9:
//!
//! * config propagation: a forced promotion stored → every peer applied
//!   the revision that routes the VIP to the new holder (the agents' own
//!   `WireGuard config applied … at_ms=` lines), p50/p99 over R promotions,
//!   beside a bare `wg set … allowed-ips` in a namespace;
//! * unplanned downtime under the `auto` policy: the holder's agent and its
//!   `boringtun-cli` SIGKILLed while the operator probes the VIP every
//!   10 ms (a new TLS connection each time) → first answer from the new
//!   holder, minus the silence threshold; beside the probe's own round trip;
//! * failed requests during a drain of the holder (a 50 ms probe loop);
//! * each agent's peak RSS.
//!
//! [`netlab`] is the namespace harness (shared with the `dataplane` test).

mod fleet;
mod measure;
pub mod netlab;
mod phases;
mod report;

use crate::lifecycle::Operator;
use anyhow::{bail, Context as _};
use fleet::{AgentSpec, Fleet, Member};
use futures::future::try_join_all;
use powernode_actions::Permission;
use powernode_log::jetstream::{JetStreamConfig, JetStreamLog};
use powernode_log::SharedLog;
use powernode_server::node::{start_node_with, NodeExtras};
use powernode_server::services::failover::{FailoverConfig, FailoverPolicy};
use powernode_server::services::ServiceName;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Arguments of `powernode bench dataplane`.
#[derive(Debug, clap::Args)]
pub struct DataplaneArgs {
    /// NATS URL of a scratch JetStream server on this machine (the bench
    /// creates and deletes its own stream and forwards the server into the
    /// namespaces' underlay).
    #[arg(long, env = "POWERNODE_NATS_URL")]
    pub nats: String,
    /// NATS credentials (TLS is not supported here: agents reach the server
    /// through a forwarder on the underlay).
    #[command(flatten)]
    pub nats_auth: powernode_log::nats::connect::NatsClientArgs,
    /// Agents, each in its own namespace: 2 servers and N-2 workers (at
    /// least 3: a worker is the operator's gateway).
    #[arg(long, default_value_t = 5)]
    pub peers: usize,
    /// Forced promotions timed for the propagation figure (and bare
    /// `wg set` runs for its ceiling).
    #[arg(long, default_value_t = 10)]
    pub rounds: usize,
    /// The node's silence threshold (ms) under the `auto` policy.
    #[arg(long, default_value_t = 1000)]
    pub silence_threshold_ms: u64,
    /// Agents' heartbeat interval (ms).
    #[arg(long, default_value_t = 200)]
    pub heartbeat_ms: u64,
    /// Agents' VIP probe interval (ms).
    #[arg(long, default_value_t = 100)]
    pub probe_interval_ms: u64,
    /// How long one probe may take while measuring the unplanned outage
    /// (ms): a request whose SYN went to the dead holder is abandoned and
    /// sent afresh, so this bounds the figure's resolution.
    #[arg(long, default_value_t = 100)]
    pub outage_probe_timeout_ms: u64,
    /// The `powernode-agent` binary (default: beside this executable).
    #[arg(long)]
    pub agent_bin: Option<PathBuf>,
    /// Print one JSON object (otherwise a table).
    #[arg(long)]
    pub json: bool,
}

const BENCH_STREAM: &str = "PN_BENCH_DATAPLANE";

/// The members of the bench's one cluster.
struct Cluster {
    /// Its id.
    id: String,
    /// The two servers (the VIP moves between them).
    servers: [Member; 2],
    /// The workers (the first is the operator's gateway).
    workers: Vec<Member>,
}

impl Cluster {
    /// Every member.
    fn all(&self) -> Vec<&Member> {
        self.servers.iter().chain(&self.workers).collect()
    }
}

/// Runs the benchmark and prints its figures.
pub async fn run(args: DataplaneArgs) -> anyhow::Result<()> {
    if args.peers < 3 {
        bail!("--peers must be at least 3 (2 servers and a worker as the operator's gateway)");
    }
    if args.peers > 200 {
        bail!("--peers must be at most 200 (the underlay is one /24)");
    }
    if args.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    if args.nats_auth.nats_ca.is_some() {
        bail!("--nats-ca is not supported by bench dataplane: agents reach NATS through a plain TCP forwarder");
    }
    netlab::require_tools()?;
    let spec = AgentSpec {
        bin: agent_bin(args.agent_bin.clone())?,
        heartbeat_ms: args.heartbeat_ms.max(10),
        probe_ms: args.probe_interval_ms.max(10),
        boringtun: fleet::boringtun()?,
    };
    let progress = |msg: &str| eprintln!("bench: {msg}");
    let auth = args.nats_auth.client_auth()?;
    crate::ceiling::delete_stream(&args.nats, &auth, BENCH_STREAM).await?;
    let mut config = JetStreamConfig::new(&args.nats);
    config.auth = auth.clone();
    config.stream = BENCH_STREAM.to_string();
    let log: SharedLog = Arc::new(JetStreamLog::connect(config).await?);
    let dir = tempfile::Builder::new()
        .prefix("pn-bench-dataplane-")
        .tempdir()?;
    let node = start_node_with(
        log.clone(),
        dir.path(),
        &ServiceName::ALL,
        "127.0.0.1:0".parse()?,
        "bench",
        NodeExtras {
            failover: FailoverConfig {
                silence_threshold_ms: args.silence_threshold_ms,
                policy: FailoverPolicy::Auto,
                // The forced promotions must not damp the unplanned one.
                cooldown_secs: 0,
                max_promotions: usize::MAX,
                ..FailoverConfig::default()
            },
            ..NodeExtras::default()
        },
    )
    .await?;
    let outcome = async {
        let op = operator(&node).await?;
        let fleet = Fleet::start(op, &args.nats, dir.path().to_path_buf(), spec).await?;
        let started = Instant::now();
        progress(&format!(
            "bringing up {} agents, each in its own namespace (2 servers, {} workers)…",
            args.peers,
            args.peers - 2
        ));
        let cluster = bring_up(&fleet, args.peers).await?;
        let bring_up_s = started.elapsed().as_secs_f64();
        progress(&format!("up in {bring_up_s:.1} s"));
        let figures = phases::measure(&fleet, cluster, &log, &args).await?;
        anyhow::Ok((bring_up_s, figures))
    }
    .await;
    node.stop().await?;
    crate::ceiling::delete_stream(&args.nats, &auth, BENCH_STREAM).await?;
    let (bring_up_s, figures) = outcome?;
    report::print(&args, bring_up_s, &figures)
}

/// An account for the bench and an operator token allowed to provision,
/// get kubeconfigs and fail over.
async fn operator(node: &powernode_server::node::RunningNode) -> anyhow::Result<Operator> {
    Operator::for_new_account(
        node,
        "bench-dataplane",
        &[
            Permission::KubernetesProvision,
            Permission::KubernetesKubeconfig,
            Permission::SdwanFailover,
        ],
    )
    .await
    .map(|(op, _)| op)
}

/// The first server bootstraps the cluster; then the second server and
/// every worker join at once.
async fn bring_up(fleet: &Fleet, peers: usize) -> anyhow::Result<Cluster> {
    let s1 = fleet.member("srv-1", "k3s-server", None).await?;
    let id = fleet.wait_cluster_active(&s1).await?;
    let s2 = fleet.member("srv-2", "k3s-server", Some(&id));
    let workers = try_join_all((1..=peers - 2).map(|i| {
        let hostname = format!("wrk-{i}");
        let id = id.clone();
        async move { fleet.member(&hostname, "k3s-agent", Some(&id)).await }
    }));
    let (s2, workers) = futures::try_join!(s2, workers)?;
    let cluster = Cluster {
        id,
        servers: [s1, s2],
        workers,
    };
    fleet.wait_nodes_ready(&cluster.id, &cluster.all()).await?;
    Ok(cluster)
}

/// `--agent-bin`, or `powernode-agent` beside this executable.
fn agent_bin(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(p) => p,
        None => std::env::current_exe()
            .context("cannot find this executable")?
            .parent()
            .context("this executable has no directory")?
            .join("powernode-agent"),
    };
    if !path.is_file() {
        bail!(
            "no powernode-agent at {} (build it: cargo build --release -p powernode-agent, or pass --agent-bin)",
            path.display()
        );
    }
    Ok(path)
}
