//! `powernode bench log`: the event log under the lifecycle workload.
//!
//! Phases, all against the same server:
//! 1. the raw JetStream ceiling for the same bytes (publish and replay);
//! 2. for each `--appenders` count (default 64, 256, 1024): the raw rate of
//!    that many publishers each awaiting its ack, the raw atomic-batch
//!    ceiling, then N events appended by that many concurrent appenders
//!    through the log while a projection consumer (the real runtime,
//!    checkpointing) applies them — timed to the last ack (the durable
//!    append rate) and to the last event applied (`log_bench/append.rs`);
//! 3. rebuild the projection from scratch by replaying the last stream;
//! 4. ed25519 verification rate of agent events on one core.

mod append;

use super::ceiling;
use super::workload;
use anyhow::bail;
use powernode_events::signing::{verify_batch_encoded, verifying_key_from_hex};
use powernode_events::{Envelope, EventPayload};
use powernode_log::jetstream::{GroupCommit, DEFAULT_MAX_BATCH, DEFAULT_MAX_IN_FLIGHT};
use powernode_log::{Filter, SharedLog};
use powernode_projections::FleetState;
use powernode_runtime::replay::{self, ReplayStats};
use serde_json::json;
use std::time::Instant;

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
    /// Concurrent appenders, one sweep row each (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "64,256,1024")]
    pub appenders: Vec<usize>,
    /// How the log groups concurrent appends (see `powernode up --help`).
    #[arg(long, value_enum, default_value = "adaptive")]
    pub group_commit: GroupCommit,
    /// Most appends the log's writer sends in one wave.
    #[arg(long, default_value_t = DEFAULT_MAX_BATCH)]
    pub max_batch: usize,
    /// Waves the log's writer keeps awaiting their acks at once.
    #[arg(long, default_value_t = DEFAULT_MAX_IN_FLIGHT)]
    pub max_in_flight: usize,
    /// Seconds each raw same-concurrency measurement runs.
    #[arg(long, default_value_t = 3.0)]
    pub raw_seconds: f64,
    /// Print one JSON object (otherwise a readable summary).
    #[arg(long)]
    pub json: bool,
}

const BENCH_STREAM: &str = "PN_BENCH_EVENTS";

/// Runs the benchmark and prints its figures.
pub async fn run(args: LogBenchArgs) -> anyhow::Result<()> {
    if args.events == 0 || args.appenders.is_empty() || args.appenders.contains(&0) {
        bail!("--events and every --appenders count must be at least 1");
    }
    if !(args.raw_seconds > 0.0 && args.raw_seconds.is_finite()) {
        bail!("--raw-seconds must be a positive number");
    }
    let progress = |msg: &str| eprintln!("bench: {msg}");
    progress(&format!(
        "building {} lifecycle events (agent events signed)…",
        args.events
    ));
    let payloads: Vec<Vec<u8>> = workload::build(args.events, 16)
        .iter()
        .flat_map(|s| &s.events)
        .map(Envelope::encode)
        .collect::<Result<_, _>>()?;
    let mean_bytes = payloads.iter().map(Vec::len).sum::<usize>() as f64 / payloads.len() as f64;
    let auth = args.nats_auth.client_auth()?;

    progress("measuring the raw JetStream ceiling (same bytes)…");
    let raw = ceiling::measure(&args.nats, &auth, &payloads).await?;

    let setup = append::LogSetup {
        url: &args.nats,
        auth: &auth,
        group_commit: args.group_commit,
        max_batch: args.max_batch,
        max_in_flight: args.max_in_flight,
    };
    let mut sweep = Vec::new();
    let mut last_log = None;
    for &appenders in &args.appenders {
        // The previous row's log lets go of its connection and writer first.
        drop(last_log.take());
        // The same events for every row, built afresh (appending consumes them).
        let streams = workload::build(args.events, 16);
        let row = append::row(&setup, &payloads, streams, appenders, args.raw_seconds).await?;
        sweep.push(row.json);
        last_log = Some(row.log);
    }
    let Some(log) = last_log else {
        bail!("no appender count to measure");
    };

    progress("replaying the whole stream into a fresh projection…");
    let replay = replay_phase(&log, args.events as u64).await?;
    let replay_per_s = replay.applied as f64 / replay.total.as_secs_f64();
    drop(log);

    progress("verifying agent signatures on one core…");
    let verify_per_s = tokio::task::spawn_blocking(move || verify_rate(&payloads)).await??;
    ceiling::delete_stream(&args.nats, &auth, BENCH_STREAM).await?;

    let out = json!({
        "events": args.events,
        "group_commit": format!("{:?}", args.group_commit).to_lowercase(),
        "max_batch": args.max_batch,
        "max_in_flight": args.max_in_flight,
        "mean_event_bytes": mean_bytes.round(),
        "append": sweep,
        "raw_publish_per_s": raw.publish_per_s.round(),
        "raw_publish_async_per_s": raw.async_per_s.round(),
        "raw_publish_batch_per_s": raw.batch_per_s.round(),
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
