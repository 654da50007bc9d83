//! Rebuilding a projection from the log: the same admission as a live
//! consumer, pipelined so that reading, decoding and signature checks of the
//! next chunk run (on every core) while the current one is applied.
//!
//! [`rebuild`] folds a log from its start; [`rebuild_from`] folds any stream
//! of records (an export file, a range of a log) into a given state, so
//! `powernode replay` and the benchmarks share one pipeline.

use super::admission::{self, KeyHints, Refusal, Verdict};
use futures::{Stream, StreamExt};
use powernode_events::{Envelope, EventPayload};
use powernode_log::{Filter, LogError, Record, SharedLog, StartAt};
use powernode_projections::Projection;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Records per pipeline chunk.
const CHUNK: usize = 1024;

/// What a rebuild did and where its time went.
#[derive(Debug, Clone, Default)]
pub struct ReplayStats {
    /// Records read (at or below the bound).
    pub records: u64,
    /// Records applied.
    pub applied: u64,
    /// Records refused by admission (`(seq, reason)`).
    pub refused: Vec<(u64, String)>,
    /// Refusals the log records (`system.log.record_rejected` events
    /// applied): rejected sequence → reason.
    pub recorded_rejections: BTreeMap<u64, String>,
    /// Sequence of the first record read (0: none).
    pub first_seq: u64,
    /// Sequence of the last record read (0: none).
    pub last_seq: u64,
    /// Wall time.
    pub total: Duration,
    /// Time decoding (summed over worker threads).
    pub decode: Duration,
    /// Time pre-verifying signatures (worker threads, wall).
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
    /// Reading another source of records (an export file) failed.
    #[error("reading the records failed: {0}")]
    Source(String),
    /// A pipeline stage stopped unexpectedly.
    #[error("replay pipeline failed: {0}")]
    Pipeline(String),
}

impl From<anyhow::Error> for ReplayError {
    fn from(e: anyhow::Error) -> Self {
        Self::Source(format!("{e:#}"))
    }
}

/// How a rebuild admits the signatures of agent events.
#[derive(Debug, Clone, Default)]
pub enum Signatures {
    /// Verify every one against the enrolled key, exactly as a live
    /// consumer does (the default, and the only mode services use).
    #[default]
    Verify,
    /// Do not run the ed25519 checks: the intake and the live consumers'
    /// admission already verified every stored signature, and recorded each
    /// record they refused as `system.log.record_rejected`. Those records
    /// (sequence → recorded reason) are refused here; every other check of
    /// admission (decoding, kind, enrolled key present, event signed) still
    /// runs. Only as faithful as the log's rejections: a bad record that no
    /// consumer had reached when the log was exported is let through.
    Trust(Arc<BTreeMap<u64, String>>),
}

/// Where a rebuild stops and how it admits.
#[derive(Debug, Clone)]
pub struct RebuildOptions {
    /// The last sequence applied (inclusive); the stream may end earlier.
    pub until: u64,
    /// Signature checks.
    pub signatures: Signatures,
}

impl Default for RebuildOptions {
    fn default() -> Self {
        Self {
            until: u64::MAX,
            signatures: Signatures::Verify,
        }
    }
}

/// One decoded, pre-verified chunk.
struct Prepared {
    records: Vec<Record>,
    decoded: Vec<Result<Envelope, Refusal>>,
    verdicts: Vec<Option<Verdict>>,
    decode: Duration,
    verify: Duration,
}

/// Folds every record of `filter` from the start of the log through `until`
/// (inclusive) into a fresh `S`.
pub async fn rebuild<S: Projection>(
    log: &SharedLog,
    filter: Filter,
    until: u64,
) -> Result<(S, ReplayStats), ReplayError> {
    if until == 0 {
        return Ok((S::default(), ReplayStats::default()));
    }
    let sub = log.subscribe(StartAt::Beginning, filter).await?;
    let options = RebuildOptions {
        until,
        ..RebuildOptions::default()
    };
    rebuild_from(sub, S::default(), options, |_| {}).await
}

/// Folds `records` (in sequence order) into `state` through
/// `options.until` or the end of the stream, whichever comes first.
/// `progress` is called after every applied chunk.
pub async fn rebuild_from<S, E, St>(
    records: St,
    mut state: S,
    options: RebuildOptions,
    mut progress: impl FnMut(&ReplayStats),
) -> Result<(S, ReplayStats), ReplayError>
where
    S: Projection,
    E: Into<ReplayError> + Send + 'static,
    St: Stream<Item = Result<Record, E>> + Send + 'static,
{
    let start = Instant::now();
    let mut stats = ReplayStats::default();
    let until = options.until;
    let verify = matches!(options.signatures, Signatures::Verify);
    let (mut rx, reader) = spawn_prepare(records.boxed(), until, verify);
    // Stage 2 (here): admit and apply in order.
    'apply: while let Some(prepared) = rx.recv().await {
        let Prepared {
            records,
            decoded,
            verdicts,
            decode,
            verify,
        } = prepared?;
        stats.decode += decode;
        stats.verify += verify;
        let t = Instant::now();
        for ((record, envelope), verdict) in records.iter().zip(decoded).zip(verdicts) {
            if record.seq > until {
                stats.apply += t.elapsed();
                break 'apply;
            }
            if stats.first_seq == 0 {
                stats.first_seq = record.seq;
            }
            stats.last_seq = record.seq;
            stats.records += 1;
            match admit(record, envelope, verdict, &options.signatures, &state) {
                Ok(event) => {
                    if let EventPayload::RecordRejected(r) = &event.payload {
                        stats
                            .recorded_rejections
                            .entry(r.rejected_seq)
                            .or_insert_with(|| r.reason.clone());
                    }
                    state.apply(record.seq, &event);
                    stats.applied += 1;
                }
                Err(refusal) => stats.refused.push((record.seq, refusal.reason)),
            }
            if record.seq == until {
                stats.apply += t.elapsed();
                break 'apply;
            }
        }
        stats.apply += t.elapsed();
        progress(&stats);
    }
    reader.abort();
    stats.total = start.elapsed();
    Ok((state, stats))
}

/// Stage 1: a task that reads chunks, decodes up to one chunk per core at
/// once (on the blocking pool, whose threads are reused), then pre-verifies
/// their signatures in order, spread over the cores by
/// [`admission::preverify`], with the enrollments seen so far (the
/// projection's own keys are not needed: admission re-checks every verdict
/// against them) while the next chunks decode.
fn spawn_prepare<E: Into<ReplayError> + Send + 'static>(
    records: futures::stream::BoxStream<'static, Result<Record, E>>,
    until: u64,
    verify: bool,
) -> (
    mpsc::Receiver<Result<Prepared, ReplayError>>,
    JoinHandle<()>,
) {
    let (tx, rx) = mpsc::channel::<Result<Prepared, ReplayError>>(2);
    let cores = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4);
    let mut decoded = records
        .ready_chunks(CHUNK)
        .map(|chunk| async move {
            let records = chunk
                .into_iter()
                .collect::<Result<Vec<Record>, E>>()
                .map_err(Into::into)?;
            tokio::task::spawn_blocking(move || {
                let t = Instant::now();
                let decoded: Vec<_> = records.iter().map(admission::decode).collect();
                (records, decoded, t.elapsed())
            })
            .await
            .map_err(|e| ReplayError::Pipeline(e.to_string()))
        })
        .buffered(cores);
    let task = tokio::spawn(async move {
        let mut hints = KeyHints::default();
        while let Some(chunk) = decoded.next().await {
            let (records, decoded, decode) = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let done = records.last().is_some_and(|r| r.seq >= until);
            let prepared = if verify {
                let t = Instant::now();
                let mut h = std::mem::take(&mut hints);
                let verified = tokio::task::spawn_blocking(move || {
                    let verdicts = admission::preverify(&records, &decoded, &mut h, |_| None);
                    (records, decoded, verdicts, h)
                })
                .await;
                let (records, decoded, verdicts) = match verified {
                    Ok((records, decoded, verdicts, h)) => {
                        hints = h;
                        (records, decoded, verdicts)
                    }
                    Err(e) => {
                        let _ = tx.send(Err(ReplayError::Pipeline(e.to_string()))).await;
                        return;
                    }
                };
                Prepared {
                    records,
                    decoded,
                    verdicts,
                    decode,
                    verify: t.elapsed(),
                }
            } else {
                Prepared {
                    verdicts: vec![None; records.len()],
                    records,
                    decoded,
                    decode,
                    verify: Duration::ZERO,
                }
            };
            if tx.send(Ok(prepared)).await.is_err() || done {
                return;
            }
        }
    });
    (rx, task)
}

/// Admits one record as a rebuild does, verifying its signature (if any)
/// inline: for callers that look at records one by one (`replay --diff`).
pub fn admit_one<S: Projection>(
    record: &Record,
    signatures: &Signatures,
    state: &S,
) -> Result<Envelope, Refusal> {
    admit(record, admission::decode(record), None, signatures, state)
}

/// Admission of a decoded record under `signatures`.
fn admit<S: Projection>(
    record: &Record,
    decoded: Result<Envelope, Refusal>,
    verdict: Option<Verdict>,
    signatures: &Signatures,
    state: &S,
) -> Result<Envelope, Refusal> {
    match signatures {
        Signatures::Verify => admission::admit_decoded(record, decoded, verdict, state),
        Signatures::Trust(rejected) => match rejected.get(&record.seq) {
            Some(reason) => Err(recorded_refusal(reason, decoded)),
            None => admit_trusted(decoded, state),
        },
    }
}

/// The refusal a live consumer recorded for this record.
fn recorded_refusal(reason: &str, decoded: Result<Envelope, Refusal>) -> Refusal {
    let (kind, event_id) = match decoded {
        Ok(e) => (Some(e.kind().to_string()), Some(e.id.to_string())),
        Err(r) => (r.kind, r.event_id),
    };
    Refusal {
        reason: reason.to_string(),
        kind,
        event_id,
    }
}

/// Admission without the ed25519 check ([`Signatures::Trust`]): everything
/// else [`admission::admit_decoded`] checks — an agent event must be signed
/// and its agent must have an enrolled key (an enrollment must carry a key
/// for its own instance).
fn admit_trusted<S: Projection>(
    decoded: Result<Envelope, Refusal>,
    state: &S,
) -> Result<Envelope, Refusal> {
    let envelope = decoded?;
    let Some(instance) = envelope.actor.agent_instance() else {
        return Ok(envelope);
    };
    let problem = match &envelope.payload {
        EventPayload::AgentEnrolled(p) if p.instance_id != instance => {
            Some(format!("tried to enroll instance {}", p.instance_id))
        }
        EventPayload::AgentEnrolled(p) if !is_raw_key(&p.public_key) => {
            Some(format!("enrolls a malformed public key {:?}", p.public_key))
        }
        EventPayload::AgentEnrolled(_) => None,
        _ if state.agent_key(instance).is_none() => {
            Some("has no enrolled key; its events cannot be verified".to_string())
        }
        _ => None,
    }
    .or_else(|| {
        envelope
            .signature
            .is_none()
            .then(|| "event is not signed".to_string())
    });
    match problem {
        None => Ok(envelope),
        Some(reason) => Err(Refusal {
            reason: format!("agent {instance}: {reason}"),
            kind: Some(envelope.kind().to_string()),
            event_id: Some(envelope.id.to_string()),
        }),
    }
}

/// True for 32 bytes in hex.
fn is_raw_key(hex_key: &str) -> bool {
    hex_key.len() == 64 && hex::decode(hex_key).is_ok()
}
