//! Durable cursors: one durable pull consumer per named cursor.
//!
//! Acknowledgement is cumulative (`AckPolicy::All`): acking the message at
//! sequence `n` acknowledges everything before it, so the cursor keeps the
//! ack handle of every message it delivered and not yet acknowledged, and
//! `ack_through(n)` acks the newest one at or below `n`. Acks come after the
//! consumer's checkpoint, which may be many records later, hence a large
//! `max_ack_pending`.
//!
//! On open, an existing consumer is reset to its ack floor (ADR-60 consumer
//! reset) so that whatever a previous process had been handed but not
//! acknowledged is delivered again, in order, instead of after `ack_wait`
//! behind newer records.
//!
//! Records arrive through one long-lived pull ([`pull::Stream`]): the server
//! always holds a request from us, so a stored record is on its way at once
//! (no fetch round trip per batch, no subscription per fetch), and the
//! client re-pulls when half of the request is used up. `next_batch` waits
//! for the first record and takes whatever else has already arrived.
//!
//! Deliveries can be lost on their way to us: a consumer leader that dies
//! with records in flight (its successor knows they were delivered), a pull
//! dropped after an error, a reconnect. The server then hands out later
//! records first and the lost ones only after `ack_wait`, and with
//! cumulative acks a later ack would acknowledge them unseen. So the cursor
//! follows the consumer (delivery) sequence, which grows by one with every
//! delivery: a jump, or a server that says it delivered more than we got
//! while we sit idle, means lost deliveries, and the cursor resets the
//! consumer to its ack floor and takes the records again in order (the
//! ones it already returned are kept for acking, not returned twice).

use super::{nats_time, unavailable};
use crate::{DurableCursor, Filter, LogError, Record};
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::message::Acker;
use async_nats::jetstream::{self, stream::Stream};
use async_trait::async_trait;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::time::Duration;
use tracing::{debug, info, warn};

/// How many delivered-but-unacknowledged records a cursor may have.
pub const DURABLE_MAX_ACK_PENDING: i64 = 1_000_000;
/// After this long without an ack the server delivers a record again.
pub const DURABLE_ACK_WAIT: Duration = Duration::from_secs(120);
/// "Consumer not found".
const ERR_CONSUMER_NOT_FOUND: u64 = 10014;

/// The JetStream durable name for a cursor name: the name itself when it is
/// already `[A-Za-z0-9_-]{1,64}`, otherwise a sanitized prefix plus a hash of
/// the original, so different names never share a consumer.
pub fn durable_name(name: &str) -> String {
    let safe = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if safe {
        return name.to_string();
    }
    let cleaned: String = name
        .chars()
        .take(40)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{cleaned}-{:016x}", fnv1a(name.as_bytes()))
}

/// FNV-1a: small, stable across builds (unlike `DefaultHasher`).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Opens (creating, resuming or re-filtering) the durable consumer `name`.
pub(crate) async fn open(
    stream: &Stream<()>,
    name: &str,
    filter: Filter,
    start_after: u64,
) -> Result<JetStreamCursor, LogError> {
    let durable = durable_name(name);
    let subject = filter.subject();
    let existing = match stream.get_consumer::<pull::Config>(&durable).await {
        Ok(c) => Some(c),
        Err(e) if consumer_missing(&e) => None,
        Err(e) => return Err(unavailable("opening durable cursor", e)),
    };
    let mut needs_reset = false;
    let mut delivered = None;
    let consumer = match existing {
        Some(c) if c.cached_info().config.filter_subject == subject => {
            // Hand out again, in order, what an earlier process got but never acknowledged.
            match stream.reset_consumer(&durable, None).await {
                Ok(r) => {
                    debug!(cursor = %durable, floor = r.reset_seq, "durable cursor resumed");
                    delivered = Some(r.info.delivered.consumer_sequence);
                }
                Err(e) => {
                    warn!(cursor = %durable, error = %e, "could not reset the cursor to its ack floor; will retry");
                    needs_reset = true;
                }
            }
            c
        }
        Some(c) => {
            // Same position, new filter: the consumer's filter is part of its
            // identity, so recreate it after its ack floor.
            let floor = acked_position(c.cached_info());
            info!(cursor = %durable, floor, %subject, "cursor filter changed; recreating");
            stream
                .delete_consumer(&durable)
                .await
                .map_err(|e| unavailable("recreating durable cursor", e))?;
            create(stream, &durable, &subject, floor).await?
        }
        None => create(stream, &durable, &subject, start_after).await?,
    };
    let delivered_through = delivered.unwrap_or(consumer.cached_info().delivered.consumer_sequence);
    Ok(JetStreamCursor {
        stream: stream.clone(),
        durable,
        consumer,
        filter,
        held: BTreeMap::new(),
        live: None,
        returned_through: 0,
        delivered_through,
        needs_reset,
        idle_check: IdleCheck::new(),
    })
}

/// Deletes the durable consumer of cursor `name`; a missing one is fine.
pub(crate) async fn delete(stream: &Stream<()>, name: &str) -> Result<(), LogError> {
    use async_nats::jetstream::stream::ConsumerErrorKind;
    let durable = durable_name(name);
    match stream.delete_consumer(&durable).await {
        Ok(_) => {
            info!(cursor = %durable, "durable cursor deleted");
            Ok(())
        }
        Err(e) => match e.kind() {
            ConsumerErrorKind::JetStream(j) if j.error_code().0 == ERR_CONSUMER_NOT_FOUND => Ok(()),
            _ => Err(unavailable("deleting durable cursor", e)),
        },
    }
}

async fn create(
    stream: &Stream<()>,
    durable: &str,
    subject: &str,
    start_after: u64,
) -> Result<PullConsumer, LogError> {
    let config = pull::Config {
        durable_name: Some(durable.to_string()),
        description: Some("powernode durable cursor".to_string()),
        filter_subject: subject.to_string(),
        deliver_policy: DeliverPolicy::ByStartSequence {
            start_sequence: start_after.saturating_add(1),
        },
        ack_policy: AckPolicy::All,
        ack_wait: DURABLE_ACK_WAIT,
        max_deliver: -1,
        max_ack_pending: DURABLE_MAX_ACK_PENDING,
        ..Default::default()
    };
    stream
        .create_consumer(config)
        .await
        .map_err(|e| unavailable("creating durable cursor", e))
}

fn consumer_missing(e: &async_nats::Error) -> bool {
    use async_nats::jetstream::context::{ConsumerInfoError, ConsumerInfoErrorKind};
    e.downcast_ref::<ConsumerInfoError>()
        .is_some_and(|e| match e.kind() {
            ConsumerInfoErrorKind::NotFound => true,
            ConsumerInfoErrorKind::JetStream(j) => j.error_code().0 == ERR_CONSUMER_NOT_FOUND,
            _ => false,
        })
}

/// The last acknowledged stream sequence of a consumer. A replicated
/// consumer reports an ack floor of 0 until its first ack (a single-server
/// one reports start - 1), so it is never taken below the start.
fn acked_position(info: &async_nats::jetstream::consumer::Info) -> u64 {
    let before_start = match info.config.deliver_policy {
        DeliverPolicy::ByStartSequence { start_sequence } => start_sequence.saturating_sub(1),
        _ => 0,
    };
    info.ack_floor.stream_sequence.max(before_start)
}

/// A delivered record not acknowledged yet.
struct Held {
    acker: Acker,
    /// False when the kind-prefix check dropped it (the caller never saw it).
    returned: bool,
}

/// A [`DurableCursor`] on a durable JetStream pull consumer.
pub struct JetStreamCursor {
    /// The stream, for resetting the consumer.
    stream: Stream<()>,
    /// The consumer's durable name.
    durable: String,
    consumer: PullConsumer,
    filter: Filter,
    held: BTreeMap<u64, Held>,
    /// The long-lived pull, opened on first use and after an error.
    live: Option<pull::Stream>,
    /// The newest sequence handed to the caller: a record delivered again
    /// (the server lost its delivery state in a restart, or an old pull
    /// request delivered late) is kept for acking but not handed out twice.
    returned_through: u64,
    /// The newest delivery (consumer) sequence received: the next delivery
    /// must be the one after it, or deliveries were lost on the way.
    delivered_through: u64,
    /// Deliveries were lost: reset the consumer before taking more.
    needs_reset: bool,
    /// Lost deliveries noticed while no record arrives.
    idle_check: IdleCheck,
}

/// What became of one delivery.
enum Taken {
    /// Kept for acking; the record if the caller should see it.
    Kept(Option<Record>),
    /// Deliveries before this one never reached us: it was not kept.
    Lost { expected: u64, got: u64 },
}

/// While no record arrives, asks the server now and then how many
/// deliveries it made: more than the cursor received, twice in a row with
/// nothing arriving in between, means the newest ones were lost (a delivery
/// still on its way would have arrived by the second look).
struct IdleCheck {
    last: tokio::time::Instant,
    suspect: Option<u64>,
}

/// Least time between two idle checks.
const IDLE_CHECK_EVERY: Duration = Duration::from_secs(1);

impl IdleCheck {
    fn new() -> Self {
        Self {
            last: tokio::time::Instant::now(),
            suspect: None,
        }
    }

    fn due(&self) -> bool {
        self.last.elapsed() >= IDLE_CHECK_EVERY
    }

    /// Records what the server says it delivered; true when deliveries
    /// are missing for the second look in a row.
    fn lost(&mut self, server_delivered: u64, received: u64) -> bool {
        self.last = tokio::time::Instant::now();
        if server_delivered <= received {
            self.suspect = None;
            return false;
        }
        let again = self.suspect == Some(server_delivered);
        self.suspect = Some(server_delivered);
        again
    }
}

/// How long one pull request of the live stream stays open on the server.
const PULL_EXPIRES: Duration = Duration::from_secs(30);
/// Idle heartbeat of the live stream: a silent server is noticed after two.
const PULL_HEARTBEAT: Duration = Duration::from_secs(5);
/// Most records one pull request asks for.
const PULL_BATCH: usize = 1000;

impl JetStreamCursor {
    /// Keeps the ack handle and turns the message into a record if it
    /// passes the exact filter.
    fn take(&mut self, msg: jetstream::Message) -> Result<Taken, LogError> {
        let (seq, delivery, stored_at) = {
            let info = msg
                .info()
                .map_err(|e| LogError::Storage(format!("malformed delivery metadata: {e}")))?;
            (
                info.stream_sequence,
                info.consumer_sequence,
                nats_time(info.published),
            )
        };
        if delivery > self.delivered_through.saturating_add(1) {
            return Ok(Taken::Lost {
                expected: self.delivered_through + 1,
                got: delivery,
            });
        }
        // The newest one counts, even if lower: a new consumer leader that
        // lost some of its predecessor's delivery state counts from there.
        self.delivered_through = delivery;
        let (msg, acker) = msg.split();
        let subject = msg.subject.to_string();
        if seq <= self.returned_through {
            // Delivered again: the newest ack handle is the one that counts.
            if let Some(h) = self.held.get_mut(&seq) {
                h.acker = acker;
            }
            return Ok(Taken::Kept(None));
        }
        self.returned_through = seq;
        let returned = self.filter.matches_subject(&subject);
        self.held.insert(seq, Held { acker, returned });
        Ok(Taken::Kept(returned.then(|| Record {
            seq,
            subject,
            stored_at,
            bytes: msg.payload,
        })))
    }

    /// Resets the consumer to its ack floor after lost deliveries: the
    /// server delivers everything after the floor again, in order.
    async fn reset(&mut self) -> Result<(), LogError> {
        // Drop the pull first: what is in flight to it is delivered again.
        self.live = None;
        let r = self
            .stream
            .reset_consumer(&self.durable, None)
            .await
            .map_err(|e| unavailable("resetting durable cursor", e))?;
        self.delivered_through = r.info.delivered.consumer_sequence;
        self.needs_reset = false;
        self.idle_check = IdleCheck::new();
        info!(
            cursor = %self.durable,
            floor = r.reset_seq,
            returned_through = self.returned_through,
            "durable cursor reset to its ack floor after lost deliveries"
        );
        Ok(())
    }

    /// While idle: did the server deliver records that never arrived?
    async fn check_idle(&mut self) -> Result<(), LogError> {
        if !self.idle_check.due() {
            return Ok(());
        }
        let info = self
            .consumer
            .info()
            .await
            .map_err(|e| unavailable("reading cursor position", e))?;
        let server_delivered = info.delivered.consumer_sequence;
        if self
            .idle_check
            .lost(server_delivered, self.delivered_through)
        {
            warn!(
                cursor = %self.durable,
                server_delivered,
                received = self.delivered_through,
                "deliveries never arrived"
            );
            self.needs_reset = true;
        }
        Ok(())
    }

    /// The live pull, opened if needed.
    async fn live(&mut self) -> Result<&mut pull::Stream, LogError> {
        if self.live.is_none() {
            let stream = self
                .consumer
                .stream()
                .max_messages_per_batch(PULL_BATCH)
                .expires(PULL_EXPIRES)
                .heartbeat(PULL_HEARTBEAT)
                .messages()
                .await
                .map_err(|e| unavailable("pulling from durable cursor", e))?;
            self.live = Some(stream);
        }
        Ok(self.live.as_mut().expect("just opened"))
    }

    /// Takes one item of the live pull: `Ok(true)` when it was a record
    /// (kept, and returned in `out` if it passes the filter).
    fn take_item(
        &mut self,
        item: Option<Result<jetstream::Message, pull::MessagesError>>,
        out: &mut Vec<Record>,
    ) -> Result<bool, LogError> {
        use async_nats::jetstream::consumer::pull::MessagesErrorKind;
        match item {
            Some(Ok(m)) => {
                match self.take(m)? {
                    Taken::Kept(Some(r)) => out.push(r),
                    Taken::Kept(None) => {}
                    Taken::Lost { expected, got } => {
                        warn!(
                            cursor = %self.durable,
                            expected,
                            got,
                            "deliveries lost on the way; resetting the cursor"
                        );
                        self.needs_reset = true;
                        self.live = None;
                    }
                }
                Ok(true)
            }
            Some(Err(e)) if e.kind() == MessagesErrorKind::MissingHeartbeat => {
                // The client re-pulls by itself; say so and keep waiting.
                debug!(error = %e, "durable cursor missed a heartbeat");
                Ok(false)
            }
            Some(Err(e)) => {
                self.live = None;
                Err(unavailable("pulling from durable cursor", e))
            }
            None => {
                self.live = None;
                Err(unavailable("pulling from durable cursor", "the pull ended"))
            }
        }
    }
}

#[async_trait]
impl DurableCursor for JetStreamCursor {
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, LogError> {
        use futures::FutureExt;
        let mut out = Vec::new();
        if max == 0 {
            return Ok(out);
        }
        let deadline = tokio::time::Instant::now() + wait;
        // Wait for the first record (records the filter drops do not count)…
        while out.is_empty() {
            if self.needs_reset {
                self.reset().await?;
            }
            let live = self.live().await?;
            let Ok(item) = tokio::time::timeout_at(deadline, live.next()).await else {
                if let Err(e) = self.check_idle().await {
                    debug!(error = %e, "durable cursor could not check for lost deliveries");
                }
                return Ok(out);
            };
            self.take_item(item, &mut out)?;
        }
        // …then take what has arrived already, without waiting (up to a
        // lost delivery, which drops the pull).
        while out.len() < max {
            let Some(live) = self.live.as_mut() else {
                break;
            };
            let Some(item) = live.next().now_or_never() else {
                break;
            };
            if let Err(e) = self.take_item(item, &mut out) {
                // What was taken stays valid; the error shows on the next call.
                debug!(error = %e, "live pull failed after a batch");
                break;
            }
        }
        Ok(out)
    }

    async fn ack_through(&mut self, seq: u64) -> Result<(), LogError> {
        // Records the caller never saw right after `seq` can be acked with it.
        let limit = self
            .held
            .range(seq.saturating_add(1)..)
            .find(|(_, h)| h.returned)
            .map_or(u64::MAX, |(k, _)| k - 1);
        let target = self.held.range(..=limit).next_back().map(|(k, _)| *k);
        let Some(target) = target else {
            return Ok(());
        };
        if let Some(h) = self.held.get(&target) {
            h.acker
                .double_ack()
                .await
                .map_err(|e| unavailable("acknowledging", e))?;
        }
        self.held = self.held.split_off(&(target + 1));
        Ok(())
    }

    async fn acked(&mut self) -> Result<u64, LogError> {
        let info = self
            .consumer
            .info()
            .await
            .map_err(|e| unavailable("reading cursor position", e))?;
        Ok(acked_position(info))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durable_names_are_safe_and_distinct() {
        assert_eq!(durable_name("provisioner"), "provisioner");
        assert_eq!(durable_name("api-v1_x"), "api-v1_x");
        let a = durable_name("svc.a");
        let b = durable_name("svc_a");
        assert_ne!(a, b);
        assert!(a.starts_with("svc_a-"));
        for n in ["a b", "x.y.*", ">", "", &"z".repeat(200)] {
            let d = durable_name(n);
            assert!(!d.is_empty() && d.len() <= 64, "{d}");
            assert!(d
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        }
        assert_eq!(durable_name("a b"), durable_name("a b"));
    }

    #[test]
    fn idle_check_needs_the_same_shortfall_twice() {
        let mut c = IdleCheck::new();
        assert!(!c.lost(10, 10), "nothing missing");
        assert!(!c.lost(12, 10), "first look: maybe still on its way");
        assert!(c.lost(12, 10), "second look, same shortfall: lost");
        let mut c = IdleCheck::new();
        assert!(!c.lost(12, 10));
        assert!(!c.lost(13, 10), "the server moved on: look again");
        assert!(!c.lost(13, 13), "arrived");
        assert!(!c.lost(13, 10), "a new shortfall starts over");
    }
}
