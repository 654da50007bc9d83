//! `bench replay --nats URL`: the same export loaded into a scratch
//! JetStream stream, then read back over the network twice per round: raw
//! (an ordered consumer that only counts messages: the ceiling) and as
//! `powernode replay --nats` folds it, verified by its seals. Rounds
//! alternate the two so both see the same machine; the best of each is
//! reported, with their ratio.

use anyhow::{ensure, Context};
use async_nats::jetstream;
use futures::StreamExt;
use powernode_archive::{Bound, Reader, Source};
use powernode_events::VerifyingKey;
use powernode_inspect::replay::state_hash;
use powernode_inspect::sealed::fold_sealed;
use powernode_log::jetstream::{JetStreamConfig, JetStreamLog};
use powernode_log::nats::connect::ClientAuth;
use powernode_log::{EventLog, RawRecord, SharedLog};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// The scratch stream the export is loaded into (deleted afterwards).
const STREAM: &str = "PN_BENCH_REPLAY";
/// Records appended per call while loading.
const LOAD_CHUNK: usize = 1000;

/// Loads `file`, measures `rounds` rounds, deletes the stream.
pub async fn measure(
    file: &Path,
    url: &str,
    auth: &ClientAuth,
    key: VerifyingKey,
    rounds: usize,
) -> anyhow::Result<Value> {
    crate::ceiling::delete_stream(url, auth, STREAM).await?;
    let mut config = JetStreamConfig::new(url);
    config.stream = STREAM.to_string();
    config.auth = auth.clone();
    let log = Arc::new(
        JetStreamLog::connect(config)
            .await
            .with_context(|| format!("cannot open a scratch stream at {url}"))?,
    );
    let result = run(file, &log, url, auth, key, rounds).await;
    let deleted = crate::ceiling::delete_stream(url, auth, STREAM).await;
    let out = result?;
    deleted?;
    Ok(out)
}

async fn run(
    file: &Path,
    log: &Arc<JetStreamLog>,
    url: &str,
    auth: &ClientAuth,
    key: VerifyingKey,
    rounds: usize,
) -> anyhow::Result<Value> {
    eprintln!("bench: loading the export into stream {STREAM} at {url}…");
    let t = Instant::now();
    let loaded = load(file, log).await?;
    eprintln!(
        "bench: loaded {loaded} records in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let shared: SharedLog = log.clone();
    let source = Source::Log(shared);
    let (mut raw_best, mut replay_best) = (0f64, 0f64);
    let (mut raw_runs, mut replay_runs) = (Vec::new(), Vec::new());
    let mut last = Value::Null;
    for _ in 0..rounds.max(1) {
        let raw = raw_read(url, auth, loaded).await?;
        raw_runs.push(raw.round());
        raw_best = raw_best.max(raw);
        let t = Instant::now();
        let (folded, mode) = fold_sealed(&source, Bound::End, Some(key), false).await?;
        let per_s = folded.stats.records as f64 / t.elapsed().as_secs_f64();
        ensure!(
            folded.stats.records == loaded,
            "the network replay read {} of {loaded} records",
            folded.stats.records
        );
        replay_runs.push(per_s.round());
        replay_best = replay_best.max(per_s);
        last = json!({
            "integrity": mode.describe(folded.stats.records),
            "state_hash": format!("sha256:{}", state_hash(&folded.state)),
        });
    }
    Ok(json!({
        "events": loaded,
        "replay_events_per_s": replay_best.round(),
        "raw_ordered_read_per_s": raw_best.round(),
        "ratio": (replay_best / raw_best * 1000.0).round() / 1000.0,
        "target_ratio": 0.8,
        "meets_target": replay_best / raw_best >= 0.8,
        "replay_runs": replay_runs,
        "raw_runs": raw_runs,
        "integrity": last["integrity"],
        "state_hash": last["state_hash"],
    }))
}

/// Appends the export's records unchanged, in order.
async fn load(file: &Path, log: &Arc<JetStreamLog>) -> anyhow::Result<u64> {
    let reader = Reader::open(file)?;
    let mut chunk = Vec::with_capacity(LOAD_CHUNK);
    let mut n = 0u64;
    for item in reader {
        let r = item?;
        chunk.push(RawRecord {
            subject: r.subject,
            bytes: r.bytes,
            event_id: None,
        });
        if chunk.len() == LOAD_CHUNK {
            n += log.append_raw(&std::mem::take(&mut chunk)).await?.len() as u64;
        }
    }
    if !chunk.is_empty() {
        n += log.append_raw(&chunk).await?.len() as u64;
    }
    Ok(n)
}

/// An ordered consumer over the whole stream, counting: messages/s.
async fn raw_read(url: &str, auth: &ClientAuth, expected: u64) -> anyhow::Result<f64> {
    let client = auth
        .apply(async_nats::ConnectOptions::new(), url)
        .connect(url)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    let js = jetstream::new(client);
    let stream = js.get_stream(STREAM).await?;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await?;
    let start = Instant::now();
    let mut messages = consumer.messages().await?;
    let mut seen = 0u64;
    while let Some(m) = messages.next().await {
        let Ok(m) = m else { continue };
        seen += 1;
        if m.info()
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .stream_sequence
            >= expected
        {
            break;
        }
    }
    Ok(seen as f64 / start.elapsed().as_secs_f64())
}
