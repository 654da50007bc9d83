//! Catch-up-then-live subscriptions on an ordered consumer.
//!
//! An ordered consumer delivers in stream order and recreates itself after
//! a gap, a missed heartbeat or a reconnect, resuming after the last stream
//! sequence it delivered. Two guards on top of it:
//! * if it resets before delivering anything, async-nats recreates it with
//!   `DeliverPolicy::All`, which would replay the whole stream: nothing
//!   below the requested start (by sequence, or by stored time for
//!   [`StartAt::Time`]) or at or below the last sequence already handed out
//!   is ever passed on, and the first such record makes the subscription
//!   recreate its consumer where it is (instead of reading the history
//!   through only to drop it);
//! * its errors (missed heartbeats, a failed pull) are logged and the stream
//!   carries on; it never ends on a transient error.
//!
//! After the client reconnects (a server restart loses ordered consumers,
//! which live in memory) the subscription recreates its consumer at once
//! from the next sequence it expects, instead of waiting for async-nats to
//! notice missing heartbeats (15–30 s).

use super::nats_time;
use crate::{Filter, LogError, Record, StartAt, Subscription};
use async_nats::jetstream::consumer::pull::{Ordered, OrderedConfig};
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::stream::Stream;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// Where the ordered consumer starts, and what the guard lets through.
struct Start {
    policy: DeliverPolicy,
    /// Lowest sequence to hand out.
    min_seq: u64,
    /// Until the first record, drop anything stored before this.
    min_time: Option<DateTime<Utc>>,
}

/// Opens the subscription. `last_seq` is used only for [`StartAt::New`];
/// `reconnects` changes every time the client (re)connects.
pub(crate) async fn subscribe(
    stream: &Stream<()>,
    start: StartAt,
    filter: Filter,
    last_seq: u64,
    reconnects: watch::Receiver<u64>,
) -> Result<Subscription, LogError> {
    let start = match start {
        StartAt::Beginning => by_seq(1),
        StartAt::Seq(s) => by_seq(s.max(1)),
        StartAt::New => by_seq(last_seq + 1),
        StartAt::Time(t) => {
            // Outside 1677..2262 nanoseconds overflow: clamp to the range.
            let nanos = t.timestamp_nanos_opt().unwrap_or(if t.timestamp() < 0 {
                i64::MIN
            } else {
                i64::MAX
            });
            let start_time = async_nats::datetime::from_nanos(i128::from(nanos))
                .map_err(|e| LogError::Invalid(format!("start time {t}: {e}")))?;
            Start {
                policy: DeliverPolicy::ByStartTime { start_time },
                min_seq: 1,
                min_time: Some(t),
            }
        }
    };
    let messages = ordered(stream, &filter, start.policy).await?;
    let state = Guarded {
        messages,
        stream: stream.clone(),
        initial_policy: start.policy,
        reconnects: Some(reconnects),
        filter,
        next_seq: start.min_seq,
        min_time: start.min_time,
        delivered_any: false,
        errors: 0,
    };
    Ok(futures::stream::unfold(state, |mut s| async move {
        let record = s.next().await?;
        Some((Ok(record), s))
    })
    .boxed())
}

/// Creates an ordered consumer and starts pulling.
async fn ordered(
    stream: &Stream<()>,
    filter: &Filter,
    policy: DeliverPolicy,
) -> Result<Ordered, LogError> {
    let config = OrderedConfig {
        filter_subject: filter.subject(),
        deliver_policy: policy,
        ..Default::default()
    };
    let consumer = stream
        .create_consumer(config)
        .await
        .map_err(|e| super::unavailable("creating ordered consumer", e))?;
    consumer
        .messages()
        .await
        .map_err(|e| super::unavailable("starting ordered consumer", e))
}

fn by_seq(seq: u64) -> Start {
    Start {
        policy: DeliverPolicy::ByStartSequence {
            start_sequence: seq,
        },
        min_seq: seq,
        min_time: None,
    }
}

struct Guarded {
    messages: Ordered,
    stream: Stream<()>,
    /// Where the subscription started (used again if it is recreated
    /// before anything was delivered).
    initial_policy: DeliverPolicy,
    /// Bumped on every (re)connect; `None` once the log handle is gone.
    reconnects: Option<watch::Receiver<u64>>,
    filter: Filter,
    /// Nothing below this is handed out.
    next_seq: u64,
    min_time: Option<DateTime<Utc>>,
    /// True once a record passed the start guard.
    delivered_any: bool,
    /// Consecutive errors, for back-off.
    errors: u32,
}

impl Guarded {
    /// Replaces the ordered consumer with one starting where this
    /// subscription is, retrying until the server answers.
    async fn recreate(&mut self, why: &'static str) {
        let policy = if self.delivered_any {
            DeliverPolicy::ByStartSequence {
                start_sequence: self.next_seq,
            }
        } else {
            self.initial_policy
        };
        let mut attempt: u32 = 0;
        loop {
            match ordered(&self.stream, &self.filter, policy).await {
                Ok(messages) => {
                    info!(next_seq = self.next_seq, why, "subscription resumed");
                    self.messages = messages;
                    return;
                }
                Err(e) => {
                    attempt = attempt.saturating_add(1);
                    debug!(error = %e, attempt, "recreating the subscription's consumer failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100u64 << attempt.min(5))).await;
                }
            }
        }
    }

    /// The next message, recreating the consumer after a reconnect.
    async fn next_message(
        &mut self,
    ) -> Option<
        Result<async_nats::jetstream::Message, async_nats::jetstream::consumer::pull::OrderedError>,
    > {
        loop {
            let Some(reconnects) = self.reconnects.as_mut() else {
                return self.messages.next().await;
            };
            tokio::select! {
                changed = reconnects.changed() => match changed {
                    Ok(()) => self.recreate("after reconnect").await,
                    Err(_) => self.reconnects = None,
                },
                m = self.messages.next() => return m,
            }
        }
    }

    /// The next record to hand out; `None` only when the consumer ended.
    async fn next(&mut self) -> Option<Record> {
        loop {
            let msg = match self.next_message().await? {
                Ok(m) => {
                    self.errors = 0;
                    m
                }
                Err(e) => {
                    self.errors = self.errors.saturating_add(1);
                    warn!(error = %e, errors = self.errors, "subscription error; carrying on");
                    let backoff = Duration::from_millis(50u64 << self.errors.min(5));
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            };
            let (seq, stored_at) = match msg.info() {
                Ok(info) => (info.stream_sequence, nats_time(info.published)),
                Err(e) => {
                    warn!(error = %e, "delivery without metadata; skipped");
                    continue;
                }
            };
            if seq < self.next_seq {
                // async-nats recreated its consumer from the stream's first
                // record (it does when it resets before delivering
                // anything): start again where this subscription is rather
                // than read the whole history only to drop it.
                debug!(
                    seq,
                    expected = self.next_seq,
                    "ordered consumer replays from the start; recreating it"
                );
                self.recreate("after a reset from the stream's start").await;
                continue;
            }
            if let Some(t) = self.min_time {
                if stored_at < t {
                    continue;
                }
            }
            self.next_seq = seq + 1;
            self.min_time = None;
            self.delivered_any = true;
            let subject = msg.subject.to_string();
            if !self.filter.matches_subject(&subject) {
                continue;
            }
            return Some(Record {
                seq,
                subject,
                stored_at,
                bytes: msg.payload.clone(),
            });
        }
    }
}
