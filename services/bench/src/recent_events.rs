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
use powernode_server::api::{router, ApiState};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    let (url, server) = serve(log.clone(), &account, &token).await?;
    let api = Api::new(&url, &token)?;
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
    server.abort();
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

/// The API's router on a loopback port, over `log`, with a projection that
/// knows one operator token of `account`.
async fn serve(
    log: SharedLog,
    account: &AccountId,
    token: &str,
) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
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
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move {
        let _keep = secrets_dir;
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, server))
}

/// p50 / p99 / max latency of `queries` calls (after a few warm-ups).
async fn measure(api: &Api, args: &Value, queries: usize) -> anyhow::Result<Value> {
    let mut returned = 0;
    for _ in 0..3 {
        returned = api.call(ActionName::RecentEvents.as_str(), args).await?["events"]
            .as_array()
            .map_or(0, Vec::len);
    }
    let mut times: Vec<Duration> = Vec::with_capacity(queries);
    for _ in 0..queries {
        let start = Instant::now();
        api.call(ActionName::RecentEvents.as_str(), args).await?;
        times.push(start.elapsed());
    }
    times.sort_unstable();
    let at = |q: f64| {
        let i = ((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1;
        ms(times[i])
    };
    Ok(json!({
        "args": args,
        "events_returned": returned,
        "p50_ms": at(0.50),
        "p99_ms": at(0.99),
        "max_ms": ms(times[times.len() - 1]),
    }))
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}
