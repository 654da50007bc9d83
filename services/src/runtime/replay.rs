//! Rebuilding a projection from the log: the same admission as a live
//! consumer, pipelined so that reading, decoding and signature checks of the
//! next chunk run while the current one is applied.

use super::admission::{self, KeyHints, Refusal, Verdict};
use crate::log::{Filter, LogError, Record, SharedLog, StartAt};
use futures::StreamExt;
use powernode_events::Envelope;
use powernode_projections::Projection;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Records per pipeline chunk.
const CHUNK: usize = 1000;

/// What a rebuild did and where its time went.
#[derive(Debug, Clone, Default)]
pub struct ReplayStats {
    /// Records read.
    pub records: u64,
    /// Records applied.
    pub applied: u64,
    /// Records refused by admission (`(seq, reason)`).
    pub refused: Vec<(u64, String)>,
    /// Wall time.
    pub total: Duration,
    /// Time decoding (worker threads).
    pub decode: Duration,
    /// Time pre-verifying signatures (worker threads).
    pub verify: Duration,
    /// Time admitting and applying (the projection's thread).
    pub apply: Duration,
}

/// A replay failure.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Reading the log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// A pipeline stage stopped unexpectedly.
    #[error("replay pipeline failed: {0}")]
    Pipeline(String),
}

type Prepared = (
    Vec<Record>,
    Vec<Result<Envelope, Refusal>>,
    Vec<Option<Verdict>>,
    Duration,
    Duration,
);

/// Folds every record of `filter` from the start of the log through `until`
/// (inclusive) into a fresh `S`.
pub async fn rebuild<S: Projection>(
    log: &SharedLog,
    filter: Filter,
    until: u64,
) -> Result<(S, ReplayStats), ReplayError> {
    let start = Instant::now();
    let mut state = S::default();
    let mut stats = ReplayStats::default();
    if until == 0 {
        return Ok((state, stats));
    }
    let mut sub = log
        .subscribe(StartAt::Beginning, filter)
        .await?
        .ready_chunks(CHUNK);
    let (tx, mut rx) = mpsc::channel::<Result<Prepared, ReplayError>>(2);
    // Stage 1 (reader + worker threads): read, decode, pre-verify with the
    // enrollments seen so far; the projection's own keys are not needed
    // because admission re-checks every verdict against them.
    let reader = tokio::spawn(async move {
        let mut hints = Some(KeyHints::default());
        while let Some(chunk) = sub.next().await {
            let records: Vec<Record> = match chunk.into_iter().collect::<Result<Vec<_>, _>>() {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
            };
            let done = records.last().is_some_and(|r| r.seq >= until);
            let mut h = hints.take().unwrap_or_default();
            let prepared = tokio::task::spawn_blocking(move || {
                let t = Instant::now();
                let decoded: Vec<_> = records.iter().map(admission::decode).collect();
                let decode = t.elapsed();
                let t = Instant::now();
                let verdicts = admission::preverify(&records, &decoded, &mut h, |_| None);
                ((records, decoded, verdicts, decode, t.elapsed()), h)
            })
            .await;
            match prepared {
                Ok((p, h)) => {
                    hints = Some(h);
                    if tx.send(Ok(p)).await.is_err() || done {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(ReplayError::Pipeline(e.to_string()))).await;
                    return;
                }
            }
        }
    });
    // Stage 2 (here): admit and apply in order.
    'apply: while let Some(prepared) = rx.recv().await {
        let (records, decoded, verdicts, decode, verify) = prepared?;
        stats.decode += decode;
        stats.verify += verify;
        let t = Instant::now();
        for ((record, envelope), verdict) in records.iter().zip(decoded).zip(verdicts) {
            if record.seq > until {
                break 'apply;
            }
            stats.records += 1;
            match admission::admit_decoded(record, envelope, verdict, &state) {
                Ok(event) => {
                    state.apply(record.seq, &event);
                    stats.applied += 1;
                }
                Err(refusal) => stats.refused.push((record.seq, refusal.reason)),
            }
            if record.seq == until {
                break 'apply;
            }
        }
        stats.apply += t.elapsed();
    }
    reader.abort();
    stats.total = start.elapsed();
    Ok((state, stats))
}
