//! Scale-out by account: replicas of one service split the accounts between
//! them, so each folds and decides for its share only.
//!
//! * **Partitions** — a fixed number `P` per service; an account's
//!   partition is a stable hash of its id (the subject's account token)
//!   mod `P` ([`partition_of`]), the same in every replica and release.
//! * **Leases** — who owns a partition is a lease in a JetStream KV bucket
//!   ([`lease`]), renewed by compare-and-set on its revision and expiring
//!   with the bucket's TTL when its holder dies; replicas balance to about
//!   `P / live replicas` each.
//! * **Progress** — with every renewal the owner records, per partition,
//!   the sequence through which every decision it made is durably in the
//!   log. A new owner decides that partition's records after it, and only
//!   folds those before it: nothing decided is lost (what the old owner had
//!   not appended is decided again) and nothing is doubled (decision ids are
//!   derived from their cause, so an overlap is a duplicate the log drops).
//! * **The consumer** ([`Ownership`], used by the runtime's loop) folds the
//!   records of the partitions it owns, skips the others, and appends only
//!   decisions about partitions whose lease it still holds (fencing: a
//!   deposed owner's late decisions are dropped, the new owner makes them).
//!   When ownership changes it rebuilds its projection from the start of
//!   the log for its new set (the state of the partitions it keeps is not
//!   decided again). That rebuild is the cost of a handoff: see
//!   `docs/scale.md`.
//!
//! Single-replica mode (no [`Ownership`]) is unchanged.

pub mod lease;

use powernode_events::Envelope;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How a service partitions its accounts across replicas.
#[derive(Debug, Clone)]
pub struct PartitionConfig {
    /// The service (leases are per service and partition).
    pub service: String,
    /// This replica's name (unique among the service's replicas).
    pub replica: String,
    /// How many partitions (the same in every replica of the service).
    pub partitions: u32,
    /// How long a lease outlives its holder's last renewal.
    pub lease_ttl: Duration,
}

impl PartitionConfig {
    /// Defaults: 16 partitions, leases of 5 s.
    pub fn new(service: impl Into<String>, replica: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            replica: replica.into(),
            partitions: DEFAULT_PARTITIONS,
            lease_ttl: DEFAULT_LEASE_TTL,
        }
    }

    /// How often leases are renewed (a quarter of their TTL).
    pub fn renew_every(&self) -> Duration {
        self.lease_ttl / 4
    }

    /// How long after a renewal began the holder may still decide: half the
    /// TTL, so a holder stops before the server can hand the lease on.
    pub fn valid_for(&self) -> Duration {
        self.lease_ttl / 2
    }
}

/// Partitions per service unless told otherwise.
pub const DEFAULT_PARTITIONS: u32 = 16;
/// Lease TTL unless told otherwise.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(5);

/// The partition of `account` among `partitions`: FNV-1a (32-bit) of the
/// account id, mod `partitions` — what NATS's `partition(P, token)` subject
/// mapping computes for that token, so a server-side mapping (of the
/// heartbeat subject, say: docs/scale.md) agrees with the runtime. Stable
/// across processes and releases (never a randomly seeded hasher).
pub fn partition_of(account: &str, partitions: u32) -> u32 {
    fnv1a32(account.as_bytes()) % partitions.max(1)
}

fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in bytes {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// What the consumer does with one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Another replica's partition: neither folded nor decided.
    Skip,
    /// Folded only (decided before, by this replica or the previous owner).
    Fold,
    /// Folded and decided.
    Decide,
}

/// One owned partition.
#[derive(Debug, Clone)]
struct Owned {
    /// The first sequence this replica decides in it.
    decide_from: u64,
    /// Until when its lease is surely still held (then: fenced).
    valid_until: Instant,
}

#[derive(Debug)]
struct Inner {
    partitions: u32,
    owned: BTreeMap<u32, Owned>,
    /// The partitions the consumer's current pass folds from the start.
    folded: BTreeSet<u32>,
    /// Through which sequence every decision of the current pass is in the log.
    flushed: u64,
    /// Bumped whenever `owned` gains or loses a partition.
    generation: u64,
}

/// The partitions a replica owns, shared by its lease keeper and its
/// consumer. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Ownership {
    inner: Arc<Mutex<Inner>>,
    /// The generation, for waiters (the consumer's first pass waits for 1).
    changed: Arc<watch::Sender<u64>>,
}

impl Ownership {
    /// Owning nothing yet, among `partitions` partitions.
    pub fn new(partitions: u32) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                partitions: partitions.max(1),
                owned: BTreeMap::new(),
                folded: BTreeSet::new(),
                flushed: 0,
                generation: 0,
            })),
            changed: Arc::new(watch::channel(0).0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding it (map updates only); go on if one did.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many partitions there are.
    pub fn partitions(&self) -> u32 {
        self.lock().partitions
    }

    /// The partitions owned now.
    pub fn owned(&self) -> Vec<u32> {
        self.lock().owned.keys().copied().collect()
    }

    /// The generation: changes whenever a partition is gained or lost.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Waits until the lease keeper has made its first round (generation
    /// ≥ 1), or `stop` is cancelled (`false`).
    pub async fn settled(&self, stop: &tokio_util::sync::CancellationToken) -> bool {
        let mut rx = self.changed.subscribe();
        tokio::select! {
            r = rx.wait_for(|g| *g >= 1) => r.is_ok(),
            _ = stop.cancelled() => false,
        }
    }

    /// Starts a consumer pass from the start of the log, `applied` being
    /// where the previous pass got to: the partitions kept from that pass
    /// are decided only after it. Answers the pass's generation.
    pub fn begin_pass(&self, applied: u64) -> u64 {
        let mut inner = self.lock();
        let previous = std::mem::take(&mut inner.folded);
        for (p, owned) in inner.owned.iter_mut() {
            if previous.contains(p) {
                owned.decide_from = owned.decide_from.max(applied + 1);
            }
        }
        inner.folded = inner.owned.keys().copied().collect();
        inner.flushed = 0;
        inner.generation
    }

    /// What to do with the record of `account` at `seq`.
    pub fn verdict(&self, account: &str, seq: u64) -> Verdict {
        let inner = self.lock();
        let p = partition_of(account, inner.partitions);
        if !inner.folded.contains(&p) {
            return Verdict::Skip;
        }
        match inner.owned.get(&p) {
            Some(o) if seq >= o.decide_from => Verdict::Decide,
            // Lost during this pass (rebuilt after the batch), or decided before.
            _ => Verdict::Fold,
        }
    }

    /// Fencing: removes the decisions about partitions whose lease is not
    /// surely held any more; answers how many were dropped (their records
    /// are decided again by the next owner, from the progress it reads).
    pub fn fence(&self, events: &mut Vec<Envelope>) -> usize {
        let inner = self.lock();
        let now = Instant::now();
        let before = events.len();
        events.retain(|e| {
            let p = partition_of(e.account_id.as_str(), inner.partitions);
            inner.owned.get(&p).is_some_and(|o| o.valid_until > now)
        });
        before - events.len()
    }

    /// The consumer appended every decision about records through `applied`.
    pub fn flushed(&self, applied: u64) {
        let mut inner = self.lock();
        inner.flushed = inner.flushed.max(applied);
    }

    /// Through which sequence partition `p`'s decisions are all in the log,
    /// as far as this replica knows (`None`: not owned).
    fn progress(inner: &Inner, p: u32) -> Option<u64> {
        let owned = inner.owned.get(&p)?;
        let decided_before = owned.decide_from.saturating_sub(1);
        // `flushed` covers `p` only once the pass reached `decide_from`.
        Some(if inner.folded.contains(&p) {
            decided_before.max(inner.flushed)
        } else {
            decided_before
        })
    }

    /// The progress of every owned partition.
    pub(crate) fn progress_all(&self) -> Vec<(u32, u64)> {
        let inner = self.lock();
        inner
            .owned
            .keys()
            .filter_map(|p| Some((*p, Self::progress(&inner, *p)?)))
            .collect()
    }

    /// Gained `p`: decide its records after `decided_through`.
    pub(crate) fn gain(&self, p: u32, decided_through: u64, valid_until: Instant) {
        let mut inner = self.lock();
        inner.owned.insert(
            p,
            Owned {
                decide_from: decided_through + 1,
                valid_until,
            },
        );
        self.bump(&mut inner);
    }

    /// A renewal of `p` succeeded (it began at `renewed`).
    pub(crate) fn renewed(&self, p: u32, valid_until: Instant) {
        if let Some(o) = self.lock().owned.get_mut(&p) {
            o.valid_until = valid_until;
        }
    }

    /// Gives up `p` (released or lost): nothing more is decided about it.
    /// Answers its progress at that moment (what the next owner starts after).
    pub(crate) fn lose(&self, p: u32) -> Option<u64> {
        let mut inner = self.lock();
        let progress = Self::progress(&inner, p);
        inner.owned.remove(&p)?;
        self.bump(&mut inner);
        progress
    }

    /// The keeper finished a round (the first one settles the consumer).
    pub(crate) fn round_done(&self) {
        let mut inner = self.lock();
        if inner.generation == 0 {
            self.bump(&mut inner);
        }
    }

    fn bump(&self, inner: &mut Inner) {
        inner.generation += 1;
        self.changed.send_replace(inner.generation);
    }
}

/// What to do with the record's account (for callers holding an optional
/// ownership: `None` decides everything, as a single replica does).
pub fn verdict_of(ownership: Option<&Ownership>, account: &str, seq: u64) -> Verdict {
    ownership.map_or(Verdict::Decide, |o| o.verdict(account, seq))
}

/// A partitioned pass caught up: its projection becomes the one readers
/// see (the service's timers, its status).
pub(crate) async fn hand_over<S: Default>(
    fold: &crate::Shared<S>,
    shared: &crate::Shared<S>,
    applied: u64,
) {
    let state = std::mem::take(&mut *fold.state.write().await);
    *shared.state.write().await = state;
    shared.applied_tx.send_replace(applied);
}

/// A time far enough ahead to stand for "held" in tests.
#[cfg(test)]
fn later() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_partition_of_an_account_is_stable_and_spread() {
        // FNV-1a test vectors: a change of hash would move every account
        // (and part from NATS's `partition()`).
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
        assert_eq!(partition_of("a", 16), 0xe40c_292c % 16);
        let mut counts = [0u32; 16];
        for i in 0..1600 {
            counts[partition_of(&format!("account-{i}"), 16) as usize] += 1;
        }
        for c in counts {
            assert!((60..=140).contains(&c), "uneven spread: {counts:?}");
        }
        assert_eq!(partition_of("x", 1), 0);
    }

    fn account_in(p: u32, partitions: u32) -> String {
        (0..)
            .map(|i| format!("acct-{i}"))
            .find(|a| partition_of(a, partitions) == p)
            .expect("some account lands in every partition")
    }

    #[test]
    fn a_gained_partition_is_folded_then_decided_after_the_previous_owners_progress() {
        let own = Ownership::new(4);
        own.gain(1, 10, later());
        let gen = own.begin_pass(0);
        assert_eq!(gen, 1);
        let (mine, other) = (account_in(1, 4), account_in(2, 4));
        assert_eq!(own.verdict(&mine, 10), Verdict::Fold);
        assert_eq!(own.verdict(&mine, 11), Verdict::Decide);
        assert_eq!(own.verdict(&other, 11), Verdict::Skip);
        // Gained mid-pass: skipped until the rebuild.
        own.gain(2, 0, later());
        assert_eq!(own.verdict(&other, 12), Verdict::Skip);
        assert_eq!(own.generation(), 2);
    }

    #[test]
    fn a_kept_partition_is_not_decided_again_by_the_rebuild() {
        let own = Ownership::new(4);
        own.gain(1, 0, later());
        own.begin_pass(0);
        own.flushed(50);
        own.gain(3, 20, later());
        own.begin_pass(50);
        assert_eq!(own.verdict(&account_in(1, 4), 50), Verdict::Fold);
        assert_eq!(own.verdict(&account_in(1, 4), 51), Verdict::Decide);
        assert_eq!(own.verdict(&account_in(3, 4), 21), Verdict::Decide);
        // Progress: kept through 50; the new one through 20 until flushed.
        assert_eq!(own.progress_all(), vec![(1, 50), (3, 20)]);
        own.flushed(60);
        assert_eq!(own.progress_all(), vec![(1, 60), (3, 60)]);
    }

    #[test]
    fn decisions_about_a_lost_or_expired_partition_are_fenced() {
        let own = Ownership::new(4);
        own.gain(1, 0, later());
        own.gain(2, 0, Instant::now() - Duration::from_millis(1));
        own.gain(3, 0, later());
        own.begin_pass(0);
        own.flushed(7);
        assert_eq!(own.lose(3), Some(7));
        let event = |p: u32| {
            let account = powernode_events::AccountId::new(account_in(p, 4)).expect("valid id");
            Envelope::new(
                account,
                powernode_events::Actor::service("t"),
                powernode_events::payloads::log::RecordRejected {
                    rejected_seq: 1,
                    rejected_kind: None,
                    rejected_event_id: None,
                    reason: "test".into(),
                    observed_by: "t".into(),
                },
            )
        };
        let mut events = vec![event(1), event(2), event(3), event(0)];
        assert_eq!(own.fence(&mut events), 3);
        assert_eq!(events.len(), 1);
        assert_eq!(own.lose(3), None);
    }
}
