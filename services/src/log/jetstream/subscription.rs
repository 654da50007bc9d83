//! Catch-up-then-live subscriptions on an ordered consumer.
//!
//! An ordered consumer delivers in stream order and recreates itself after
//! a gap, a missed heartbeat or a reconnect, resuming after the last stream
//! sequence it delivered. Two guards on top of it:
//! * if it resets before delivering anything, async-nats recreates it with
//!   `DeliverPolicy::All`, which would replay the whole stream: everything
//!   below the requested start (by sequence, or by stored time for
//!   [`StartAt::Time`]) is dropped, as is anything at or below the last
//!   sequence already handed out;
//! * its errors (missed heartbeats, a failed pull) are logged and the stream
//!   carries on; it never ends on a transient error.

use super::nats_time;
use crate::log::{Filter, LogError, Record, StartAt, Subscription};
use async_nats::jetstream::consumer::pull::{Ordered, OrderedConfig};
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::stream::Stream;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use std::time::Duration;
use tracing::{debug, warn};

/// Where the ordered consumer starts, and what the guard lets through.
struct Start {
    policy: DeliverPolicy,
    /// Lowest sequence to hand out.
    min_seq: u64,
    /// Until the first record, drop anything stored before this.
    min_time: Option<DateTime<Utc>>,
}

/// Opens the subscription. `last_seq` is called only for [`StartAt::New`].
pub(crate) async fn subscribe(
    stream: &Stream<()>,
    start: StartAt,
    filter: Filter,
    last_seq: u64,
) -> Result<Subscription, LogError> {
    let start = match start {
        StartAt::Beginning => by_seq(1),
        StartAt::Seq(s) => by_seq(s.max(1)),
        StartAt::New => by_seq(last_seq + 1),
        StartAt::Time(t) => {
            let nanos = t.timestamp_nanos_opt().unwrap_or(i64::MAX);
            let start_time = async_nats::datetime::from_nanos(i128::from(nanos))
                .map_err(|e| LogError::Invalid(format!("start time {t}: {e}")))?;
            Start {
                policy: DeliverPolicy::ByStartTime { start_time },
                min_seq: 1,
                min_time: Some(t),
            }
        }
    };
    let config = OrderedConfig {
        filter_subject: filter.subject(),
        deliver_policy: start.policy,
        ..Default::default()
    };
    let consumer = stream
        .create_consumer(config)
        .await
        .map_err(|e| super::unavailable("creating ordered consumer", e))?;
    let messages = consumer
        .messages()
        .await
        .map_err(|e| super::unavailable("starting ordered consumer", e))?;
    let state = Guarded {
        messages,
        filter,
        next_seq: start.min_seq,
        min_time: start.min_time,
        errors: 0,
    };
    Ok(futures::stream::unfold(state, |mut s| async move {
        let record = s.next().await?;
        Some((Ok(record), s))
    })
    .boxed())
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
    filter: Filter,
    /// Nothing below this is handed out.
    next_seq: u64,
    min_time: Option<DateTime<Utc>>,
    /// Consecutive errors, for back-off.
    errors: u32,
}

impl Guarded {
    /// The next record to hand out; `None` only when the consumer ended.
    async fn next(&mut self) -> Option<Record> {
        loop {
            let msg = match self.messages.next().await? {
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
                debug!(seq, expected = self.next_seq, "dropping replayed record");
                continue;
            }
            if let Some(t) = self.min_time {
                if stored_at < t {
                    continue;
                }
            }
            self.next_seq = seq + 1;
            self.min_time = None;
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
