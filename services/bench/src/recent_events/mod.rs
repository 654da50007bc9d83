//! `powernode bench recent-events`: `recent_events` latency on a stream of
//! a million events, through the real action over HTTP.
//!
//! The stream is filled fast: a block of lifecycle events (the
//! [`workload`] mix over 20 accounts) is encoded once and published again
//! and again, pipelined, straight to JetStream, with a rare kind
//! (`system.k3s.kubeconfig.retrieved`) slipped in every 10 000 events for
//! the measured account. Then the API's router runs on a loopback port
//! with a projection holding one operator token of that account, and each
//! case is asked `--queries` times: p50, p99 and max latency.
//!
//! The cases: a common prefix (`system.k3s`), the tutorial's
//! `system.k3s.handshake.join`, the rare kind, a kind the account never
//! had (every window until the start), no prefix, and `since` reads of
//! the last 10 000 records by sequence and by stored time.
//!
//! Filtered by cluster or instance (served from the API's events index,
//! built before measuring): a cluster and an instance with events in every
//! block, a cluster named once mid-stream (the scan reads the whole
//! account for it), and a cluster from a `since` 100 000 back. Each is
//! printed next to the raw ceiling measured in the same run (reading the
//! same records straight from the log by sequence), and, with
//! `--scan-queries`, the same query answered by a scan of the account
//! (the API without its index).
//!
//! `kubernetes_list_clusters` with `--clusters` clusters (5 nodes each) in
//! the measured account: a first page, a page from a token, and the whole
//! list, next to the cheapest action over the same HTTP (`system_whoami`).

mod clusters;

use super::ceiling;
use super::workload;
use anyhow::{bail, Context};
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use powernode_actions::ActionName;
use powernode_client::Api;
use powernode_events::payloads::fleet::OperatorTokenIssued;
use powernode_events::payloads::k3s::KubeconfigRetrieved;
use powernode_events::subject::{event_subject, EVENT_SUBJECT_ROOT};
use powernode_events::{AccountId, Actor, Envelope};
use powernode_log::jetstream::{JetStreamConfig, JetStreamLog};
use powernode_log::{EventLog, SharedLog};
use powernode_projections::{FleetState, Projection};
use powernode_runtime::Shared;
use powernode_server::api::auth::fingerprint;
use powernode_server::api::index::{EventIndex, SharedIndex};
use powernode_server::api::{router, ApiState};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Arguments of `powernode bench recent-events`.
#[derive(Debug, clap::Args)]
pub struct RecentEventsArgs {
    /// NATS URL of a scratch JetStream server (the bench creates and
    /// deletes its own stream; it refuses to run where `pn.evt.>` is
    /// already taken).
    #[arg(long, env = "POWERNODE_NATS_URL")]
    pub nats: String,
    /// NATS credentials and TLS.
    #[command(flatten)]
    pub nats_auth: powernode_log::nats::connect::NatsClientArgs,
    /// Events in the stream.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: usize,
    /// Queries per case.
    #[arg(long, default_value_t = 200)]
    pub queries: usize,
    /// Queries per cluster/instance case for the scan (the API without its
    /// index); 0 skips the comparison.
    #[arg(long, default_value_t = 5)]
    pub scan_queries: usize,
    /// Clusters (5 nodes each) in the measured account's projection for
    /// the `kubernetes_list_clusters` cases; 0 skips them.
    #[arg(long, default_value_t = 10_000)]
    pub clusters: usize,
    /// Keep the stream afterwards and reuse one that already holds at
    /// least --events events (skips the fill on the next run).
    #[arg(long)]
    pub keep: bool,
    /// Print one JSON line (otherwise pretty JSON).
    #[arg(long)]
    pub json: bool,
}

const BENCH_STREAM: &str = "PN_BENCH_RECENT";
/// Events in the block published again and again.
const BLOCK: usize = 20_000;
/// One rare event every this many.
const RARE_EVERY: usize = 10_000;
/// Publish acks outstanding at once.
const WINDOW: usize = 4096;

/// Runs the benchmark and prints its figures.
pub async fn run(args: RecentEventsArgs) -> anyhow::Result<()> {
    if args.events == 0 || args.queries == 0 {
        bail!("--events and --queries must be at least 1");
    }
    let progress = |msg: &str| eprintln!("bench: {msg}");
    let account = AccountId::new("acct-0").expect("literal is a valid account id");
    let mut config = JetStreamConfig::new(&args.nats);
    config.auth = args.nats_auth.client_auth()?;
    config.stream = BENCH_STREAM.to_string();
    let mut log = None;
    if args.keep {
        if let Ok(l) = JetStreamLog::connect(config.clone()).await {
            if l.last_seq().await? >= args.events as u64 {
                progress("reusing the stream of an earlier run");
                log = Some(l);
            }
        }
    }
    let (log, filled) = match log {
        Some(l) => (l, None),
        None => {
            ceiling::delete_stream(&args.nats, &args.nats_auth.client_auth()?, BENCH_STREAM)
                .await?;
            let l = JetStreamLog::connect(config).await.context(
                "cannot set up the bench stream (is pn.evt.> already used by a stream on this server? use a scratch server)",
            )?;
            progress(&format!("filling the stream with {} events…", args.events));
            let start = Instant::now();
            let own = fill(&l, &account, args.events).await?;
            (l, Some((start.elapsed().as_secs_f64(), own)))
        }
    };
    let last = log.last_seq().await?;
    let log: SharedLog = Arc::new(log);

    // The time the record 10 000 back was stored: a `since` by time that
    // lands mid-stream (the binary search on stored times).
    let mid_time = log
        .read(
            last.saturating_sub(10_000).max(1),
            1,
            &powernode_log::Filter::all(),
        )
        .await?
        .first()
        .map(|r| r.stored_at.to_rfc3339())
        .context("the stream is empty")?;
    let token = powernode_server::api::auth::new_token();
    let mut fleet = fleet_with_token(&account, &token);
    let (clusters_folded, inside) = if args.clusters > 0 {
        progress(&format!(
            "folding {} clusters into the projection…",
            args.clusters
        ));
        let n = clusters::fold(&mut fleet, &account, args.clusters);
        (n, clusters::breakdown(&fleet, &account, args.queries))
    } else {
        (0, Value::Null)
    };
    // The index, built before measuring (the API starts it on the first
    // filtered query and scans past it meanwhile).
    let index: SharedIndex = Arc::default();
    let stop = CancellationToken::new();
    progress("building the events index…");
    let start = Instant::now();
    index.ensure_started(&log, &stop);
    if !index.wait_for(last, Duration::from_secs(1800)).await {
        bail!("the events index did not reach seq {last} in 30 minutes");
    }
    let index_build_s = start.elapsed().as_secs_f64();
    let size = index.size();
    let (url, server) = serve(log.clone(), fleet.clone(), index.clone()).await?;
    let api = Api::new(&url, &token)?;
    let (scan_url, scan_server) =
        serve(log.clone(), fleet, Arc::new(EventIndex::unfollowed())).await?;
    let scan_api = Api::new(&scan_url, &token)?;
    let sparse = (args.events / 2 / RARE_EVERY) * RARE_EVERY + RARE_EVERY / 2;
    let cases = [
        (
            "common_prefix",
            json!({"kind_prefix": "system.k3s", "limit": 20}),
        ),
        (
            "tutorial_prefix",
            json!({"kind_prefix": "system.k3s.handshake.join", "limit": 5}),
        ),
        (
            "rare_prefix",
            json!({"kind_prefix": "system.k3s.kubeconfig", "limit": 20}),
        ),
        (
            "absent_kind",
            json!({"kind_prefix": powernode_events::EventKind::ApprovalGranted.as_str(), "limit": 20}),
        ),
        ("no_prefix", json!({"limit": 20})),
        (
            "since_last_10k_seqs",
            json!({"since": last.saturating_sub(10_000), "kind_prefix": "system.k3s", "limit": 100}),
        ),
        (
            "since_time_10k_back",
            json!({"since": mid_time, "kind_prefix": "system.k3s", "limit": 100}),
        ),
    ];
    let mut figures = serde_json::Map::new();
    for (name, args_json) in cases {
        progress(&format!("{name}: {} queries…", args.queries));
        figures.insert(
            name.to_string(),
            measure(&api, &args_json, args.queries).await?,
        );
    }
    let filtered = [
        (
            "cluster",
            json!({"cluster": "cluster-00000000", "limit": 20}),
        ),
        (
            "instance",
            json!({"instance": "inst-00000000-1", "limit": 20}),
        ),
        (
            "cluster_named_once_mid_stream",
            json!({"cluster": format!("cluster-{sparse}"), "limit": 20}),
        ),
        (
            "cluster_since_100k_back",
            json!({"cluster": "cluster-00000000", "since": last.saturating_sub(100_000), "limit": 20}),
        ),
    ];
    let mut by_id = serde_json::Map::new();
    for (name, args_json) in filtered {
        progress(&format!("{name}: {} queries from the index…", args.queries));
        let mut case = measure(&api, &args_json, args.queries).await?;
        let seqs = answer_seqs(&api, &args_json).await?;
        let raw = ceiling_read(log.as_ref(), &seqs, args.queries).await?;
        case["raw_read_by_seq"] = raw.clone();
        case["ratio_raw_to_index_p99"] = ratio(&raw, &case);
        if args.scan_queries > 0 {
            progress(&format!("{name}: {} queries by scan…", args.scan_queries));
            let scanned = measure(&scan_api, &args_json, args.scan_queries).await?;
            let same = answer_seqs(&scan_api, &args_json).await? == seqs;
            case["scan"] = scanned;
            case["scan_answer_equal"] = json!(same);
        }
        by_id.insert(name.to_string(), case);
    }
    let list_clusters = if args.clusters > 0 {
        progress(&format!(
            "kubernetes_list_clusters: {} queries per case…",
            args.queries
        ));
        clusters::measure(&api, args.queries).await?
    } else {
        Value::Null
    };
    server.abort();
    scan_server.abort();
    stop.cancel();
    if !args.keep {
        ceiling::delete_stream(&args.nats, &args.nats_auth.client_auth()?, BENCH_STREAM).await?;
    }
    let out = json!({
        "events_in_stream": last,
        "accounts": 20,
        "measured_account": account.as_str(),
        "measured_account_events": filled.map(|(_, own)| own),
        "fill_s": filled.map(|(s, _)| (s * 10.0).round() / 10.0),
        "queries_per_case": args.queries,
        "cases": figures,
        "index": {
            "build_s": (index_build_s * 10.0).round() / 10.0,
            "ids": size.ids,
            "entries": size.entries,
            "ring": powernode_server::api::index::RING,
        },
        "by_cluster_or_instance": by_id,
        "list_clusters": {
            "clusters_in_account": clusters_folded,
            "cases": list_clusters,
            "inside_the_api": inside,
        },
        "peak_rss_mib": (super::peak_rss_mib() * 10.0).round() / 10.0,
    });
    super::print_figures(&out, args.json)
}

/// Publishes `n` events: the workload block again and again, a rare kind
/// for `account` every [`RARE_EVERY`]. Answers how many are `account`'s.
async fn fill(log: &JetStreamLog, account: &AccountId, n: usize) -> anyhow::Result<u64> {
    let own_prefix = format!("{EVENT_SUBJECT_ROOT}.{}.", account.as_str());
    let mut own = 0u64;
    let block: Vec<(String, Bytes)> = workload::build(BLOCK.min(n), 20)
        .into_iter()
        .flat_map(|s| s.events)
        .map(|e| encoded(&e))
        .collect::<anyhow::Result<_>>()?;
    let js = async_nats::jetstream::new(log.client().clone());
    let mut acks = FuturesUnordered::new();
    for i in 0..n {
        let (subject, payload) = if i % RARE_EVERY == RARE_EVERY / 2 {
            encoded(&Envelope::new(
                account.clone(),
                Actor::service("bench"),
                KubeconfigRetrieved {
                    cluster_id: format!("cluster-{i}"),
                    fingerprint: "sha256:00".into(),
                },
            ))?
        } else {
            block[i % block.len()].clone()
        };
        own += u64::from(subject.starts_with(&own_prefix));
        if acks.len() >= WINDOW {
            acks.next().await.context("ack stream ended")??;
        }
        let ack = js.publish(subject, payload).await?;
        acks.push(std::future::IntoFuture::into_future(ack));
    }
    while let Some(ack) = acks.next().await {
        ack?;
    }
    Ok(own)
}

fn encoded(e: &Envelope) -> anyhow::Result<(String, Bytes)> {
    Ok((
        event_subject(&e.account_id, &e.aggregate, e.kind())?,
        Bytes::from(e.encode()?),
    ))
}

/// A projection that knows one operator token of `account`.
fn fleet_with_token(account: &AccountId, token: &str) -> FleetState {
    let mut fleet = FleetState::default();
    let issued = Envelope::new(
        account.clone(),
        Actor::service("bench"),
        OperatorTokenIssued {
            token_id: "tok-bench".into(),
            permissions: vec![],
            fingerprint: fingerprint(token),
            expires_at: None,
        },
    );
    fleet.apply(1, &issued);
    fleet
}

/// The API's router on a loopback port, over `log`, with `fleet` as its
/// projection and `index` as its events index.
async fn serve(
    log: SharedLog,
    fleet: FleetState,
    index: SharedIndex,
) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let shared: Shared<FleetState> = Shared::default();
    *shared.state.write().await = fleet;
    let secrets_dir = tempfile::tempdir()?;
    let secrets = powernode_server::secrets::embedded::EmbeddedSecrets::open(
        &secrets_dir.path().join("store"),
        &secrets_dir.path().join("secrets.key"),
    )?;
    let app = router(ApiState {
        log,
        fleet: shared,
        secrets: Arc::new(secrets),
        on_provision: None,
        liveness: Arc::default(),
        failover: Default::default(),
        shutdown: Default::default(),
        status: Default::default(),
        https: false,
        read_only: None,
        events_index: index,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move {
        let _keep = secrets_dir;
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, server))
}

/// p50 / p99 / max latency of `queries` `recent_events` calls (after a few warm-ups).
async fn measure(api: &Api, args: &Value, queries: usize) -> anyhow::Result<Value> {
    measure_action(api, ActionName::RecentEvents, "events", args, queries).await
}

/// p50 / p99 / max latency of `queries` calls of `action` (after a few
/// warm-ups), with how many items its answer's `list` field held.
async fn measure_action(
    api: &Api,
    action: ActionName,
    list: &str,
    args: &Value,
    queries: usize,
) -> anyhow::Result<Value> {
    let mut returned = 0;
    for _ in 0..3 {
        returned = api.call(action.as_str(), args).await?[list]
            .as_array()
            .map_or(0, Vec::len);
    }
    let mut times: Vec<Duration> = Vec::with_capacity(queries);
    for _ in 0..queries {
        let start = Instant::now();
        api.call(action.as_str(), args).await?;
        times.push(start.elapsed());
    }
    Ok(percentiles(
        json!({"args": args, "returned": returned}),
        times,
    ))
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

/// The sequences of a query's answer.
async fn answer_seqs(api: &Api, args: &Value) -> anyhow::Result<Vec<u64>> {
    let answer = api.call(ActionName::RecentEvents.as_str(), args).await?;
    Ok(answer["events"]
        .as_array()
        .map(|events| events.iter().filter_map(|e| e["seq"].as_u64()).collect())
        .unwrap_or_default())
}

/// The raw ceiling of a filtered query: its records read straight from
/// the log by sequence, `queries` times (p50 / p99 / max).
async fn ceiling_read(log: &dyn EventLog, seqs: &[u64], queries: usize) -> anyhow::Result<Value> {
    let mut times = Vec::with_capacity(queries);
    for _ in 0..queries {
        let start = Instant::now();
        let got = log.read_seqs(seqs).await?;
        times.push(start.elapsed());
        anyhow::ensure!(got.len() == seqs.len(), "the log lost records");
    }
    Ok(percentiles(json!({"records": seqs.len()}), times))
}

/// `ceiling p99 / figure p99`: how close the figure is to the ceiling (1 = at it).
fn ratio(ceiling: &Value, figure: &Value) -> Value {
    match (ceiling["p99_ms"].as_f64(), figure["p99_ms"].as_f64()) {
        (Some(c), Some(f)) if f > 0.0 => json!((c / f * 1000.0).round() / 1000.0),
        _ => Value::Null,
    }
}

/// Adds p50 / p99 / max of `times` to `fields`.
fn percentiles(mut fields: Value, mut times: Vec<Duration>) -> Value {
    times.sort_unstable();
    let at = |q: f64| {
        let i = ((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1;
        ms(times[i])
    };
    fields["p50_ms"] = json!(at(0.50));
    fields["p99_ms"] = json!(at(0.99));
    fields["max_ms"] = json!(ms(times[times.len() - 1]));
    fields
}
