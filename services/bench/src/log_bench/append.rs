//! The append sweep of `powernode bench log`: for each appender count, the
//! durable append rate through the log beside the raw ceilings for the
//! same server measured right before it.

use super::{ratio, BENCH_STREAM};
use crate::ceiling;
use crate::workload::ClusterStream;
use anyhow::{bail, Context};
use powernode_log::jetstream::{GroupCommit, JetStreamConfig, JetStreamLog, WriterStats};
use powernode_log::nats::connect::ClientAuth;
use powernode_log::{Expect, SharedLog};
use powernode_projections::FleetState;
use powernode_runtime::checkpoint::CheckpointStore;
use powernode_runtime::{run_consumer, ConsumerConfig, ProjectOnly, Shared};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How the log under test is set up.
pub(super) struct LogSetup<'a> {
    pub url: &'a str,
    pub auth: &'a ClientAuth,
    pub group_commit: GroupCommit,
    pub max_batch: usize,
    pub max_in_flight: usize,
}

/// One row of the sweep.
pub(super) struct Row {
    /// The row as printed.
    pub json: Value,
    /// The log it appended to (the last row's is replayed afterwards).
    pub log: SharedLog,
}

/// Measures one appender count: the raw same-concurrency rate, the raw
/// batch ceiling, then the appends through the log.
pub(super) async fn row(
    setup: &LogSetup<'_>,
    payloads: &[Vec<u8>],
    streams: Vec<ClusterStream>,
    appenders: usize,
    raw_seconds: f64,
) -> anyhow::Result<Row> {
    let progress = |msg: &str| eprintln!("bench: [{appenders} appenders] {msg}");
    progress(&format!(
        "raw: {appenders} publishers each awaiting its ack, {raw_seconds} s…"
    ));
    let same = ceiling::same_concurrency(
        setup.url,
        setup.auth,
        payloads,
        appenders,
        Duration::from_secs_f64(raw_seconds),
    )
    .await?;
    progress("raw: atomic batches of 500, 4 in flight…");
    let batch = ceiling::batch_per_s(setup.url, setup.auth, payloads).await?;

    progress("appending through the log while a projection applies…");
    let mut config = JetStreamConfig::new(setup.url);
    config.auth = setup.auth.clone();
    config.stream = BENCH_STREAM.to_string();
    config.group_commit = setup.group_commit;
    config.max_batch = setup.max_batch;
    config.max_in_flight = setup.max_in_flight;
    ceiling::delete_stream(setup.url, setup.auth, BENCH_STREAM).await?;
    let js = Arc::new(
        JetStreamLog::connect(config)
            .await
            .context("cannot set up the bench stream (is pn.evt.> already used by a stream on this server? use a scratch server)")?,
    );
    let log: SharedLog = js.clone();
    let appended = append_phase(&log, streams, appenders).await?;
    let writer = js.writer_stats();
    let json = json!({
        "appenders": appenders,
        "append_acked_events_per_s": appended.acked_per_s.round(),
        "append_events_per_s": appended.end_to_end_per_s.round(),
        "raw_same_concurrency_per_s": same.round(),
        "ratio_to_same_concurrency": ratio(appended.acked_per_s, same),
        "raw_batch_per_s": batch.round(),
        "ratio_to_batch": ratio(appended.acked_per_s, batch),
        "writer": writer_json(&writer),
    });
    progress(&format!(
        "{:.0} appends/s acked ({:.0}/s applied), raw same-concurrency {same:.0}/s, raw batch {batch:.0}/s",
        appended.acked_per_s, appended.end_to_end_per_s
    ));
    Ok(Row { json, log })
}

fn writer_json(w: &WriterStats) -> Value {
    json!({
        "atomic_batches": w.atomic_batches,
        "mean_atomic_batch": if w.atomic_batches > 0 { (w.batched_appends as f64 / w.atomic_batches as f64 * 10.0).round() / 10.0 } else { 0.0 },
        "single_publishes": w.single_publishes,
        "pipelined_waves": w.pipelined_waves,
        "explored_waves": w.explored_waves,
        "refused_batches": w.refused_batches,
    })
}

struct AppendFigures {
    end_to_end_per_s: f64,
    acked_per_s: f64,
}

/// `appenders` tasks append every event (each awaiting its append, in its
/// streams' order) while the real consumer runtime folds them into a fleet
/// projection; timed to the last ack and to the last event applied.
async fn append_phase(
    log: &SharedLog,
    streams: Vec<ClusterStream>,
    appenders: usize,
) -> anyhow::Result<AppendFigures> {
    let total: usize = streams.iter().map(|s| s.events.len()).sum();
    if streams.len() < appenders {
        bail!(
            "{appenders} appenders but only {} cluster streams: use more --events",
            streams.len()
        );
    }
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
