//! Group commit: the background task every append goes through.
//!
//! With `sync_interval: always` the server flushes to disk once per
//! acknowledged publish, so a thousand separately acknowledged appends cost a
//! thousand flushes. The writer drains whatever appends are queued (a
//! *wave*, up to `max_batch`) and sends it one of two ways:
//! * as ONE atomic batch (ADR-50): every message carries `Nats-Batch-Id` and
//!   `Nats-Batch-Sequence`, the last one also `Nats-Batch-Commit: 1`, and
//!   only that one is a request. The server stores the whole batch or
//!   nothing, with one flush, and answers with the last sequence and the
//!   count, from which each caller's sequence follows;
//! * as pipelined single publishes: all sent back to back, their acks
//!   awaited together. No per-batch cost, but one flush each.
//!
//! Which is faster depends on the server ([`GroupCommit`]): the default,
//! [`GroupCommit::Adaptive`], measures what each way costs per append for
//! waves of each size on the server it talks to and sends every wave the
//! cheaper way, re-measuring the other now and then (`writer/adaptive.rs`).
//! [`GroupCommit::Atomic`] and [`GroupCommit::Pipelined`] force one way (for
//! benchmarks). A lone append is always a plain publish.
//!
//! What nats-server 2.15 does inside an atomic batch (checked against the
//! real server, see `tests/tests/jetstream_log.rs`):
//! * `Nats-Msg-Id` is allowed, but a batch containing an id that is already
//!   stored (or the same id twice) is refused as a whole (10201): there is no
//!   per-message "duplicate" answer inside a batch;
//! * `Nats-Expected-Last-Subject-Sequence(-Subject)` is allowed and checked
//!   against the stream as it was *before the batch*; one failing guard
//!   refuses the whole batch (10071). Because of the "before the batch" rule,
//!   two guarded appends to one aggregate in one batch would both pass; and
//!   under contention guards do fail, turning the batch they are in into
//!   one-by-one publishes. So guarded appends never join an atomic batch:
//!   queued ones go out together as pipelined single publishes (each
//!   checked by the server against the stream as it stands, in order, so a
//!   burst of promotions of different VIPs costs one round trip, not one
//!   each), and a repeated event id starts the next wave.
//!
//! A refused batch falls back to publishing its messages one by one, so
//! every caller gets its own precise answer (stored, duplicate, conflict)
//! and nothing is half-applied: the refused batch stored nothing. If the
//! server cannot be reached, every caller of the batch gets `Unavailable`
//! (retrying with the same event id is safe).
//!
//! Up to `max_in_flight` waves are outstanding at once (pipelining): while
//! the server flushes one, the next one is already on the wire, and appends
//! arriving meanwhile queue up into a bigger wave. Messages are sent from
//! the writer task, in queue order; each wave's acks are awaited, and its
//! callers answered, by a task of its own.
//!
//! Measured (2 cores, nats-server 2.15.1, `sync_interval: always`, see
//! `powernode bench log` and docs/benchmarks.md, which has this sitting's
//! figures): before issue 19, 64 appenders made ~7.8 k appends/s with
//! 31,232 of 200,000 appends sent as singles, because atomic mode sent any
//! wave under 64 appends (`ATOMIC_MIN`, added with commit 1579e8b for join
//! latency) as singles: 64 appenders rarely make a wave of 64, each single
//! is a flush of its own, and singles answered one by one fragment the next
//! waves further. Before that commit the same bench made 11.3 k/s with 364
//! singles. Atomic mode now batches every wave of two or more; the adaptive
//! mode decides per wave from what each way has cost. Earlier figures:
//! atomic batches beat singles 1.6–3.3x at 64 appenders with
//! `sync_interval: always` (8.6x while the disk was busy); without it
//! atomic batches *lose* on R1 (~10–14 k/s against ~40–50 k/s): the server
//! stages each atomic batch of an R1 file stream in a file store of its
//! own, a fixed cost of a few milliseconds per batch that only pays off when
//! every write is flushed anyway, which is why neither fixed mode is the
//! default.

mod adaptive;

use self::adaptive::{Model, Shape};
use super::errors::{classify_publish_error, PublishFailure};
use async_nats::jetstream::context::{PublishAckFuture, PublishError};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, publish::PublishAck};
use async_nats::HeaderMap;
use bytes::Bytes;
use futures::future::BoxFuture;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::{debug, warn};

/// Header naming the atomic batch a message belongs to.
const BATCH_ID: &str = "Nats-Batch-Id";
/// Header with the 1-based position of a message in its batch.
const BATCH_SEQUENCE: &str = "Nats-Batch-Sequence";
/// Header on the last message of a batch; the server commits on it.
const BATCH_COMMIT: &str = "Nats-Batch-Commit";
/// Consecutive scheduler yields that bring no new append before a wave is sent.
const LINGER_IDLE_YIELDS: usize = 3;

/// The server refuses atomic batches of more messages than this.
pub(crate) const SERVER_MAX_BATCH: usize = 1000;

/// Where an append was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stored {
    /// Stream sequence (the original one for a duplicate).
    pub seq: u64,
    /// True when the event id was already stored.
    pub duplicate: bool,
}

/// The writer's answer to one append.
pub(crate) type WriteResult = Result<Stored, PublishFailure>;

/// One append waiting for the writer.
pub(crate) struct PendingAppend {
    /// Event subject.
    pub subject: String,
    /// `Nats-Msg-Id` and, for a guarded append, the expected-last-subject-sequence headers.
    pub headers: HeaderMap,
    /// Canonical CBOR of the envelope.
    pub payload: Bytes,
    /// The event id (also the `Nats-Msg-Id`).
    pub event_id: String,
    /// True when the append carries an expected-last-sequence guard.
    pub guarded: bool,
    /// Where the answer goes.
    pub reply: oneshot::Sender<WriteResult>,
}

/// How the writer sends a wave of several queued appends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum GroupCommit {
    /// Per wave, whichever of an atomic batch and pipelined publishes has
    /// cost less per append for waves of that size on this server
    /// (measured as it runs, the other re-measured now and then). Right
    /// whatever the server's `sync_interval`.
    #[default]
    Adaptive,
    /// Always as one atomic batch: one disk flush for all of them. Wins
    /// when the server runs with `sync_interval: always`.
    Atomic,
    /// Always back to back as separate publishes, their acks awaited
    /// together. Each is flushed on its own, but there is no per-batch
    /// overhead: faster when the server does not sync every write
    /// (nats-server stages every atomic batch of an R1 file stream in a
    /// store of its own, which costs milliseconds per batch).
    Pipelined,
}

/// Counters of what the writer did, for benchmarks, tests and logs.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    singles: AtomicU64,
    batches: AtomicU64,
    batched: AtomicU64,
    refused: AtomicU64,
    single_waves: AtomicU64,
    explored: AtomicU64,
}

/// What the group-commit writer has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Appends published on their own (a lone append, a wave sent as
    /// pipelined publishes, or a refused batch's fallback).
    pub single_publishes: u64,
    /// Atomic batches sent.
    pub atomic_batches: u64,
    /// Appends sent inside atomic batches.
    pub batched_appends: u64,
    /// Atomic batches the server refused (their appends were then published one by one).
    pub refused_batches: u64,
    /// Waves of two or more unguarded appends sent as pipelined publishes.
    pub pipelined_waves: u64,
    /// Waves the adaptive mode sent the way it expected to be dearer, to measure it again.
    pub explored_waves: u64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> WriterStats {
        WriterStats {
            single_publishes: self.singles.load(Ordering::Relaxed),
            atomic_batches: self.batches.load(Ordering::Relaxed),
            batched_appends: self.batched.load(Ordering::Relaxed),
            refused_batches: self.refused.load(Ordering::Relaxed),
            pipelined_waves: self.single_waves.load(Ordering::Relaxed),
            explored_waves: self.explored.load(Ordering::Relaxed),
        }
    }
}

/// Writer tuning.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriterConfig {
    /// Most appends in one wave.
    pub max_batch: usize,
    /// Most waves (or lone publishes) awaiting their acks at once.
    pub max_in_flight: usize,
    /// How waves are sent.
    pub mode: GroupCommit,
}

/// Starts the writer task; it ends once every sender is dropped and the
/// outstanding acks are answered.
pub(crate) fn spawn_writer(
    js: jetstream::Context,
    config: WriterConfig,
    queue: usize,
    counters: Arc<Counters>,
) -> mpsc::Sender<PendingAppend> {
    let (tx, rx) = mpsc::channel(queue.max(1));
    // Owned by its queue rather than joined: it lives exactly as long as the
    // log's senders. Should it panic, the queue closes and every pending and
    // later append fails with `LogError::Closed`, which stops the consumer or
    // request that appended (and so, under the node's supervisor, the node).
    tokio::spawn(run(js, config, rx, counters));
    tx
}

/// What one wave cost, reported back to the adaptive model once answered.
struct Measured {
    shape: Shape,
    n: usize,
    elapsed: Duration,
}

async fn run(
    js: jetstream::Context,
    config: WriterConfig,
    mut rx: mpsc::Receiver<PendingAppend>,
    counters: Arc<Counters>,
) {
    let max_batch = config.max_batch.clamp(1, SERVER_MAX_BATCH);
    let max_in_flight = config.max_in_flight.max(1);
    let mut model = Model::default();
    let mut in_flight: JoinSet<Option<Measured>> = JoinSet::new();
    let mut carry: Option<PendingAppend> = None;
    loop {
        // At most `max_in_flight` outstanding; appends queue up meanwhile.
        while in_flight.len() >= max_in_flight {
            if let Some(done) = in_flight.join_next().await {
                learn(&mut model, done);
            }
        }
        let first = match carry.take() {
            Some(p) => p,
            None => tokio::select! {
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    learn(&mut model, done);
                    continue;
                }
                next = rx.recv() => match next {
                    Some(p) => p,
                    None => break,
                },
            },
        };
        let (items, guarded) =
            collect_wave(first, &mut rx, &mut carry, max_batch, config.mode).await;
        let n = items.len();
        let shape = if guarded || n == 1 {
            Shape::Singles
        } else {
            match config.mode {
                GroupCommit::Atomic => Shape::Atomic,
                GroupCommit::Pipelined => Shape::Singles,
                GroupCommit::Adaptive => {
                    let choice = model.choose(n);
                    if choice.exploring {
                        counters.explored.fetch_add(1, Ordering::Relaxed);
                    }
                    choice.shape
                }
            }
        };
        // Only unguarded waves teach the model: a guarded wave may be
        // answered early by conflicts, which says nothing about the server.
        let measure = !guarded;
        let started = Instant::now();
        match shape {
            Shape::Singles => {
                counters.singles.fetch_add(n as u64, Ordering::Relaxed);
                if n > 1 && !guarded {
                    counters.single_waves.fetch_add(1, Ordering::Relaxed);
                }
                let acks = send_singles(&js, items).await;
                in_flight.spawn(async move {
                    let all_answered = acks.await;
                    (measure && all_answered).then(|| Measured {
                        shape,
                        n,
                        elapsed: started.elapsed(),
                    })
                });
            }
            Shape::Atomic => {
                counters.batches.fetch_add(1, Ordering::Relaxed);
                counters.batched.fetch_add(n as u64, Ordering::Relaxed);
                let commit = send_batch(&js, items, counters.clone()).await;
                in_flight.spawn(async move {
                    let committed = commit.await;
                    committed.then(|| Measured {
                        shape,
                        n,
                        elapsed: started.elapsed(),
                    })
                });
            }
        }
    }
    while let Some(done) = in_flight.join_next().await {
        learn(&mut model, done);
    }
    debug!("event log writer stopped");
}

/// Feeds a finished wave's cost to the model.
fn learn(model: &mut Model, done: Result<Option<Measured>, tokio::task::JoinError>) {
    match done {
        Ok(Some(m)) => model.observe(m.shape, m.n, m.elapsed),
        Ok(None) => {}
        // Its callers' reply channels were dropped with it: they get `Closed`.
        Err(e) => warn!(error = %e, "an append wave's task failed"),
    }
}

/// Takes `first` and whatever else is queued and may share its wave (up to
/// `max_batch`); returns the wave and whether it is the guarded kind. An
/// append that may not join is left in `carry` for the next wave.
async fn collect_wave(
    first: PendingAppend,
    rx: &mut mpsc::Receiver<PendingAppend>,
    carry: &mut Option<PendingAppend>,
    max_batch: usize,
    mode: GroupCommit,
) -> (Vec<PendingAppend>, bool) {
    // Callers just answered are about to append again: let them run
    // before the wave is closed (a few microseconds, bigger waves).
    tokio::task::yield_now().await;
    let mut batch = BatchBuilder::new(first);
    // Linger briefly while appends keep arriving: callers woken by the
    // last ack resubmit within microseconds, and an atomic batch has a
    // fixed server-side cost (~2.5 ms on nats-server 2.15 whatever its
    // size), so one batch of the whole wave beats several fragments.
    // `yield_now` lets those callers run; the linger ends as soon as a
    // couple of yields bring nothing new.
    let mut idle_yields = 0;
    'fill: while batch.len() < max_batch && carry.is_none() {
        let before = batch.len();
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(p) if batch.accepts(&p) => batch.push(p),
                Ok(p) => {
                    *carry = Some(p);
                    break 'fill;
                }
                Err(_) => break,
            }
        }
        if mode == GroupCommit::Pipelined {
            break;
        }
        idle_yields = if batch.len() > before {
            0
        } else {
            idle_yields + 1
        };
        if idle_yields >= LINGER_IDLE_YIELDS {
            break;
        }
        tokio::task::yield_now().await;
    }
    (batch.items, batch.guarded)
}

/// Collects appends that may share one wave.
struct BatchBuilder {
    items: Vec<PendingAppend>,
    ids: HashSet<String>,
    /// Guarded appends only, sent as pipelined single publishes.
    guarded: bool,
}

impl BatchBuilder {
    fn new(first: PendingAppend) -> Self {
        let mut b = Self {
            items: Vec::new(),
            ids: HashSet::new(),
            guarded: first.guarded,
        };
        b.push(first);
        b
    }

    fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether `p` may join this wave. A repeated id would make the server
    /// refuse an atomic batch. Guarded appends never join an atomic batch:
    /// a guard that fails refuses the whole batch, and under contention
    /// (several operators attaching peers to one network) guards do fail,
    /// which would turn every batch they join into one-by-one publishes.
    /// They go together, as pipelined single publishes, each checked on its own.
    fn accepts(&self, p: &PendingAppend) -> bool {
        let repeated_id = self.ids.contains(&p.event_id);
        !repeated_id && p.guarded == self.guarded
    }

    fn push(&mut self, p: PendingAppend) {
        self.ids.insert(p.event_id.clone());
        self.items.push(p);
    }
}

fn stored(ack: PublishAck) -> Stored {
    Stored {
        seq: ack.sequence,
        duplicate: ack.duplicate,
    }
}

fn answer(reply: oneshot::Sender<WriteResult>, result: WriteResult) {
    // The caller may have given up waiting; nothing else to tell.
    let _ = reply.send(result);
}

/// Publishes each message on its own (all sent first, then the acks
/// awaited in order) and returns the future that answers the callers; it
/// says whether the server answered every one (stored, duplicate or
/// refused, as opposed to unreachable).
async fn send_singles(
    js: &jetstream::Context,
    items: Vec<PendingAppend>,
) -> BoxFuture<'static, bool> {
    let mut sent: Vec<(
        oneshot::Sender<WriteResult>,
        Result<PublishAckFuture, PublishError>,
    )> = Vec::with_capacity(items.len());
    for p in items {
        let msg = PublishMessage::build()
            .payload(p.payload)
            .headers(p.headers);
        let ack = js.send_publish(p.subject, msg).await;
        sent.push((p.reply, ack));
    }
    Box::pin(async move {
        let mut all_answered = true;
        for (reply, ack) in sent {
            let result = match ack {
                Ok(ack) => ack.await.map(stored),
                Err(e) => Err(e),
            };
            let result = result.map_err(|e| classify_publish_error(&e));
            all_answered &= !matches!(result, Err(PublishFailure::Unavailable(_)));
            answer(reply, result);
        }
        all_answered
    })
}

/// Sends `items` (two or more) as one atomic batch and returns the future
/// that awaits the commit ack and answers the callers (falling back to
/// single publishes when the batch is refused); it says whether the batch
/// was committed as a whole.
async fn send_batch(
    js: &jetstream::Context,
    items: Vec<PendingAppend>,
    counters: Arc<Counters>,
) -> BoxFuture<'static, bool> {
    let batch_id = uuid::Uuid::new_v4().simple().to_string();
    let n = items.len();
    let mut commit: Option<Result<PublishAckFuture, PublishError>> = None;
    let mut send_error: Option<String> = None;
    for (i, p) in items.iter().enumerate() {
        let mut headers = p.headers.clone();
        headers.insert(BATCH_ID, batch_id.as_str());
        headers.insert(BATCH_SEQUENCE, (i + 1).to_string().as_str());
        if i + 1 < n {
            // Only the commit is a request; the others need no answer.
            if let Err(e) = js
                .client()
                .publish_with_headers(p.subject.clone(), headers, p.payload.clone())
                .await
            {
                send_error = Some(e.to_string());
                break;
            }
        } else {
            headers.insert(BATCH_COMMIT, "1");
            let msg = PublishMessage::build()
                .payload(p.payload.clone())
                .headers(headers);
            commit = Some(js.send_publish(p.subject.clone(), msg).await);
        }
    }
    let js = js.clone();
    let sent_at = Instant::now();
    Box::pin(async move {
        let result = match (send_error, commit) {
            (None, Some(Ok(ack))) => ack.await,
            (None, Some(Err(e))) => Err(e),
            (error, _) => {
                // The commit never left: the server drops the incomplete batch.
                let e = error.unwrap_or_else(|| "batch not sent".to_string());
                for p in items {
                    answer(p.reply, Err(PublishFailure::Unavailable(e.clone())));
                }
                return false;
            }
        };
        match result {
            Ok(ack) if ack.batch_size == Some(n as u64) && ack.sequence >= n as u64 => {
                let first = ack.sequence + 1 - n as u64;
                debug!(
                    batch = %batch_id,
                    n,
                    first,
                    last = ack.sequence,
                    ack_ms = sent_at.elapsed().as_secs_f64() * 1000.0,
                    "atomic batch committed"
                );
                for (i, p) in items.into_iter().enumerate() {
                    answer(
                        p.reply,
                        Ok(Stored {
                            seq: first + i as u64,
                            duplicate: false,
                        }),
                    );
                }
                true
            }
            Ok(ack) => {
                // Should not happen; the ids make a re-send answer exactly.
                warn!(batch = %batch_id, n, ?ack, "unexpected batch ack; publishing one by one");
                counters.singles.fetch_add(n as u64, Ordering::Relaxed);
                send_singles(&js, items).await.await;
                false
            }
            Err(e) => match classify_publish_error(&e) {
                PublishFailure::Unavailable(reason) => {
                    warn!(batch = %batch_id, n, %reason, "batch commit unanswered");
                    for p in items {
                        answer(p.reply, Err(PublishFailure::Unavailable(reason.clone())));
                    }
                    false
                }
                refusal => {
                    debug!(batch = %batch_id, n, ?refusal, "batch refused; publishing one by one");
                    counters.refused.fetch_add(1, Ordering::Relaxed);
                    counters.singles.fetch_add(n as u64, Ordering::Relaxed);
                    send_singles(&js, items).await.await;
                    false
                }
            },
        }
    })
}
