//! What a service plugs into the consumer loop: its [`Reactor`] (rules
//! that decide, effects it performs), the [`Decisions`] it decides into,
//! the [`Outbox`] of appends waiting for the end of a batch, and how a
//! failure of its effects is meant ([`ReactError`]).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use powernode_events::Envelope;
use powernode_log::LogError;
use uuid::Uuid;

/// What a reactor's failure means for the loop.
#[derive(Debug, thiserror::Error)]
pub enum ReactError {
    /// Try the same event again after a pause (e.g. the log is unavailable).
    #[error("retryable: {0}")]
    Retry(String),
    /// Stop the consumer.
    #[error("fatal: {0}")]
    Fatal(String),
}

impl From<LogError> for ReactError {
    fn from(e: LogError) -> Self {
        if e.is_retryable() {
            Self::Retry(e.to_string())
        } else {
            Self::Fatal(e.to_string())
        }
    }
}

/// A service's decision logic, in two halves.
///
/// [`decide`](Self::decide) is the rules: called after each admitted event
/// has been folded into the projection, with the projection as it now
/// stands, under its write lock. It is synchronous and pure — no I/O, no
/// clock (`now` is passed in) — so it can be tested by folding example
/// events and looking at what it decided. It decides into [`Decisions`]:
/// events to append as they are, and effects only the service knows how to
/// perform (a guarded append, a nudge…).
///
/// [`execute`](Self::execute) performs those effects once the lock is
/// released, before the next event is folded; [`end_batch`](Self::end_batch)
/// runs what the reactor put off to the end of the batch. Plain appends are
/// made after that, for the whole batch together (in order, pipelined
/// through the log's group commit), before the runtime checkpoints past the
/// batch. A decision is therefore not yet in the projection when the next
/// event of the same batch is decided: a reactor that allocates
/// (addresses, …) keeps its own in-flight view.
///
/// Must be idempotent: after a crash, events after the last checkpoint are
/// decided again. Give decisions ids derived from the cause
/// ([`derived_event_id`]) so a repeat is a duplicate, not a second fact.
#[async_trait]
pub trait Reactor<S>: Send + 'static {
    /// What the service decides besides plain appends (nothing:
    /// [`std::convert::Infallible`]).
    type Effect: Send + 'static;

    /// Decides about the event at `seq`, folded into `state`, at `now`.
    fn decide(
        &mut self,
        state: &S,
        seq: u64,
        event: &Envelope,
        now: DateTime<Utc>,
        out: &mut Decisions<Self::Effect>,
    );

    /// Performs the effects decided about the event at `seq`, with the
    /// projection's lock released. Removes each effect it is done with from
    /// `effects`; on `Retry` it is called again with the rest (the event is
    /// not folded or decided again). Follow-up events go to `out`, appended
    /// with the batch's decisions.
    async fn execute(
        &mut self,
        seq: u64,
        effects: &mut Vec<Self::Effect>,
        out: &mut Outbox,
    ) -> Result<(), ReactError> {
        let _ = (seq, out);
        effects.clear();
        Ok(())
    }

    /// After every record of a batch was handled, before its decisions are
    /// appended and before any checkpoint past it: work the reactor put off
    /// to run together (guarded appends of independent objects, say). On
    /// `Retry` it is called again; what succeeded must not be redone.
    async fn end_batch(&mut self) -> Result<(), ReactError> {
        Ok(())
    }
}

/// What a reactor decided about one event.
#[derive(Debug)]
pub struct Decisions<E> {
    events: Vec<Envelope>,
    effects: Vec<E>,
}

impl<E> Default for Decisions<E> {
    fn default() -> Self {
        Self {
            events: Vec::new(),
            effects: Vec::new(),
        }
    }
}

impl<E> Decisions<E> {
    /// Decides to append `event` as it is.
    pub fn append(&mut self, event: Envelope) {
        self.events.push(event);
    }

    /// Decides on an effect the reactor performs in [`Reactor::execute`].
    pub fn effect(&mut self, effect: E) {
        self.effects.push(effect);
    }

    /// The events decided so far.
    pub fn events(&self) -> &[Envelope] {
        &self.events
    }

    /// The effects decided so far.
    pub fn effects(&self) -> &[E] {
        &self.effects
    }

    /// Nothing decided.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.effects.is_empty()
    }

    /// The events and the effects.
    pub fn into_parts(self) -> (Vec<Envelope>, Vec<E>) {
        (self.events, self.effects)
    }
}

/// Decisions waiting to be appended.
#[derive(Debug, Default)]
pub struct Outbox {
    pub(crate) events: Vec<Envelope>,
}

impl Outbox {
    /// Queues a decision.
    pub fn push(&mut self, event: Envelope) {
        self.events.push(event);
    }

    /// The queued decisions.
    pub fn events(&self) -> &[Envelope] {
        &self.events
    }
}

/// A reactor that only keeps the projection (no decisions).
pub struct ProjectOnly;

impl<S: Sync> Reactor<S> for ProjectOnly {
    type Effect = std::convert::Infallible;

    fn decide(
        &mut self,
        _: &S,
        _: u64,
        _: &Envelope,
        _: DateTime<Utc>,
        _: &mut Decisions<Self::Effect>,
    ) {
    }
}

/// A deterministic event id for an event caused by `cause`: the same cause
/// and tag always give the same id, so re-appending after a crash dedupes.
pub fn derived_event_id(cause: Uuid, tag: &str) -> Uuid {
    Uuid::new_v5(&cause, tag.as_bytes())
}
