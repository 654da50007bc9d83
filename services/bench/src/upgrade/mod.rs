//! `powernode bench upgrade`: C clusters (S servers + W workers each,
//! pinned to the old release), every node a simulated agent in this
//! process over NATS whose upgrade takes `--node-upgrade-ms`; one rolling
//! upgrade per cluster's worker template (and server template when
//! S > 1) started at once, all followed to the end. Figures from the
//! log's store times ([`measure`]), next to two ceilings measured in the
//! same run: the least time the plans allow (their batches ×
//! node-upgrade-ms, the longest execution) and the raw JetStream publish
//! rate for the same events.

mod fleet;
mod measure;

use super::ceiling;
use super::lifecycle::{percentile, Operator};
use anyhow::{bail, Context};
use fleet::{Agents, BenchCluster};
use futures::{StreamExt, TryStreamExt};
use powernode_actions::{ActionName, Permission};
use powernode_agent::link::NatsLink;
use powernode_events::Envelope;
use powernode_log::jetstream::{JetStreamConfig, JetStreamLog};
use powernode_log::SharedLog;
use powernode_server::node::{start_node_with, NodeExtras};
use powernode_server::services::ServiceName;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Arguments of `powernode bench upgrade`.
#[derive(Debug, clap::Args)]
pub struct UpgradeArgs {
    /// NATS URL of a scratch JetStream server (the bench creates and deletes its own stream).
    #[arg(long, env = "POWERNODE_NATS_URL")]
    pub nats: String,
    /// NATS credentials and TLS.
    #[command(flatten)]
    pub nats_auth: powernode_log::nats::connect::NatsClientArgs,
    /// Clusters.
    #[arg(long, default_value_t = 100)]
    pub clusters: usize,
    /// Workers per cluster.
    #[arg(long, default_value_t = 5)]
    pub workers: usize,
    /// Servers per cluster (more than 1: built with `provision_cluster`,
    /// and their template is upgraded too).
    #[arg(long, default_value_t = 1)]
    pub servers: usize,
    /// How long one simulated node upgrade takes, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub node_upgrade_ms: u64,
    /// Percent of a template's instances per batch.
    #[arg(long, default_value_t = 50)]
    pub batch_pct: u32,
    /// Agents' heartbeat interval in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub heartbeat_ms: u64,
    /// Clusters brought up at the same time.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

const BENCH_STREAM: &str = "PN_BENCH_UPGRADE";

/// What the bench starts: (execution id, batches of its plan).
async fn start_upgrades(
    op: &Operator,
    clusters: &[BenchCluster],
    args: &UpgradeArgs,
) -> anyhow::Result<Vec<(String, usize)>> {
    let mut starts = Vec::new();
    for c in clusters {
        starts.push((c.worker_template.clone(), "mod-k3s-agent", "k3s-agent"));
        if args.servers > 1 {
            starts.push((c.server_template.clone(), "mod-k3s-server", "k3s-server"));
        }
    }
    futures::stream::iter(starts)
        .map(|(template, module_id, module)| async move {
            let a = op
                .call(
                    ActionName::ExecuteSkill.as_str(),
                    json!({
                        "skill": "system-rolling-module-upgrade",
                        "inputs": {
                            "template_id": template,
                            "module_id": module_id,
                            "target_version_id": fleet::version_id(module, fleet::TO.0),
                            "batch_pct": args.batch_pct,
                            "max_consecutive_failures": 1,
                        }
                    }),
                )
                .await?;
            let e = &a["execution"];
            anyhow::Ok((
                e["id"].as_str().context("execution id")?.to_string(),
                e["batches"].as_array().map_or(0, Vec::len),
            ))
        })
        .buffer_unordered(32)
        .try_collect()
        .await
}

/// Runs the benchmark and prints its figures.
pub async fn run(args: UpgradeArgs) -> anyhow::Result<()> {
    if args.clusters == 0 || !(1..=100).contains(&args.batch_pct) {
        bail!("--clusters must be at least 1 and --batch-pct within 1-100");
    }
    let progress = |msg: &str| eprintln!("bench: {msg}");
    let auth = args.nats_auth.client_auth()?;
    ceiling::delete_stream(&args.nats, &auth, BENCH_STREAM).await?;
    let mut config = JetStreamConfig::new(&args.nats);
    config.auth = auth.clone();
    config.stream = BENCH_STREAM.to_string();
    let log: SharedLog = Arc::new(JetStreamLog::connect(config).await?);
    let dir = tempfile::tempdir()?;
    let node = start_node_with(
        log.clone(),
        dir.path(),
        &ServiceName::ALL,
        "127.0.0.1:0".parse()?,
        "bench",
        NodeExtras::default(),
    )
    .await?;
    let (op, _) =
        Operator::for_new_account(&node, "bench-upgrade", &[Permission::KubernetesProvision])
            .await?;
    let agents = Agents {
        // One connection stands in for every simulated agent: the
        // platform's own user (an agent's grant covers its own subjects only).
        link: Arc::new(
            NatsLink::connect_with(&args.nats, &crate::platform_link_auth(&auth)).await?,
        ),
        interval: Duration::from_millis(args.heartbeat_ms.max(10)),
        node_upgrade: Duration::from_millis(args.node_upgrade_ms),
        stop: CancellationToken::new(),
    };
    fleet::catalog(&op).await?;
    progress(&format!(
        "bringing up {} clusters × ({} server(s) + {} workers) on {} {}…",
        args.clusters,
        args.servers.max(1),
        args.workers,
        fleet::FROM.0,
        fleet::FROM.1
    ));
    let up = Instant::now();
    let clusters: Vec<BenchCluster> = futures::stream::iter(0..args.clusters)
        .map(|i| {
            let (op, agents) = (&op, &agents);
            let (servers, workers) = (args.servers, args.workers);
            async move {
                fleet::one_cluster(op, agents, i, servers, workers)
                    .await
                    .with_context(|| format!("cluster {i}"))
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .try_collect()
        .await?;
    progress(&format!("up in {:.1} s", up.elapsed().as_secs_f64()));

    let first_seq = log.last_seq().await? + 1;
    progress(&format!(
        "starting {} rolling upgrades at once (batch_pct {}, node upgrade {} ms)…",
        clusters.len() * if args.servers > 1 { 2 } else { 1 },
        args.batch_pct,
        args.node_upgrade_ms
    ));
    let started = Instant::now();
    let runs = start_upgrades(&op, &clusters, &args).await?;
    let ids: HashSet<String> = runs.iter().map(|(id, _)| id.clone()).collect();
    let timeout = Duration::from_secs(600);
    fleet::wait_until("every execution to finish", timeout, || async {
        let list = op
            .call(ActionName::ListSkillExecutions.as_str(), json!({}))
            .await?;
        let open = list["executions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["id"].as_str().is_some_and(|id| ids.contains(id)))
            .filter(|e| !matches!(e["status"].as_str(), Some("completed" | "aborted")))
            .count();
        Ok((open == 0).then_some(()))
    })
    .await?;
    let seconds = started.elapsed().as_secs_f64();

    progress("reading the log…");
    let last_seq = log.last_seq().await?;
    let records = super::read_range(&log, first_seq, last_seq).await?;
    let decoded: Vec<_> = records
        .iter()
        .filter_map(|r| Envelope::decode(&r.bytes).ok().map(|e| (r.stored_at, e)))
        .collect();
    let f = measure::figures(decoded.iter().map(|(t, e)| (*t, &e.payload)));
    let (mut overhead, mut first_step, mut report, mut step) = (
        f.overhead_ms.clone(),
        f.first_step_ms.clone(),
        f.report_to_outcome_ms.clone(),
        f.step_ms.clone(),
    );
    for v in [&mut overhead, &mut first_step, &mut report, &mut step] {
        v.sort_by(f64::total_cmp);
    }
    progress("measuring the raw JetStream ceiling for the same events…");
    let payloads: Vec<Vec<u8>> = records.iter().map(|r| r.bytes.to_vec()).collect();
    let raw = ceiling::measure(&args.nats, &auth, &payloads).await?;
    agents.stop.cancel();
    node.stop().await?;
    ceiling::delete_stream(&args.nats, &auth, BENCH_STREAM).await?;

    let batches = runs.iter().map(|(_, b)| *b).max().unwrap_or(0);
    let minimum_s = (batches as u64 * args.node_upgrade_ms) as f64 / 1000.0;
    let events = records.len();
    let events_per_s = events as f64 / seconds;
    let round2 = |x: f64| (x * 100.0).round() / 100.0;
    let out: Value = json!({
        "bench": "upgrade",
        "clusters": args.clusters,
        "servers_per_cluster": args.servers.max(1),
        "workers_per_cluster": args.workers,
        "executions": runs.len(),
        "completed": f.completed,
        "aborted": f.aborted,
        "failed_steps": f.failed_steps,
        "steps": step.len(),
        "batches_per_execution": batches,
        "batch_pct": args.batch_pct,
        "node_upgrade_ms": args.node_upgrade_ms,
        "heartbeat_ms": args.heartbeat_ms,
        "seconds": round2(seconds),
        "log_span_s": round2(f.span_ms / 1000.0),
        "minimum_s": round2(minimum_s),
        "time_ratio": round2(if minimum_s > 0.0 { seconds / minimum_s } else { 0.0 }),
        "scheduling_overhead_p50_ms": percentile(&overhead, 0.50),
        "scheduling_overhead_p99_ms": percentile(&overhead, 0.99),
        "scheduling_overhead_max_ms": percentile(&overhead, 1.0),
        "first_step_p99_ms": percentile(&first_step, 0.99),
        "report_to_outcome_p50_ms": percentile(&report, 0.50),
        "report_to_outcome_p99_ms": percentile(&report, 0.99),
        "step_p50_ms": percentile(&step, 0.50),
        "step_p99_ms": percentile(&step, 0.99),
        "events": events,
        "events_per_s": events_per_s.round(),
        "raw_publish_per_s": raw.publish_per_s.round(),
        "events_ratio": (events_per_s / raw.publish_per_s * 1000.0).round() / 1000.0,
        "peak_rss_mib": (super::peak_rss_mib() * 10.0).round() / 10.0,
    });
    if f.completed != runs.len() {
        progress(&format!(
            "{} of {} executions did not complete ({} aborted)",
            runs.len() - f.completed,
            runs.len(),
            f.aborted
        ));
    }
    super::print_figures(&out, args.json)
}
