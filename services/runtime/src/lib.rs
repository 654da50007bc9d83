//! # powernode-runtime — the consumer runtime every service runs
//!
//! One loop, shared by all services:
//!
//! 1. load the service's checkpoint (projection snapshot + last applied
//!    sequence) and open its durable cursor after that sequence;
//! 2. take the next batch; skip every record at or below the last applied
//!    sequence (so a redelivery never applies anything twice);
//! 3. admit each record ([`admission`]): a record that cannot be decoded or
//!    verified is recorded as `system.log.record_rejected` and the cursor
//!    moves on; otherwise fold it into the projection and let the service
//!    [`Reactor`] decide — synchronously, under the projection's write
//!    lock, without I/O ([`Reactor::decide`]);
//! 4. release the lock, and only then do the I/O the decisions ask for:
//!    the reactor's own effects ([`Reactor::execute`], before the next
//!    record is folded; [`Reactor::end_batch`], after the batch), then the
//!    batch's plain appends, all at once;
//! 5. every so often, and on shutdown, save the checkpoint and only then
//!    acknowledge the cursor up to it — an ack means "durably applied"
//!    (written beside the loop, from a copy: [`checkpointing`]).
//!
//! API reads wait for the fold and the decisions only, never for the log.
//!
//! Shutdown is a [`CancellationToken`]: the loop finishes the event it holds,
//! checkpoints and returns.
//!
//! What a service plugs in (its [`Reactor`], the [`Decisions`] it makes)
//! is defined in `reactor.rs` and re-exported here. Also here: where
//! consumers keep their checkpoints ([`checkpoint`], sled), rebuilding a
//! projection by replay ([`replay`]), the [`supervisor`] that owns a
//! node's tasks, and [`partition`]: replicas of a service splitting the
//! accounts between them (a consumer given an [`partition::Ownership`]
//! folds and decides only for its partitions, and starts over from the
//! log when they change).
//!
//! This crate runs services; it must never hold a service's rules (those
//! are the reactors' `decide`), never do a reactor's I/O while holding the
//! projection's lock, and never acknowledge a record before what it led to
//! is durably appended and checkpointed.

pub mod admission;
pub mod checkpoint;
mod checkpointing;
pub mod partition;
mod reactor;
pub mod replay;
mod retry;
pub mod status;
pub mod supervisor;

pub use reactor::{derived_event_id, Decisions, Outbox, ProjectOnly, ReactError, Reactor};
use retry::{end_batch, execute};

use crate::checkpoint::CheckpointStore;
use chrono::Utc;
use powernode_events::payloads::log::RecordRejected;
use powernode_events::{AccountId, Actor, Envelope};
use powernode_log::{DurableCursor, Filter, LogError, Record, SharedLog};
use powernode_projections::Projection;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, RwLock};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};
use uuid::Uuid;

/// Why a consumer loop stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The log failed in a way retrying will not fix.
    #[error("consumer {name}: {source}")]
    Log {
        /// Consumer name.
        name: String,
        /// The log error.
        source: LogError,
    },
    /// The checkpoint could not be loaded or saved.
    #[error("consumer {name}: checkpoint: {reason}")]
    Checkpoint {
        /// Consumer name.
        name: String,
        /// What failed.
        reason: String,
    },
    /// The service's reactor failed fatally.
    #[error("consumer {name}: {reason}")]
    Fatal {
        /// Consumer name.
        name: String,
        /// What failed.
        reason: String,
    },
}

/// Tuning of one consumer.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Durable cursor and checkpoint name (the service name).
    pub name: String,
    /// Which records it consumes.
    pub filter: Filter,
    /// Records per fetch.
    pub batch: usize,
    /// How long one fetch waits for the first record.
    pub wait: Duration,
    /// Checkpoint after this many applied records…
    pub checkpoint_every: u64,
    /// …or after this long, whichever comes first.
    pub checkpoint_interval: Duration,
    /// Its live status, kept by the loop ([`status`]).
    pub status: status::ConsumerStatus,
    /// The partitions this replica owns, when the service's replicas split
    /// the accounts ([`partition`]); `None`: every account (one replica).
    pub partitions: Option<partition::Ownership>,
}

impl ConsumerConfig {
    /// Defaults for a consumer of every record.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            status: status::ConsumerStatus::new(&name, &name),
            name,
            filter: Filter::all(),
            batch: 1000,
            wait: Duration::from_millis(500),
            // A checkpoint is a full snapshot: frequent enough that a restart
            // replays little, rare enough that snapshotting stays cheap.
            checkpoint_every: 50_000,
            checkpoint_interval: Duration::from_secs(5),
            partitions: None,
        }
    }
}

/// The projection a consumer maintains, shared with readers (the API), and
/// the sequence it has applied up to.
pub struct Shared<S> {
    /// The projection.
    pub state: Arc<RwLock<S>>,
    applied_tx: Arc<watch::Sender<u64>>,
}

impl<S> Clone for Shared<S> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            applied_tx: self.applied_tx.clone(),
        }
    }
}

impl<S: Default> Default for Shared<S> {
    fn default() -> Self {
        Self {
            state: Arc::new(RwLock::new(S::default())),
            applied_tx: Arc::new(watch::channel(0).0),
        }
    }
}

impl<S> Shared<S> {
    /// A projection already folded through `applied` (a replay's result,
    /// served read-only: time travel, an export file).
    pub fn folded(state: S, applied: u64) -> Self {
        Self {
            state: Arc::new(RwLock::new(state)),
            applied_tx: Arc::new(watch::channel(applied).0),
        }
    }

    /// The last applied sequence.
    pub fn applied(&self) -> u64 {
        *self.applied_tx.borrow()
    }

    /// Waits until `f` finds what it looks for in the projection (checked
    /// now and after every applied event), or `timeout` passes.
    pub async fn wait_until<T>(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&S) -> Option<T>,
    ) -> Option<T> {
        let mut rx = self.applied_tx.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            rx.borrow_and_update();
            if let Some(found) = f(&*self.state.read().await) {
                return Some(found);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                _ => return None,
            }
        }
    }

    /// Waits until the projection has applied `seq` (read-your-writes), or
    /// `timeout` passes. Returns whether it got there.
    pub async fn wait_for(&self, seq: u64, timeout: Duration) -> bool {
        let mut rx = self.applied_tx.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|applied| *applied >= seq))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// Runs one consumer until `shutdown` is cancelled or a fatal error,
/// keeping `config.status` (stopped, with the error, when it ends).
pub async fn run_consumer<S, R>(
    log: SharedLog,
    checkpoints: Arc<CheckpointStore>,
    config: ConsumerConfig,
    shared: Shared<S>,
    reactor: R,
    shutdown: CancellationToken,
) -> Result<(), RuntimeError>
where
    S: Projection + Clone + Send + Sync,
    R: Reactor<S>,
{
    let status = config.status.clone();
    let result = consume(log, checkpoints, config, shared, reactor, shutdown).await;
    status.stopped(result.as_ref().err().map(|e| e.to_string()).as_deref());
    result
}

async fn consume<S, R>(
    log: SharedLog,
    checkpoints: Arc<CheckpointStore>,
    config: ConsumerConfig,
    shared: Shared<S>,
    mut reactor: R,
    shutdown: CancellationToken,
) -> Result<(), RuntimeError>
where
    S: Projection + Clone + Send + Sync,
    R: Reactor<S>,
{
    let span = info_span!("consumer", name = %config.name);
    async move {
        let name = config.name.clone();
        // 1. Restore. A partitioned replica folds its partitions from the
        // log instead: which ones it owns is known only once it holds leases.
        let mut applied = 0;
        let mut restored = checkpointing::Restored {
            seq: 0,
            incremental: false,
        };
        let ownership = config.partitions.clone();
        match &ownership {
            None => {
                restored = checkpointing::restore(&checkpoints, &shared, &name).await?;
                applied = restored.seq;
            }
            Some(own) => {
                if !own.settled(&shutdown).await {
                    return Ok(());
                }
            }
        }
        shared.applied_tx.send_replace(applied);
        info!(
            applied,
            partitioned = ownership.is_some(),
            "restored checkpoint"
        );
        let mut pass = ownership.as_ref().map(|o| o.begin_pass(0));
        // What the pass folds into: a partitioned pass folds a private copy,
        // handed to readers (the service's timers) once caught up, so they
        // never act on a half-rebuilt state.
        let mut fold = match &ownership {
            None => shared.clone(),
            Some(_) => Shared::default(),
        };

        // One pass per ownership (just one without partitions).
        'pass: loop {
            let Some(mut cursor) = open_cursor(&log, &config, applied, &shutdown).await? else {
                return Ok(());
            };
            let status = config.status.clone();
            // Where "caught up" is: the head now (unknown: as far as it got).
            let head = log.last_seq().await.unwrap_or(applied);
            status.started(applied, head);
            let every = checkpointing::Every {
                records: config.checkpoint_every,
                interval: config.checkpoint_interval,
            };
            // A partitioned replica keeps no checkpoint (it folds from the log
            // whenever its partitions change): its cursor is acknowledged once a
            // batch's decisions are appended.
            let mut checkpoints = ownership.is_none().then(|| {
                checkpointing::Checkpointer::new(
                    shared.clone(),
                    checkpoints.clone(),
                    &name,
                    every,
                    restored,
                    status.clone(),
                )
            });
            let mut hints = admission::KeyHints::default();

            // 2-4. Consume.
            loop {
                let fetch_start = Instant::now();
                let batch = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    b = cursor.next_batch(config.batch, config.wait) => b,
                };
                let fetch_ms = fetch_start.elapsed().as_secs_f64() * 1000.0;
                let batch = match batch {
                    Ok(b) => b,
                    Err(e) if e.is_retryable() => {
                        warn!(error = %e, "fetch failed; retrying");
                        status.retrying(&format!("fetching from the log: {e}"));
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                        }
                    }
                    Err(e) => return Err(RuntimeError::Log { name, source: e }),
                };
                // Decode and check signatures on a blocking thread (CPU work, off
                // the async workers) and before taking the write lock, so readers
                // (the API) are only held up while events are applied.
                let fetched = batch.len();
                let fresh: Vec<Record> = batch.into_iter().filter(|r| r.seq > applied).collect();
                let batch_last = fresh.last().map(|r| r.seq);
                // Other replicas' partitions: not even decoded.
                let (fresh, decide): (Vec<Record>, Vec<bool>) = fresh
                    .into_iter()
                    .filter_map(|r| {
                        match partition::verdict_of(ownership.as_ref(), r.account(), r.seq) {
                            partition::Verdict::Skip => None,
                            v => Some((r, v == partition::Verdict::Decide)),
                        }
                    })
                    .unzip();
                if let Some(first) = fresh.first() {
                    debug!(
                        records = fresh.len(),
                        first_seq = first.seq,
                        lag_ms = (chrono::Utc::now() - first.stored_at)
                            .num_microseconds()
                            .unwrap_or(0) as f64
                            / 1000.0,
                        fetch_ms,
                        "batch fetched"
                    );
                }
                let state_ref = fold.state.clone();
                let prepared = tokio::task::spawn_blocking(move || {
                    let decoded: Vec<_> = fresh.iter().map(admission::decode).collect();
                    let state = state_ref.blocking_read();
                    let verdicts =
                        admission::preverify(&fresh, &decoded, &mut hints, |i| state.agent_key(i));
                    (fresh, decoded, verdicts, hints)
                })
                .await;
                let (fresh, decoded, verdicts) = match prepared {
                    Ok((fresh, decoded, verdicts, h)) => {
                        hints = h;
                        (fresh, decoded, verdicts)
                    }
                    Err(e) => {
                        return Err(RuntimeError::Fatal {
                            name,
                            reason: format!("admission worker failed: {e}"),
                        })
                    }
                };
                // The write lock is held while records are folded and decided,
                // and released whenever a decision needs I/O (and at the end).
                let mut state = Some(fold.state.write().await);
                let mut outbox = Outbox::default();
                for (((record, envelope), verdict), decide) in
                    fresh.iter().zip(decoded).zip(verdicts).zip(decide)
                {
                    if state.is_none() {
                        state = Some(fold.state.write().await);
                    }
                    let Some(guard) = state.as_mut() else {
                        unreachable!("the lock was taken just above");
                    };
                    let admitted = admission::admit_decoded(record, envelope, verdict, &**guard);
                    let decided = decide_record(
                        &config.name,
                        &mut **guard,
                        &mut reactor,
                        &mut outbox,
                        record,
                        admitted,
                        decide,
                    );
                    if let Some((event, effects)) = decided.filter(|(_, e)| !e.is_empty()) {
                        state = None;
                        execute(
                            &config,
                            &mut reactor,
                            record.seq,
                            &event,
                            effects,
                            &mut outbox,
                            &shutdown,
                        )
                        .await?;
                    }
                    applied = record.seq;
                    fold.applied_tx.send_replace(applied);
                    if shutdown.is_cancelled() {
                        break;
                    }
                }
                drop(state);
                if let Some(last) = batch_last.filter(|_| !shutdown.is_cancelled()) {
                    applied = applied.max(last);
                    fold.applied_tx.send_replace(applied);
                }
                end_batch(&config, &mut reactor, applied, &shutdown).await?;
                debug!(
                    applied,
                    process_ms = fetch_start.elapsed().as_secs_f64() * 1000.0 - fetch_ms,
                    "batch applied"
                );
                if let Some(own) = &ownership {
                    let fenced = own.fence(&mut outbox.events);
                    if fenced > 0 {
                        // Their next owner decides them again, from its progress.
                        warn!(fenced, "decisions about partitions no longer held dropped");
                    }
                }
                let decisions = outbox.events.len();
                let flush_start = Instant::now();
                flush(&log, &name, outbox, &shutdown).await?;
                if decisions > 0 {
                    debug!(
                        applied,
                        decisions,
                        flush_ms = flush_start.elapsed().as_secs_f64() * 1000.0,
                        "decisions appended"
                    );
                }
                match (&mut checkpoints, &ownership) {
                    (Some(c), _) => c.after_batch(applied, cursor.as_mut()).await?,
                    (None, Some(own)) => {
                        own.flushed(applied);
                        if fetched > 0 {
                            if let Err(e) = cursor.ack_through(applied).await {
                                // Not fatal: redeliveries are skipped.
                                warn!(error = %e, applied, "ack failed");
                            }
                        }
                        if !Arc::ptr_eq(&fold.state, &shared.state)
                            && (applied >= head || fetched == 0)
                        {
                            partition::hand_over(&fold, &shared, applied).await;
                            fold = shared.clone();
                        }
                    }
                    (None, None) => unreachable!("a consumer without partitions checkpoints"),
                }
                status.applied(applied, fetched == 0);
                if shutdown.is_cancelled() {
                    break;
                }
                // Partitions gained or lost: start over from the log.
                if let (Some(own), Some(generation)) = (&ownership, pass) {
                    if own.generation() != generation {
                        pass = Some(own.begin_pass(applied));
                        let owned = own.owned();
                        info!(
                            applied,
                            ?owned,
                            "partitions changed; folding them from the log"
                        );
                        // Timers pause (an empty state) rather than act on the
                        // partitions just lost, until the new pass catches up.
                        *shared.state.write().await = S::default();
                        fold = Shared::default();
                        applied = 0;
                        continue 'pass;
                    }
                }
            }
            if let Some(c) = &mut checkpoints {
                c.finish(applied, cursor.as_mut()).await?;
            }
            info!(applied, "stopped");
            return Ok(());
        }
    }
    .instrument(span)
    .await
}

/// Opens the durable cursor, retrying while the log is unavailable. `None`
/// when shut down first.
async fn open_cursor(
    log: &SharedLog,
    config: &ConsumerConfig,
    applied: u64,
    shutdown: &CancellationToken,
) -> Result<Option<Box<dyn DurableCursor>>, RuntimeError> {
    loop {
        let opened = async {
            let mut cursor = log
                .durable(&config.name, config.filter.clone(), applied)
                .await?;
            let acked = cursor.acked().await?;
            if acked > applied {
                // The cursor is ahead of the checkpoint (the checkpoint was lost or
                // rolled back): the checkpoint is authoritative, so rewind.
                warn!(
                    acked,
                    applied, "durable cursor ahead of checkpoint; rewinding it"
                );
                drop(cursor);
                log.delete_durable(&config.name).await?;
                cursor = log
                    .durable(&config.name, config.filter.clone(), applied)
                    .await?;
            }
            Ok::<_, LogError>(cursor)
        };
        match opened.await {
            Ok(c) => return Ok(Some(c)),
            Err(e) if e.is_retryable() => {
                warn!(error = %e, "cannot open durable cursor; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            Err(e) => {
                return Err(RuntimeError::Log {
                    name: config.name.clone(),
                    source: e,
                })
            }
        }
    }
}

/// Folds one admitted record and decides about it (no I/O: the caller
/// holds the projection's write lock), or queues its refusal. The plain
/// appends go to `outbox`; answers the event and the effects to execute.
fn decide_record<S, R>(
    name: &str,
    state: &mut S,
    reactor: &mut R,
    outbox: &mut Outbox,
    record: &Record,
    admitted: Result<Envelope, admission::Refusal>,
    decide: bool,
) -> Option<(Envelope, Vec<R::Effect>)>
where
    S: Projection + Send + Sync,
    R: Reactor<S>,
{
    let event = match admitted {
        Ok(e) => e,
        Err(refusal) if decide => {
            warn!(seq = record.seq, reason = %refusal.reason, "rejecting record");
            outbox.push(rejection_event(name, record, refusal));
            return None;
        }
        Err(_) => return None,
    };
    let span = info_span!("event", seq = record.seq, event_id = %event.id, kind = event.kind());
    let _entered = span.enter();
    state.apply(record.seq, &event);
    if !decide {
        return None;
    }
    let mut decisions = Decisions::default();
    reactor.decide(state, record.seq, &event, Utc::now(), &mut decisions);
    let (events, effects) = decisions.into_parts();
    outbox.events.extend(events);
    Some((event, effects))
}

/// Appends a batch's decisions: all submitted at once, in order, so the
/// log's group commit stores them together; failures that may pass are
/// retried (appends are idempotent by event id).
async fn flush(
    log: &SharedLog,
    name: &str,
    outbox: Outbox,
    shutdown: &CancellationToken,
) -> Result<(), RuntimeError> {
    let mut pending = outbox.events;
    while !pending.is_empty() {
        let results = futures::future::join_all(
            pending
                .iter()
                .map(|e| log.append(e, powernode_log::Expect::Any)),
        )
        .await;
        let mut retry = Vec::new();
        for (event, result) in pending.into_iter().zip(results) {
            match result {
                Ok(_) => {}
                Err(e) if e.is_retryable() => retry.push(event),
                // A different record holds the decision's id: it can never
                // be appended, and stopping the service over it would stop
                // it for good (the batch is handled again after a restart).
                Err(powernode_log::LogError::IdTaken { id, seq }) => {
                    tracing::error!(
                        service = name,
                        event_id = %id,
                        kind = event.kind(),
                        taken_at = seq,
                        "decision not appended: its id is taken by a different record"
                    );
                }
                Err(e) => {
                    return Err(RuntimeError::Fatal {
                        name: name.to_string(),
                        reason: format!(
                            "cannot append decision {} ({}): {e}",
                            event.id,
                            event.kind()
                        ),
                    })
                }
            }
        }
        if !retry.is_empty() {
            warn!(count = retry.len(), "appending decisions failed; retrying");
            tokio::select! {
                _ = shutdown.cancelled() => return Err(RuntimeError::Fatal {
                    name: name.to_string(),
                    reason: format!("shut down with {} decision(s) unappended; they are made again after restart", retry.len()),
                }),
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
        pending = retry;
    }
    Ok(())
}

/// `system.log.record_rejected` for a refused record. The event id is
/// derived from the record's sequence, so every consumer that meets the same
/// bad record records it once.
fn rejection_event(name: &str, record: &Record, refusal: admission::Refusal) -> Envelope {
    let account = AccountId::new(record.account()).unwrap_or_else(|_| system_account());
    let mut event = Envelope::new(
        account,
        Actor::service(name),
        RecordRejected {
            rejected_seq: record.seq,
            rejected_kind: refusal.kind,
            rejected_event_id: refusal.event_id,
            reason: refusal.reason,
            observed_by: name.to_string(),
        },
    );
    event.id = derived_event_id(REJECTION_NAMESPACE, &record.seq.to_string());
    event.correlation_id = event.id;
    event
}

/// Namespace of rejection event ids.
const REJECTION_NAMESPACE: Uuid = Uuid::from_u128(0x5c1e_7a3b_0000_4000_8000_706e_7265_6a65);

/// The account that platform-level facts without a readable account belong to.
pub fn system_account() -> AccountId {
    AccountId::new("system").expect("literal is a valid account id")
}
