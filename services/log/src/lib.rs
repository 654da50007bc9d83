//! # powernode-log — the event log: one trait, two backends
//!
//! * [`jetstream`] — the production path: a JetStream stream of every event,
//!   subjects `pn.evt.<account>.<aggregate type>.<aggregate id>.<kind…>`
//!   (see [`powernode_events::subject`]); concurrent appends are grouped into
//!   atomic batches so a server with `sync_interval: always` pays one flush per
//!   batch, not per event.
//! * [`embedded`] — the zero-dependency default: an append-only log in sled
//!   with the same semantics, for `powernode up` on one machine and fast tests.
//!
//! * [`nats`] — how the platform's processes connect to NATS (credentials,
//!   TLS, the refusal of servers open to anonymous JetStream clients);
//! * [`sled_db`] — opening a sled database the way every powernode store does.
//!
//! Both backends pass the same conformance suite (`tests/src/conformance.rs`).
//!
//! This crate stores and reads records; it must never fold them, decide
//! anything, or know what a service does with an event.

pub mod embedded;
pub mod jetstream;
pub mod metrics;
pub mod nats;
pub mod sled_db;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use powernode_events::subject::{filter_subject, parse_subject};
use powernode_events::{AccountId, AggregateRef, Envelope};
use std::sync::Arc;
use std::time::Duration;

/// A shared handle to whichever log backend is in use.
pub type SharedLog = Arc<dyn EventLog>;

/// One stored record: its log sequence (1-based, gap-free per log), its
/// subject and its canonical CBOR bytes. Decoding is the reader's business,
/// so a malformed record can be reported instead of breaking the reader.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Log sequence, starting at 1.
    pub seq: u64,
    /// `pn.evt.<account>.<aggregate type>.<aggregate id>.<kind…>`.
    pub subject: String,
    /// When the log stored it.
    pub stored_at: DateTime<Utc>,
    /// Canonical CBOR of the envelope.
    pub bytes: Bytes,
}

impl Record {
    /// The kind, read from the subject (empty if the subject is not an event subject).
    pub fn kind(&self) -> &str {
        parse_subject(&self.subject).map_or("", |p| p.kind)
    }

    /// The account token, read from the subject.
    pub fn account(&self) -> &str {
        parse_subject(&self.subject).map_or("", |p| p.account)
    }
}

/// Which records a read or subscription returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this account's events.
    pub account: Option<AccountId>,
    /// Only kinds starting with this string (`system.k3s.handshake.join`
    /// matches `…join_request` and `…join_token_issued`).
    pub kind_prefix: Option<String>,
}

impl Filter {
    /// Every record.
    pub fn all() -> Self {
        Self::default()
    }

    /// The narrowest server-side subject filter for this filter.
    pub fn subject(&self) -> String {
        filter_subject(self.account.as_ref(), self.kind_prefix.as_deref())
    }

    /// Exact check of a record's subject against the filter.
    pub fn matches_subject(&self, subject: &str) -> bool {
        let Some(p) = parse_subject(subject) else {
            return self.account.is_none() && self.kind_prefix.is_none();
        };
        self.account
            .as_ref()
            .is_none_or(|a| a.as_str() == p.account)
            && self
                .kind_prefix
                .as_deref()
                .is_none_or(|k| p.kind.starts_with(k))
    }
}

/// A record to store exactly as it is ([`EventLog::append_raw`], used by
/// `powernode events import`).
#[derive(Debug, Clone, PartialEq)]
pub struct RawRecord {
    /// The record's subject.
    pub subject: String,
    /// Its bytes, stored unchanged (agent signatures cover them).
    pub bytes: Bytes,
    /// The event id, when the bytes name one: indexed for later dedupe
    /// (and sent as `Nats-Msg-Id`). Leave it out for a repeated id.
    pub event_id: Option<uuid::Uuid>,
}

/// Optimistic-concurrency guard for an append, per aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// No guard.
    Any,
    /// The aggregate must have no events yet.
    NoEvents,
    /// The aggregate's last event must be at this log sequence.
    LastSeq(u64),
}

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// From the first record.
    Beginning,
    /// From this sequence (inclusive).
    Seq(u64),
    /// From the first record stored at or after this time.
    Time(DateTime<Utc>),
    /// Only records appended after the subscription was made.
    New,
}

/// The answer to an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The record's sequence (the original one when `duplicate`).
    pub seq: u64,
    /// True if this event (same id, same account, aggregate and kind) was
    /// already in the log; nothing new was stored.
    pub duplicate: bool,
}

/// Log failures, split by what the caller should do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// The optimistic-concurrency guard failed: someone else wrote the aggregate.
    #[error("conflict on {aggregate}: expected {expected:?}, the aggregate has moved on")]
    Conflict {
        /// The aggregate (`type/id`).
        aggregate: String,
        /// What the caller expected.
        expected: Expect,
    },
    /// The log could not be reached or timed out; the append may be retried
    /// with the same event id (it is idempotent).
    #[error("event log unavailable: {0}")]
    Unavailable(String),
    /// The event could not be encoded or has an unusable id.
    #[error("invalid event: {0}")]
    Invalid(String),
    /// The store failed in a way retrying will not fix.
    #[error("event log storage error: {0}")]
    Storage(String),
    /// The event's id is already taken by a different record (another
    /// kind, aggregate or account): nothing was stored. Retrying with the
    /// same id never succeeds; the event needs an id of its own.
    #[error(
        "event id {id} is already taken by a different record (seq {seq}); nothing was stored"
    )]
    IdTaken {
        /// The event id.
        id: uuid::Uuid,
        /// Sequence of the record that holds the id.
        seq: u64,
    },
    /// The log was shut down.
    #[error("event log closed")]
    Closed,
}

impl LogError {
    /// True when retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// A live stream of records: catch-up, then live. Ends only on error or drop.
pub type Subscription = BoxStream<'static, Result<Record, LogError>>;

/// The event log.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends one event. Idempotent by event id: re-sending an event that is
    /// already stored answers its original sequence with `duplicate: true`.
    /// A "duplicate" is checked against the stored record: when the record
    /// under that id has another subject (account, aggregate or kind) the
    /// answer is [`LogError::IdTaken`] and nothing is stored.
    async fn append(&self, event: &Envelope, expect: Expect) -> Result<Appended, LogError>;

    /// Stores `records` in order, exactly as given (no re-encoding), with no
    /// guard and no dedupe; answers their sequences. For importing an export
    /// into an empty log.
    async fn append_raw(&self, records: &[RawRecord]) -> Result<Vec<u64>, LogError>;

    /// The sequence of the aggregate's last event, or `None` if it has none.
    /// Read from the authoritative copy, so it can seed an [`Expect::LastSeq`].
    async fn aggregate_last_seq(
        &self,
        account: &AccountId,
        aggregate: &AggregateRef,
    ) -> Result<Option<u64>, LogError>;

    /// Up to `limit` records with sequence `>= from` matching `filter`, in order.
    async fn read(&self, from: u64, limit: usize, filter: &Filter)
        -> Result<Vec<Record>, LogError>;

    /// The records at exactly these sequences, in the order asked; a
    /// sequence the log does not hold (past its end, or removed) is left
    /// out. Point reads for an index that knows where its records are
    /// (`recent_events` by cluster or instance). The default reads each
    /// with [`EventLog::read`]; a backend with a cheaper lookup overrides it.
    async fn read_seqs(&self, seqs: &[u64]) -> Result<Vec<Record>, LogError> {
        let mut out = Vec::with_capacity(seqs.len());
        for &seq in seqs {
            let found = self.read(seq, 1, &Filter::all()).await?;
            out.extend(found.into_iter().filter(|r| r.seq == seq));
        }
        Ok(out)
    }

    /// The sequence of the last record (0 when empty).
    async fn last_seq(&self) -> Result<u64, LogError>;

    /// Catch-up-then-live subscription: every matching record from `start`,
    /// in order, with no gap or duplicate, then new ones as they are appended.
    async fn subscribe(&self, start: StartAt, filter: Filter) -> Result<Subscription, LogError>;

    /// Opens (or resumes) the durable cursor `name`. A new cursor starts after
    /// `start_after`; an existing one resumes after what it acknowledged.
    async fn durable(
        &self,
        name: &str,
        filter: Filter,
        start_after: u64,
    ) -> Result<Box<dyn DurableCursor>, LogError>;

    /// Deletes the durable cursor `name` (used to rewind a cursor that is
    /// ahead of its consumer's checkpoint). Deleting a missing cursor is fine.
    async fn delete_durable(&self, name: &str) -> Result<(), LogError>;

    /// A short description for logs (`jetstream nats://… stream PN_EVENTS`).
    fn describe(&self) -> String;

    /// The NATS connection under the log and the stream's replica count,
    /// when there is one (the secret store's KV bucket and the agent intake
    /// use it).
    fn nats_client(&self) -> Option<(async_nats::Client, usize)> {
        None
    }

    /// The platform credentials the log connected with, when on NATS (the
    /// API's auth callout signs agents' grants with their issuer key).
    fn nats_creds(&self) -> Option<crate::nats::PlatformCreds> {
        None
    }
}

/// A named, persistent position in the log for one consumer.
#[async_trait]
pub trait DurableCursor: Send {
    /// The next records after the cursor, waiting at most `wait` for the first.
    /// Returns an empty batch on time-out. Records not yet acknowledged may be
    /// delivered again (after a restart, or a JetStream redelivery).
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, LogError>;

    /// Acknowledges every record up to and including `seq`.
    async fn ack_through(&mut self, seq: u64) -> Result<(), LogError>;

    /// The last acknowledged sequence as the log knows it.
    async fn acked(&mut self) -> Result<u64, LogError>;
}
