//! `powernode bench log`: the event log under the lifecycle workload.
//!
//! Phases, all against the same server:
//! 1. the raw JetStream ceiling for the same bytes (publish and replay);
//! 2. append N events from many concurrent appenders through the log while
//!    a projection consumer (the real runtime, checkpointing) applies them —
//!    timed until the projection has applied the last one;
//! 3. rebuild the projection from scratch by replaying the whole stream;
//! 4. ed25519 verification rate of agent events on one core.

use super::ceiling;
use super::workload::{self, ClusterStream};
use anyhow::{bail, Context};
use powernode_events::signing::{verify_batch_encoded, verifying_key_from_hex};
use powernode_events::{Envelope, EventPayload};
use powernode_log::jetstream::{GroupCommit, JetStreamConfig, JetStreamLog};
use powernode_log::{Expect, Filter, SharedLog};
use powernode_projections::FleetState;
use powernode_runtime::checkpoint::CheckpointStore;
use powernode_runtime::replay::{self, ReplayStats};
use powernode_runtime::{run_consumer, ConsumerConfig, ProjectOnly, Shared};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Arguments of `powernode bench log`.
#[derive(Debug, clap::Args)]
pub struct LogBenchArgs {
    /// NATS URL of a scratch JetStream server (the bench creates and deletes
    /// its own streams; it refuses to run where `pn.evt.>` is already taken).
    #[arg(long, env = "POWERNODE_NATS_URL")]
    pub nats: String,
    /// NATS credentials and TLS.
    #[command(flatten)]
    pub nats_auth: powernode_log::nats::connect::NatsClientArgs,
    /// Number of events.
    #[arg(long, default_value_t = 200_000)]
    pub events: usize,
    /// Concurrent appenders.
    #[arg(long, default_value_t = 64)]
    pub appenders: usize,
    /// How the log groups concurrent appends (see `powernode up --help`).
    #[arg(long, value_enum, default_value = "atomic")]
    pub group_commit: GroupCommit,
    /// Print one JSON object (otherwise a readable summary).
    #[arg(long)]
    pub json: bool,
}

const BENCH_STREAM: &str = "PN_BENCH_EVENTS";

/// Runs the benchmark and prints its figures.
pub async fn run(args: LogBenchArgs) -> anyhow::Result<()> {
    if args.events == 0 || args.appenders == 0 {
        bail!("--events and --appenders must be at least 1");
    }
    let progress = |msg: &str| eprintln!("bench: {msg}");
    progress(&format!(
        "building {} lifecycle events (agent events signed)…",
        args.events
    ));
    let streams = workload::build(args.events, 16);
    let payloads: Vec<Vec<u8>> = streams
        .iter()
        .flat_map(|s| &s.events)
        .map(Envelope::encode)
        .collect::<Result<_, _>>()?;
    let mean_bytes = payloads.iter().map(Vec::len).sum::<usize>() as f64 / payloads.len() as f64;

    progress("measuring the raw JetStream ceiling (same bytes)…");
    let raw = ceiling::measure(&args.nats, &args.nats_auth.client_auth()?, &payloads).await?;

    progress("appending through the log while a projection applies…");
    let mut config = JetStreamConfig::new(&args.nats);
    config.auth = args.nats_auth.client_auth()?;
    config.stream = BENCH_STREAM.to_string();
    config.group_commit = args.group_commit;
    ceiling::delete_stream(&args.nats, &args.nats_auth.client_auth()?, BENCH_STREAM).await?;
    let js = Arc::new(
        JetStreamLog::connect(config)
            .await
            .context("cannot set up the bench stream (is pn.evt.> already used by a stream on this server? use a scratch server)")?,
    );
    let log: SharedLog = js.clone();
    let appended = append_phase(&log, streams, args.appenders).await?;
    let writer = js.writer_stats();

    progress("replaying the whole stream into a fresh projection…");
    let replay = replay_phase(&log, args.events as u64).await?;
    let replay_per_s = replay.applied as f64 / replay.total.as_secs_f64();

    progress("verifying agent signatures on one core…");
    let verify_per_s = tokio::task::spawn_blocking(move || verify_rate(&payloads)).await??;
    ceiling::delete_stream(&args.nats, &args.nats_auth.client_auth()?, BENCH_STREAM).await?;

    let out = json!({
        "events": args.events,
        "appenders": args.appenders,
        "group_commit": format!("{:?}", args.group_commit).to_lowercase(),
        "mean_event_bytes": mean_bytes.round(),
        "append_events_per_s": appended.end_to_end_per_s.round(),
        "append_acked_events_per_s": appended.acked_per_s.round(),
        "writer": {
            "atomic_batches": writer.atomic_batches,
            "mean_atomic_batch": if writer.atomic_batches > 0 { (writer.batched_appends as f64 / writer.atomic_batches as f64 * 10.0).round() / 10.0 } else { 0.0 },
            "single_publishes": writer.single_publishes,
            "refused_batches": writer.refused_batches,
        },
        "raw_publish_per_s": raw.publish_per_s.round(),
        "raw_publish_async_per_s": raw.async_per_s.round(),
        "raw_publish_batch_per_s": raw.batch_per_s.round(),
        "append_ratio": ratio(appended.end_to_end_per_s, raw.publish_per_s),
        "replay_events_per_s": replay_per_s.round(),
        "raw_replay_per_s": raw.replay_per_s.round(),
        "replay_ratio": ratio(replay_per_s, raw.replay_per_s),
        "replay_profile_s": {
            "total": secs(replay.total.as_secs_f64()),
            "decode": secs(replay.decode.as_secs_f64()),
            "verify_signatures": secs(replay.verify.as_secs_f64()),
            "admit_and_apply": secs(replay.apply.as_secs_f64()),
        },
        "verify_per_s": verify_per_s.round(),
        "peak_rss_mib": (super::peak_rss_mib() * 10.0).round() / 10.0,
    });
    super::print_figures(&out, args.json)
}

fn secs(s: f64) -> f64 {
    (s * 1000.0).round() / 1000.0
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        (a / b * 1000.0).round() / 1000.0
    } else {
        0.0
    }
}

struct AppendFigures {
    end_to_end_per_s: f64,
    acked_per_s: f64,
}

async fn append_phase(
    log: &SharedLog,
    streams: Vec<ClusterStream>,
    appenders: usize,
) -> anyhow::Result<AppendFigures> {
    let total: usize = streams.iter().map(|s| s.events.len()).sum();
    let dir = tempfile::tempdir()?;
    let checkpoints = Arc::new(CheckpointStore::open(dir.path())?);
    let shared: Shared<FleetState> = Shared::default();
    let shutdown = CancellationToken::new();
    let consumer = tokio::spawn(run_consumer(
        log.clone(),
        checkpoints,
        ConsumerConfig::new("bench-projector"),
        shared.clone(),
        ProjectOnly,
        shutdown.clone(),
    ));

    let mut lanes: Vec<Vec<ClusterStream>> = (0..appenders).map(|_| Vec::new()).collect();
    for (i, s) in streams.into_iter().enumerate() {
        lanes[i % appenders].push(s);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for lane in lanes {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for stream in lane {
                for event in &stream.events {
                    log.append(event, Expect::Any).await?;
                }
            }
            Ok::<_, powernode_log::LogError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let acked = start.elapsed();
    let last = log.last_seq().await?;
    if !shared.wait_for(last, Duration::from_secs(600)).await {
        bail!(
            "projection did not catch up to seq {last} (at {})",
            shared.applied()
        );
    }
    let end_to_end = start.elapsed();
    let applied = shared.state.read().await.applied();
    shutdown.cancel();
    consumer.await??;
    if applied != total as u64 {
        bail!("projection applied {applied} events, {total} were appended (some were rejected?)");
    }
    Ok(AppendFigures {
        end_to_end_per_s: total as f64 / end_to_end.as_secs_f64(),
        acked_per_s: total as f64 / acked.as_secs_f64(),
    })
}

async fn replay_phase(log: &SharedLog, expected: u64) -> anyhow::Result<ReplayStats> {
    let last = log.last_seq().await?;
    let (_state, stats): (FleetState, _) = replay::rebuild(log, Filter::all(), last).await?;
    if stats.applied != expected {
        bail!(
            "replay applied {} events, expected {expected} (refused: {:?})",
            stats.applied,
            stats.refused.iter().take(3).collect::<Vec<_>>()
        );
    }
    Ok(stats)
}

/// Agent-signed events verified per second on this thread, in ed25519
/// batches of 64 over the stored bytes — the same check admission makes.
fn verify_rate(payloads: &[Vec<u8>]) -> anyhow::Result<f64> {
    let mut keys = std::collections::BTreeMap::new();
    let mut signed = Vec::new();
    for bytes in payloads {
        let env = Envelope::decode(bytes)?;
        let Some(instance) = env.actor.agent_instance() else {
            continue;
        };
        if let EventPayload::AgentEnrolled(p) = &env.payload {
            keys.insert(instance.to_string(), verifying_key_from_hex(&p.public_key)?);
        }
        if let Some(key) = keys.get(instance) {
            signed.push((bytes.as_slice(), *key));
        }
    }
    if signed.is_empty() {
        return Ok(0.0);
    }
    let start = Instant::now();
    for chunk in signed.chunks(64) {
        verify_batch_encoded(chunk)?;
    }
    Ok(signed.len() as f64 / start.elapsed().as_secs_f64())
}
