//! The embedded backend: an append-only event log in sled, with the same
//! semantics as the JetStream backend, for `powernode up` on one machine and
//! for fast tests. Never the scale-out path.
//!
//! * `store` — the sled trees and record layout, synchronous reads;
//! * `writer` — the single writer task: group commit, one flush per group;
//! * `cursor` — durable cursors.
//!
//! An append is answered only after the group it was committed in is flushed
//! to disk; readers and subscribers only see records up to the last flushed
//! sequence, so nothing is observed that a crash could take back.

mod cursor;
mod store;
mod writer;

pub use cursor::EmbeddedCursor;

use crate::{
    Appended, DurableCursor, EventLog, Expect, Filter, LogError, RawRecord, Record, StartAt,
    Subscription,
};
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, StreamExt};
use powernode_events::subject::{event_subject, parse_subject};
use powernode_events::{AccountId, AggregateRef, Envelope};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use store::{aggregate_key, storage, Store};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;
use writer::{Guard, Request, Writer};

/// Appends waiting for the writer before `append` itself waits (backpressure).
const QUEUE_DEPTH: usize = 8192;
/// Largest event accepted, matching the NATS default `max_payload` (1 MiB) so
/// an event that the embedded log takes would not be refused by JetStream.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;
/// Records read from the tree per step of a subscription's catch-up.
const SUBSCRIBE_PAGE: usize = 512;

/// What every handle, subscription, cursor and the writer share.
struct Shared {
    store: Store,
    tx: mpsc::Sender<Request>,
    /// The last durable (flushed) sequence; what readers may see.
    visible: watch::Sender<u64>,
}

/// The embedded event log. Cheap to clone (one shared handle).
///
/// The sled database closes when the last handle, subscription and cursor
/// are dropped.
#[derive(Clone)]
pub struct EmbeddedLog {
    shared: Arc<Shared>,
}

impl EmbeddedLog {
    /// Opens (or creates) the log in `dir` and starts its writer task.
    ///
    /// Must be called inside a tokio runtime (the writer task is spawned on
    /// it). Fails with [`LogError::Storage`] naming the path when `dir` cannot
    /// be opened, for example because another process holds it (a handle
    /// dropped a moment ago in this process is waited for, briefly).
    pub fn open(dir: &Path) -> Result<Self, LogError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            LogError::Storage("EmbeddedLog::open must be called inside a tokio runtime".into())
        })?;
        let store = Store::open(dir)?;
        let (last_seq, last_stored_nanos) = store.last_record()?.unwrap_or((0, i64::MIN));
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let (visible, _) = watch::channel(last_seq);
        let shared = Arc::new(Shared { store, tx, visible });
        let writer = Writer {
            shared: Arc::downgrade(&shared),
            rx,
            next_seq: last_seq + 1,
            last_stored_nanos,
            poisoned: None,
        };
        let span = tracing::info_span!("embedded_log_writer", path = %dir.display());
        runtime.spawn(writer.run().instrument(span));
        tracing::info!(path = %dir.display(), last_seq, "embedded event log opened");
        Ok(Self { shared })
    }

    /// Opens the log in `dir` as a [`crate::SharedLog`].
    pub fn open_shared(dir: &Path) -> Result<crate::SharedLog, LogError> {
        Ok(Arc::new(Self::open(dir)?))
    }

    /// A sled tree in the same database, for embedded-mode state that must
    /// live next to the log (the secret store, checkpoints). Names starting
    /// with `pn.log.` are the log's own and are refused. The tree keeps the
    /// database open while it is held.
    pub fn open_tree(&self, name: &str) -> Result<sled::Tree, LogError> {
        if name.starts_with(store::RESERVED_PREFIX) {
            return Err(LogError::Invalid(format!(
                "tree name {name:?} is reserved for the event log"
            )));
        }
        self.shared
            .store
            .db
            .open_tree(name)
            .map_err(storage("opening a tree"))
    }

    /// Appends raw bytes on any subject, bypassing encoding, dedupe and the
    /// aggregate guard; still group-committed. For tests that need a
    /// malformed record in the log.
    #[doc(hidden)]
    pub async fn append_raw_for_tests(&self, subject: &str, bytes: Bytes) -> Result<u64, LogError> {
        let appended = self
            .submit(Guard::Raw, subject.to_string(), bytes.to_vec())
            .await?;
        Ok(appended.seq)
    }

    async fn submit(
        &self,
        guard: Guard,
        subject: String,
        bytes: Vec<u8>,
    ) -> Result<Appended, LogError> {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            guard,
            subject,
            bytes,
            reply,
        };
        self.shared
            .tx
            .send(request)
            .await
            .map_err(|_| LogError::Closed)?;
        answer.await.map_err(|_| LogError::Closed)?
    }

    fn visible(&self) -> u64 {
        *self.shared.visible.borrow()
    }
}

#[async_trait]
impl EventLog for EmbeddedLog {
    async fn append(&self, event: &Envelope, expect: Expect) -> Result<Appended, LogError> {
        let subject = event_subject(&event.account_id, &event.aggregate, event.kind())
            .map_err(|e| LogError::Invalid(e.to_string()))?;
        let bytes = event
            .encode()
            .map_err(|e| LogError::Invalid(e.to_string()))?;
        if bytes.len() > MAX_EVENT_BYTES {
            return Err(LogError::Invalid(format!(
                "event {} is {} bytes, more than the {MAX_EVENT_BYTES} allowed",
                event.id,
                bytes.len()
            )));
        }
        let guard = Guard::Event {
            id: event.id,
            aggregate_key: aggregate_key(&event.account_id, &event.aggregate),
            aggregate: event.aggregate.to_string(),
            expect,
        };
        let appended = self.submit(guard, subject, bytes).await?;
        if !appended.duplicate {
            crate::metrics::event_appended(event.payload.event_kind());
        }
        tracing::trace!(event_id = %event.id, kind = event.kind(), seq = appended.seq, duplicate = appended.duplicate, "appended");
        Ok(appended)
    }

    async fn append_raw(&self, records: &[RawRecord]) -> Result<Vec<u64>, LogError> {
        // Queue every request before awaiting any answer: one writer takes
        // them in order, in as few groups (flushes) as the queue allows.
        let mut answers = Vec::with_capacity(records.len());
        for r in records {
            let index = r.event_id.zip(parse_subject(&r.subject)).map(|(id, p)| {
                let key = format!("{}.{}.{}", p.account, p.aggregate_type, p.aggregate_id);
                (id, key)
            });
            let (reply, answer) = oneshot::channel();
            let request = Request {
                guard: Guard::Import(index),
                subject: r.subject.clone(),
                bytes: r.bytes.to_vec(),
                reply,
            };
            self.shared
                .tx
                .send(request)
                .await
                .map_err(|_| LogError::Closed)?;
            answers.push(answer);
        }
        let mut seqs = Vec::with_capacity(answers.len());
        for answer in answers {
            seqs.push(answer.await.map_err(|_| LogError::Closed)??.seq);
        }
        Ok(seqs)
    }

    async fn aggregate_last_seq(
        &self,
        account: &AccountId,
        aggregate: &AggregateRef,
    ) -> Result<Option<u64>, LogError> {
        // May name a record of the group being flushed right now. Using it as
        // a guard is still safe: the writer decides the next append only after
        // that flush (or refuses everything if the flush failed).
        self.shared
            .store
            .aggregate_seq(&aggregate_key(account, aggregate))
    }

    async fn read(
        &self,
        from: u64,
        limit: usize,
        filter: &Filter,
    ) -> Result<Vec<Record>, LogError> {
        let (records, _) = self
            .shared
            .store
            .scan(from, self.visible(), limit, filter)?;
        Ok(records)
    }

    async fn last_seq(&self) -> Result<u64, LogError> {
        Ok(self.visible())
    }

    async fn subscribe(&self, start: StartAt, filter: Filter) -> Result<Subscription, LogError> {
        // Subscribe to changes before reading the position, so nothing
        // appended in between is missed.
        let mut visible = self.shared.visible.subscribe();
        let last = *visible.borrow_and_update();
        let next = match start {
            StartAt::Beginning => 1,
            StartAt::Seq(seq) => seq.max(1),
            StartAt::Time(t) => self.shared.store.first_seq_at_or_after(t, last)?,
            StartAt::New => last + 1,
        };
        tracing::debug!(?start, next, ?filter, "subscription opened");
        let state = SubscriptionState {
            shared: self.shared.clone(),
            visible,
            next,
            filter,
            buffer: VecDeque::new(),
            done: false,
        };
        Ok(stream::unfold(state, SubscriptionState::next_record).boxed())
    }

    async fn durable(
        &self,
        name: &str,
        filter: Filter,
        start_after: u64,
    ) -> Result<Box<dyn DurableCursor>, LogError> {
        let cursor = EmbeddedCursor::open(self.shared.clone(), name, filter, start_after).await?;
        Ok(Box::new(cursor))
    }

    async fn delete_durable(&self, name: &str) -> Result<(), LogError> {
        self.shared
            .store
            .cursors
            .remove(name.as_bytes())
            .map_err(storage("deleting a durable cursor"))?;
        self.shared.store.flush().await?;
        tracing::debug!(cursor = name, "durable cursor deleted");
        Ok(())
    }

    fn describe(&self) -> String {
        format!("embedded sled log at {}", self.shared.store.path.display())
    }
}

/// Catch-up-then-live state of one subscription.
struct SubscriptionState {
    shared: Arc<Shared>,
    visible: watch::Receiver<u64>,
    /// The next sequence to examine.
    next: u64,
    filter: Filter,
    buffer: VecDeque<Record>,
    done: bool,
}

impl SubscriptionState {
    async fn next_record(mut self) -> Option<(Result<Record, LogError>, Self)> {
        loop {
            if self.done {
                return None;
            }
            if let Some(record) = self.buffer.pop_front() {
                return Some((Ok(record), self));
            }
            let visible = *self.visible.borrow_and_update();
            if self.next <= visible {
                // Bound the records examined per step so a selective filter
                // over a long log does not hold the thread for the whole scan.
                let to = visible.min(self.next.saturating_add(SUBSCRIBE_PAGE as u64 * 8));
                match self
                    .shared
                    .store
                    .scan(self.next, to, SUBSCRIBE_PAGE, &self.filter)
                {
                    Ok((records, next)) => {
                        self.next = next;
                        self.buffer.extend(records);
                        if self.buffer.is_empty() {
                            tokio::task::yield_now().await;
                        }
                        continue;
                    }
                    Err(e) => {
                        self.done = true;
                        return Some((Err(e), self));
                    }
                }
            }
            if self.visible.changed().await.is_err() {
                self.done = true;
                return Some((Err(LogError::Closed), self));
            }
        }
    }
}
