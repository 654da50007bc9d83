//! `powernode bench scale`: C clusters × (1 server + W workers) on one
//! node, through the whole handshake (operator actions over HTTP,
//! simulated agents over NATS, every service folding the JetStream log
//! live), then what the fleet costs each service: resident memory per
//! node, its checkpoints (bytes, the consumer's stall, the write), its
//! fold rate over padding events fed straight to the log, and the API's
//! paginated `kubernetes_list_clusters` and cluster-filtered
//! `recent_events` latency with the log padded to `--pad-to` events.
//!
//! The figures are gathered in [`measure`] (also what the test calls);
//! the padding, the queries and the checkpoint figures are in
//! `scale_parts.rs`.

use super::lifecycle::{build_clusters, percentile, Operator, TimingLink};
use super::scale_parts::{self, Phase};
use anyhow::bail;
use clap::Parser;
use powernode_actions::Permission;
use powernode_agent::link::NatsLink;
use powernode_log::jetstream::{JetStreamConfig, JetStreamLog};
use powernode_log::SharedLog;
use powernode_server::node::{start_node_with, NodeExtras};
use powernode_server::services::ServiceName;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Arguments of `powernode bench scale`.
#[derive(Debug, Clone, clap::Args)]
pub struct ScaleArgs {
    /// NATS URL of a scratch JetStream server (the bench creates and deletes
    /// its own stream).
    #[arg(long, env = "POWERNODE_NATS_URL")]
    pub nats: String,
    /// NATS credentials and TLS.
    #[command(flatten)]
    pub nats_auth: powernode_log::nats::connect::NatsClientArgs,
    /// Clusters.
    #[arg(long, default_value_t = 1000)]
    pub clusters: usize,
    /// Workers per cluster (each cluster also has one server).
    #[arg(long, default_value_t = 9)]
    pub workers: usize,
    /// Clusters brought up at the same time.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Pad the log with `kubeconfig.retrieved` events about the fleet's
    /// clusters (folded by every service, kept by none) until it holds
    /// this many events; 0: only the fleet's own. The fold rate is
    /// measured over the padding.
    #[arg(long, default_value_t = 0)]
    pub pad_to: u64,
    /// `kubernetes_list_clusters` pages asked for the latency figure.
    #[arg(long, default_value_t = 200)]
    pub list_calls: usize,
    /// Clusters per page.
    #[arg(long, default_value_t = 100)]
    pub page_size: usize,
    /// Cluster-filtered `recent_events` calls for the latency figure.
    #[arg(long, default_value_t = 200)]
    pub recent_calls: usize,
    /// How the log groups concurrent appends (see `powernode up --help`).
    #[arg(long, value_enum, default_value = "atomic")]
    pub group_commit: powernode_log::jetstream::GroupCommit,
    /// Atomic batches (or lone publishes) awaiting their ack at once.
    #[arg(long, default_value_t = powernode_log::jetstream::DEFAULT_MAX_IN_FLIGHT)]
    pub max_in_flight: usize,
    /// Print one JSON object (otherwise pretty JSON).
    #[arg(long)]
    pub json: bool,
}

impl ScaleArgs {
    /// Arguments as on the command line (`--nats URL --clusters 5 …`).
    pub fn parse_from<I, T>(argv: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: ScaleArgs,
        }
        let argv = std::iter::once("scale".into()).chain(argv.into_iter().map(Into::into));
        Cli::try_parse_from(argv).map(|c| c.args)
    }
}

const BENCH_STREAM: &str = "PN_BENCH_SCALE";

/// Runs the benchmark and prints its figures.
pub async fn run(args: ScaleArgs) -> anyhow::Result<()> {
    let out = measure(&args).await?;
    super::print_figures(&out, args.json)
}

/// Builds the fleet, measures, tears down; the figures.
pub async fn measure(args: &ScaleArgs) -> anyhow::Result<Value> {
    if args.clusters == 0 || args.concurrency == 0 || args.page_size == 0 {
        bail!("--clusters, --concurrency and --page-size must be at least 1");
    }
    let progress = |msg: &str| eprintln!("bench scale: {msg}");
    let auth = args.nats_auth.client_auth()?;
    super::ceiling::delete_stream(&args.nats, &auth, BENCH_STREAM).await?;
    let mut config = JetStreamConfig::new(&args.nats);
    config.auth = auth.clone();
    config.stream = BENCH_STREAM.to_string();
    config.group_commit = args.group_commit;
    config.max_in_flight = args.max_in_flight.max(1);
    let js_log = Arc::new(JetStreamLog::connect(config).await?);
    let log: SharedLog = js_log.clone();
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
    let services: Vec<String> = ServiceName::ALL
        .iter()
        .map(|s| s.as_str().to_string())
        .collect();
    let (op, _token) =
        Operator::for_new_account(&node, "scale", &[Permission::KubernetesProvision]).await?;
    let link = Arc::new(TimingLink {
        inner: NatsLink::connect_with(&args.nats, &crate::platform_link_auth(&auth)).await?,
        joins_ms: Mutex::default(),
    });
    scale_parts::caught_up(&log, &services, Duration::from_secs(60)).await?;
    let baseline_rss = scale_parts::rss_bytes();
    let before_build = scale_parts::checkpoint_marks();

    // 1. The fleet, through the handshake.
    let nodes = args.clusters * (1 + args.workers);
    progress(&format!(
        "bringing up {} clusters × (1 server + {} workers) = {nodes} nodes, {} at a time…",
        args.clusters, args.workers, args.concurrency
    ));
    let start = Instant::now();
    build_clusters(
        &op,
        &link,
        args.clusters,
        args.workers,
        args.concurrency,
        "bench scale",
        500,
    )
    .await?;
    let build_s = start.elapsed().as_secs_f64();
    let fleet_events = log.last_seq().await?;
    scale_parts::caught_up(&log, &services, Duration::from_secs(600)).await?;
    let fleet_rss = scale_parts::rss_bytes();
    let built = Phase::since(&before_build);
    let clusters = scale_parts::all_clusters(&op, args.page_size).await?;
    if clusters.len() != args.clusters {
        bail!(
            "expected {} clusters, the API lists {}",
            args.clusters,
            clusters.len()
        );
    }

    // 2. Padding, folded live: the fold rate, and checkpoints at full size.
    let before_pad = scale_parts::checkpoint_marks();
    let pad = args.pad_to.saturating_sub(fleet_events);
    let folds = if pad > 0 {
        progress(&format!("padding the log with {pad} events…"));
        let account = scale_parts::account_of(&op).await?;
        Some(scale_parts::pad_and_fold(&js_log, &log, &account, &clusters, pad, &services).await?)
    } else {
        None
    };
    let padded = Phase::since(&before_pad);

    // 3. The API with the fleet in place.
    progress("kubernetes_list_clusters (paginated) and recent_events by cluster…");
    let list = scale_parts::list_latency(&op, args.page_size, args.list_calls).await?;
    let recent = scale_parts::recent_latency(&op, &clusters, args.recent_calls).await?;
    let mut joins = link.joins_ms.lock().expect("joins lock").clone();
    joins.sort_by(f64::total_cmp);
    let log_events = log.last_seq().await?;

    node.stop().await?;
    // Every checkpoint of the run, the ones written on the way out included.
    let whole_run = Phase::since(&Default::default());
    super::ceiling::delete_stream(&args.nats, &auth, BENCH_STREAM).await?;
    let stored = scale_parts::stored_sizes(&dir.path().join("checkpoints-bench"), &services);

    let rss_above = fleet_rss.saturating_sub(baseline_rss);
    let per_node_per_service = rss_above as f64 / nodes as f64 / services.len() as f64;
    let mut per_service = serde_json::Map::new();
    for name in &services {
        let mut s = json!({
            "checkpoints_while_building": built.of(name),
            "checkpoints_while_padding": padded.of(name),
            "checkpoints_whole_run": whole_run.of(name),
        });
        if let Some(folds) = &folds {
            s["fold_events_per_s"] = json!(folds.rate(name));
        }
        if let Some(sizes) = stored.as_ref().ok().and_then(|m| m.get(name)) {
            s["stored"] = sizes.clone();
        }
        per_service.insert(name.clone(), s);
    }
    Ok(json!({
        "bench": "scale",
        "clusters": args.clusters,
        "workers_per_cluster": args.workers,
        "nodes": nodes,
        "services": services.len(),
        "concurrency": args.concurrency,
        "build_seconds": round2(build_s),
        "fleet_events": fleet_events,
        "fleet_events_per_s": (fleet_events as f64 / build_s).round(),
        "nodes_per_s": (nodes as f64 / build_s).round(),
        "join_p99_ms": percentile(&joins, 0.99),
        "log_events": log_events,
        "pad_events": pad,
        "pad_append_per_s": folds.as_ref().map(|f| f.append_per_s.round()),
        "rss_baseline_mib": round2(baseline_rss as f64 / 1048576.0),
        "rss_with_fleet_mib": round2(fleet_rss as f64 / 1048576.0),
        "rss_per_node_per_service_bytes": per_node_per_service.round(),
        "rss_per_node_per_service_target_bytes": 2048,
        "list_clusters_paginated": list.paginated,
        "list_clusters_page_size": args.page_size,
        "list_clusters_p50_ms": percentile(&list.ms, 0.50),
        "list_clusters_p99_ms": percentile(&list.ms, 0.99),
        "recent_events_cluster_p50_ms": percentile(&recent, 0.50),
        "recent_events_cluster_p99_ms": percentile(&recent, 0.99),
        "checkpoint_store": stored.as_ref().map_or_else(
            |e| json!({ "error": e.to_string() }),
            |m| m.get("_store").cloned().unwrap_or(Value::Null)
        ),
        "per_service": per_service,
        "peak_rss_mib": round2(super::peak_rss_mib()),
    }))
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}
