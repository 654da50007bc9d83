//! # powernode-bench — `powernode bench …`
//!
//! Benchmarks that print their figures next to the bare JetStream ceiling
//! measured in the same run (a figure without its ceiling is not a
//! measurement here). They drive real nodes ([`powernode_server::node`])
//! and simulated agents over real NATS; they must never be part of a
//! node's run path, and never assert timings (tests do not time; benches do
//! not assert).

mod ceiling;
pub mod dataplane;
mod failover;
mod lifecycle;
mod log_bench;
mod recent_events;
mod replay;
pub mod scale;
mod scale_parts;
mod upgrade;
pub mod workload;

use clap::Subcommand;
use powernode_agent::link::NatsAuth;
use powernode_log::nats::connect::ClientAuth;

/// An agent link (`NatsLink`) as the platform's own user: for benches and
/// tests whose one connection stands in for many simulated agents (an
/// agent's own grant covers its own subjects only).
pub fn platform_link_auth(auth: &ClientAuth) -> NatsAuth {
    let mut link = match &auth.creds {
        Some(c) => NatsAuth::from_seed(&c.user_seed),
        None => NatsAuth::default(),
    };
    link.ca_file = auth.ca_file.clone();
    link
}

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Append throughput through the log until a projection applied the last
    /// event, projection rebuild by replay, and signature verification, each
    /// against the raw JetStream ceiling.
    Log(log_bench::LogBenchArgs),
    /// C clusters × (1 server + W workers) through the whole handshake with
    /// simulated agents over NATS; join latency, API list latency, events/s
    /// against the raw JetStream ceiling.
    Lifecycle(lifecycle::LifecycleArgs),
    /// V clusters × 3 servers with simulated agents over NATS; holders
    /// killed in waves, proposals approved, the rest drained: detection,
    /// proposal, promotion and drain latencies, split-brain count.
    Failover(failover::FailoverArgs),
    /// `recent_events` p50/p99 on a stream of a million events (common,
    /// rare and absent kind prefixes, no prefix, a `since` read), through
    /// the action over HTTP.
    RecentEvents(recent_events::RecentEventsArgs),
    /// The fleet rebuilt from an export file (no network), every signature
    /// verified, then again with --trust-signatures: events/s and peak RSS
    /// of each (`--generate N` writes a synthetic export first).
    Replay(replay::ReplayBenchArgs),
    /// N real agents, each in its own network namespace with its WireGuard
    /// interface (root, boringtun-cli): config propagation over forced
    /// promotions, unplanned downtime under the auto policy, failed
    /// requests during a drain, agents' peak RSS, beside a bare `wg set`
    /// and the probe's own round trip.
    Dataplane(dataplane::DataplaneArgs),
    /// C clusters × (S servers + W workers) of simulated agents over NATS,
    /// pinned to an old k3s; one rolling upgrade per worker template (and
    /// server template when S > 1) at once: total time against the least
    /// the plans allow, the executor's scheduling overhead between batches,
    /// events against the raw JetStream ceiling.
    Upgrade(upgrade::UpgradeArgs),
    /// C clusters × (1 server + W workers) through the handshake on one
    /// node, the log optionally padded: per service RSS per node,
    /// incremental checkpoints (bytes, stall, write), fold rate, and the
    /// paginated list and cluster-filtered recent_events latency.
    Scale(scale::ScaleArgs),
}

/// Runs a benchmark.
pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Log(args) => log_bench::run(args).await,
        BenchCommand::Lifecycle(args) => lifecycle::run(args).await,
        BenchCommand::Failover(args) => failover::run(args).await,
        BenchCommand::RecentEvents(args) => recent_events::run(args).await,
        BenchCommand::Replay(args) => replay::run(args).await,
        BenchCommand::Dataplane(args) => dataplane::run(args).await,
        BenchCommand::Upgrade(args) => upgrade::run(args).await,
        BenchCommand::Scale(args) => scale::run(args).await,
    }
}

/// Every record of `log` from `from` through `through`, in order.
pub(crate) async fn read_range(
    log: &powernode_log::SharedLog,
    from: u64,
    through: u64,
) -> Result<Vec<powernode_log::Record>, powernode_log::LogError> {
    let mut records = Vec::new();
    let mut next = from;
    while next <= through {
        let batch = log
            .read(next, 10_000, &powernode_log::Filter::all())
            .await?;
        let Some(last) = batch.last().map(|r| r.seq) else {
            break;
        };
        next = last + 1;
        records.extend(batch.into_iter().filter(|r| r.seq <= through));
    }
    Ok(records)
}

/// Prints a benchmark's figures: one JSON line, or pretty JSON.
pub(crate) fn print_figures(out: &serde_json::Value, one_line: bool) -> anyhow::Result<()> {
    if one_line {
        println!("{out}");
    } else {
        println!("{}", serde_json::to_string_pretty(out)?);
    }
    Ok(())
}

/// Peak resident set size of this process in MiB (Linux `VmHWM`; 0 elsewhere).
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
