//! Given/when/then for the services' rules, without a log or a server:
//! given a state folded from example events (the projections' fixtures),
//! when one more event is folded and decided, then look at the decisions.

#[path = "../../../../projections/tests/common/mod.rs"]
mod common;

pub use common::*;

use chrono::{DateTime, Duration, Utc};
use powernode_events::{Envelope, EventPayload};
use powernode_projections::FleetState;
use powernode_runtime::{Decisions, Reactor};

/// The account the examples run in.
pub const ACCOUNT: &str = "acme";

/// Events so far, and the state they fold into.
pub struct Given {
    /// The events, with their sequences.
    pub stream: Stream,
    /// The ids of the example's objects.
    pub ids: Ids,
}

impl Given {
    /// Nothing yet but the ids of `ACCOUNT`'s example objects.
    pub fn nothing() -> Self {
        Self {
            stream: Stream::new(),
            ids: Ids::new(ACCOUNT),
        }
    }

    /// An account with templates, nodes (server 8 GiB, worker 2 GiB),
    /// enrolled instances, a network and a peer per instance.
    pub fn fleet() -> Self {
        let mut g = Self::nothing();
        setup(&mut g.stream, ACCOUNT, &g.ids);
        g
    }

    /// [`Self::fleet`] with the server's cluster bootstrapped and active,
    /// its VIP held by the server's peer.
    pub fn active_cluster() -> Self {
        let mut g = Self::fleet();
        bootstrap(&mut g.stream, ACCOUNT, &g.ids);
        g
    }

    /// [`Self::active_cluster`] with the worker joined and ready.
    pub fn joined_worker() -> Self {
        let mut g = Self::active_cluster();
        worker_join(&mut g.stream, ACCOUNT, &g.ids);
        g
    }

    /// One more event.
    pub fn and(&mut self, payload: impl Into<EventPayload>) -> &mut Self {
        self.stream.push(ACCOUNT, payload);
        self
    }

    /// The last event so far.
    pub fn last(&self) -> &Envelope {
        &self.stream.events.last().expect("an example has events").1
    }

    /// The last event so far and its sequence.
    pub fn last_pair(&self) -> (u64, Envelope) {
        let (seq, event) = self.stream.events.last().expect("an example has events");
        (*seq, event.clone())
    }

    /// The state the events fold into.
    pub fn state(&self) -> FleetState {
        self.stream.fold()
    }

    /// When: the time of the last event, plus `after`.
    pub fn now_plus(&self, after: Duration) -> DateTime<Utc> {
        self.last().occurred_at + after
    }

    /// When `payload` happens (folded) and `reactor` decides about it one
    /// second later: what it decided.
    pub fn when<R: Reactor<FleetState>>(
        &mut self,
        reactor: &mut R,
        payload: impl Into<EventPayload>,
    ) -> Decisions<R::Effect> {
        self.and(payload);
        let now = self.now_plus(Duration::seconds(1));
        self.decide(reactor, now)
    }

    /// `reactor` decides about the last event at `now`.
    pub fn decide<R: Reactor<FleetState>>(
        &self,
        reactor: &mut R,
        now: DateTime<Utc>,
    ) -> Decisions<R::Effect> {
        let state = self.state();
        let (seq, event) = self.stream.events.last().expect("an example has events");
        let mut out = Decisions::default();
        reactor.decide(&state, *seq, event, now, &mut out);
        out
    }
}

/// The payloads of decided events.
pub fn payloads<E>(out: &Decisions<E>) -> Vec<&EventPayload> {
    out.events().iter().map(|e| &e.payload).collect()
}

/// What `read` finds once it finds something, or after a real second.
/// The embedded log flushes on sled's threads, where tokio's paused clock
/// does not wait: the pause is a blocking task (it stops time advancing).
pub async fn settled<F, T>(read: impl Fn() -> F) -> Vec<T>
where
    F: std::future::Future<Output = Vec<T>>,
{
    for _ in 0..200 {
        let found = read().await;
        if !found.is_empty() {
            return found;
        }
        tokio::task::spawn_blocking(|| std::thread::sleep(std::time::Duration::from_millis(5)))
            .await
            .expect("a sleep does not panic");
    }
    read().await
}

/// A clock that starts at `start` and follows tokio's (paused) time.
pub fn paused_clock(start: DateTime<Utc>) -> impl Fn() -> DateTime<Utc> + Clone + Send {
    let origin = tokio::time::Instant::now();
    move || start + Duration::from_std(origin.elapsed()).expect("test durations are small")
}

/// What `read` finds after `real` time passed with tokio's clock held.
pub async fn settled_for<F, T>(real: std::time::Duration, read: impl Fn() -> F) -> T
where
    F: std::future::Future<Output = T>,
{
    tokio::task::spawn_blocking(move || std::thread::sleep(real))
        .await
        .expect("a sleep does not panic");
    read().await
}
