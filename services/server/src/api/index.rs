//! The events index: per account and per id an event names, the log
//! sequences of its most recent events, so `recent_events` filtered by a
//! cluster or an instance reads those records by sequence instead of
//! scanning the account.
//!
//! * Which ids: an event is indexed under its aggregate id and under every
//!   string of its payload that can be an id (subject-token safe, see
//!   [`is_token_safe`]). That is exactly what
//!   [`powernode_archive::concerns`] matches for such an id, so for any
//!   cluster or instance id the index lists every event the scan would
//!   show. A filter that cannot be an id is served by the scan.
//! * Bounded: each id keeps its newest [`RING`] sequences (each with its
//!   kind, so a kind prefix is checked without a read); an id whose ring
//!   dropped its oldest says from which sequence on its list is complete,
//!   and a reader scans the log below that.
//! * Built by its own follower of the log from sequence 1 (started on the
//!   first filtered query), through [`EventIndex::applied`]; a reader scans
//!   the few records past it. Every answer is the scan's: what the index
//!   lists is read back and checked with the scan's own test.
//!
//! The index holds sequences and kinds only: no payload, nothing secret.

use futures::StreamExt;
use powernode_events::ids::is_token_safe;
use powernode_events::Envelope;
use powernode_log::{Filter, Record, SharedLog, StartAt};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Most sequences kept per id.
pub const RING: usize = 2048;
/// Records folded per write lock.
const CHUNK: usize = 512;
/// Wait before following the log again after it failed.
const RETRY: Duration = Duration::from_secs(1);
/// Bits of an entry that hold the kind (the rest is the sequence).
const KIND_BITS: u32 = 16;
/// A kind the index has no number for (too many kinds): always a candidate.
const KIND_UNKNOWN: u16 = u16::MAX;

/// A shared handle ([`super::ApiState::events_index`]).
pub type SharedIndex = Arc<EventIndex>;

/// See the module's documentation.
#[derive(Debug)]
pub struct EventIndex {
    /// Most sequences kept per id ([`RING`] unless set for a test).
    ring: usize,
    inner: RwLock<Inner>,
    applied: watch::Sender<u64>,
    started: AtomicBool,
}

impl Default for EventIndex {
    fn default() -> Self {
        Self::with_ring(RING)
    }
}

impl EventIndex {
    /// An index keeping at most `ring` sequences per id (at least 1).
    pub fn with_ring(ring: usize) -> Self {
        Self {
            ring: ring.max(1),
            inner: RwLock::default(),
            applied: watch::channel(0).0,
            started: AtomicBool::new(false),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Every record through this sequence is indexed.
    applied: u64,
    /// Kind names by number.
    kinds: Vec<Box<str>>,
    kind_numbers: HashMap<Box<str>, u16>,
    /// Account token → id → ring.
    accounts: HashMap<Box<str>, HashMap<Box<str>, Ring>>,
    /// Sequences held, over all rings.
    entries: usize,
}

/// One id's newest events.
#[derive(Debug)]
struct Ring {
    /// Every event naming the id from this sequence on is in `entries`.
    complete_from: u64,
    /// `seq << KIND_BITS | kind`, oldest first.
    entries: VecDeque<u64>,
}

impl Default for Ring {
    fn default() -> Self {
        Self {
            complete_from: 1,
            entries: VecDeque::new(),
        }
    }
}

/// What a reader gets from the index for one id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidates {
    /// Sequences of the id's events with a matching kind, in the order asked.
    pub seqs: Vec<u64>,
    /// The id's events from this sequence through `applied` are all listed
    /// (the reader scans below it).
    pub complete_from: u64,
    /// The index covers the log through this sequence (the reader scans past it).
    pub applied: u64,
}

/// Size of the index, for benches and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexSize {
    /// Ids indexed, over all accounts.
    pub ids: usize,
    /// Sequences held.
    pub entries: usize,
    /// Indexed through this sequence.
    pub applied: u64,
}

/// One record's part of the index, worked out before taking the lock.
struct Folded {
    seq: u64,
    account: Box<str>,
    kind: Box<str>,
    ids: Vec<String>,
}

impl EventIndex {
    /// True when `id` is one the index answers for (others are scanned).
    pub fn covers(id: &str) -> bool {
        is_token_safe(id)
    }

    /// Starts following `log` from its first record, once; later calls do
    /// nothing. The follower stops with `shutdown` or when the index is dropped.
    pub fn ensure_started(self: &Arc<Self>, log: &SharedLog, shutdown: &CancellationToken) {
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let (me, log, stop) = (Arc::downgrade(self), log.clone(), shutdown.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = follow(me, log) => {}
                () = stop.cancelled() => {}
            }
        });
    }

    /// An index that never follows the log: every query it is asked is
    /// answered by the scan (benchmarks compare the two with it).
    pub fn unfollowed() -> Self {
        let index = Self::default();
        index.started.store(true, Ordering::SeqCst);
        index
    }

    /// Every record through this sequence is indexed.
    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Waits until the index has folded `seq`, at most `timeout`; true when it has.
    pub async fn wait_for(&self, seq: u64, timeout: Duration) -> bool {
        let mut rx = self.applied.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|a| *a >= seq))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// How big the index is.
    pub fn size(&self) -> IndexSize {
        let inner = self.read();
        IndexSize {
            ids: inner.accounts.values().map(HashMap::len).sum(),
            entries: inner.entries,
            applied: inner.applied,
        }
    }

    /// Up to `max` sequences `<= hi` of `id`'s events in `account` whose
    /// kind starts with `kind_prefix`, newest first.
    pub fn newest(
        &self,
        account: &str,
        id: &str,
        kind_prefix: Option<&str>,
        hi: u64,
        max: usize,
    ) -> Candidates {
        let inner = self.read();
        let (complete_from, entries) = inner.ring(account, id);
        let seqs = entries
            .rev()
            .map(unpack)
            .skip_while(|(seq, _)| *seq > hi)
            .filter(|(_, kind)| inner.kind_matches(*kind, kind_prefix))
            .take(max)
            .map(|(seq, _)| seq)
            .collect();
        Candidates {
            seqs,
            complete_from,
            applied: inner.applied,
        }
    }

    /// Up to `max` sequences in `from..=hi` of `id`'s events in `account`
    /// whose kind starts with `kind_prefix`, oldest first.
    pub fn oldest(
        &self,
        account: &str,
        id: &str,
        kind_prefix: Option<&str>,
        from: u64,
        hi: u64,
        max: usize,
    ) -> Candidates {
        let inner = self.read();
        let (complete_from, entries) = inner.ring(account, id);
        let seqs = entries
            .map(unpack)
            .skip_while(|(seq, _)| *seq < from)
            .take_while(|(seq, _)| *seq <= hi)
            .filter(|(_, kind)| inner.kind_matches(*kind, kind_prefix))
            .take(max)
            .map(|(seq, _)| seq)
            .collect();
        Candidates {
            seqs,
            complete_from,
            applied: inner.applied,
        }
    }

    /// Folds records in log order (every record after [`Self::applied`],
    /// none skipped; one already folded is ignored).
    pub fn fold(&self, records: &[Record]) {
        let folded: Vec<Folded> = records.iter().filter_map(fold_one).collect();
        let Some(last) = records.last().map(|r| r.seq) else {
            return;
        };
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let from = inner.applied;
        for f in folded.into_iter().filter(|f| f.seq > from) {
            inner.add(f, self.ring);
        }
        inner.applied = inner.applied.max(last);
        let applied = inner.applied;
        drop(inner);
        self.applied.send_replace(applied);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // A panic while folding leaves rings that are still sorted and complete
        // from their mark: reading them stays correct.
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    /// An id's ring: complete from where, and its entries oldest first
    /// (an id never seen: complete from the start, none).
    fn ring(&self, account: &str, id: &str) -> (u64, impl DoubleEndedIterator<Item = u64> + '_) {
        static NONE: VecDeque<u64> = VecDeque::new();
        match self.accounts.get(account).and_then(|ids| ids.get(id)) {
            Some(r) => (r.complete_from, r.entries.iter().copied()),
            None => (1, NONE.iter().copied()),
        }
    }

    fn kind_matches(&self, kind: u16, prefix: Option<&str>) -> bool {
        let Some(prefix) = prefix else { return true };
        self.kinds
            .get(usize::from(kind))
            .is_none_or(|k| k.starts_with(prefix))
    }

    fn kind_number(&mut self, kind: Box<str>) -> u16 {
        if let Some(n) = self.kind_numbers.get(&kind) {
            return *n;
        }
        let Ok(n) = u16::try_from(self.kinds.len()) else {
            return KIND_UNKNOWN;
        };
        if n == KIND_UNKNOWN {
            return KIND_UNKNOWN;
        }
        self.kinds.push(kind.clone());
        self.kind_numbers.insert(kind, n);
        n
    }

    fn add(&mut self, f: Folded, cap: usize) {
        let kind = self.kind_number(f.kind);
        let entry = (f.seq << KIND_BITS) | u64::from(kind);
        let ids = self.accounts.entry(f.account).or_default();
        let mut added = 0usize;
        let mut dropped = 0usize;
        for id in f.ids {
            let ring = ids.entry(id.into_boxed_str()).or_default();
            if ring.entries.len() >= cap {
                if let Some(old) = ring.entries.pop_front() {
                    ring.complete_from = unpack(old).0 + 1;
                    dropped += 1;
                }
            }
            ring.entries.push_back(entry);
            added += 1;
        }
        self.entries = self.entries + added - dropped;
    }
}

fn unpack(entry: u64) -> (u64, u16) {
    let kind = u16::try_from(entry & ((1 << KIND_BITS) - 1)).unwrap_or(KIND_UNKNOWN);
    (entry >> KIND_BITS, kind)
}

/// The ids a record is indexed under: its aggregate id and every
/// id-shaped string of its payload (keys excluded), as
/// [`powernode_archive::concerns`] reads them. A record that does not
/// decode is shown by no read, so it is not indexed.
fn fold_one(r: &Record) -> Option<Folded> {
    let event = Envelope::decode(&r.bytes).ok()?;
    let mut ids = vec![event.aggregate.id.clone()];
    if let Ok(v) = serde_json::to_value(&event.payload) {
        strings(&v, &mut ids);
    }
    ids.retain(|s| is_token_safe(s));
    ids.sort_unstable();
    ids.dedup();
    Some(Folded {
        seq: r.seq,
        account: r.account().into(),
        kind: r.kind().into(),
        ids,
    })
}

fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Follows the log from the record after the index's last, folding in
/// chunks; after a failure, again from there.
async fn follow(index: Weak<EventIndex>, log: SharedLog) {
    info!("events index: following the log from its start");
    loop {
        let Some(from) = index.upgrade().map(|i| i.applied() + 1) else {
            return;
        };
        let mut records = match log.subscribe(StartAt::Seq(from), Filter::all()).await {
            Ok(s) => s.ready_chunks(CHUNK),
            Err(e) => {
                warn!(error = %e, "events index: cannot follow the log; retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        while let Some(chunk) = records.next().await {
            let Some(index) = index.upgrade() else {
                return;
            };
            let mut ok = Vec::with_capacity(chunk.len());
            let mut failed = None;
            for r in chunk {
                match r {
                    Ok(r) => ok.push(r),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            index.fold(&ok);
            if let Some(e) = failed {
                warn!(error = %e, applied = index.applied(), "events index: the log failed; following again");
                tokio::time::sleep(RETRY).await;
                break;
            }
        }
        debug!("events index: subscription ended; following again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use powernode_events::payloads::k3s::{ClusterActivated, NodeRegistered, NodeRole};
    use powernode_events::subject::event_subject;
    use powernode_events::{AccountId, Actor, EventPayload};

    fn record(seq: u64, account: &str, p: impl Into<EventPayload>) -> Record {
        let e = Envelope::new(AccountId::new(account).unwrap(), Actor::service("test"), p);
        Record {
            seq,
            subject: event_subject(&e.account_id, &e.aggregate, e.kind()).unwrap(),
            stored_at: chrono::Utc::now(),
            bytes: Bytes::from(e.encode().unwrap()),
        }
    }

    fn registered(cluster: &str, instance: &str) -> NodeRegistered {
        NodeRegistered {
            cluster_id: cluster.into(),
            instance_id: instance.into(),
            role: NodeRole::Worker,
        }
    }

    #[test]
    fn an_event_is_listed_under_its_aggregate_and_the_ids_its_payload_names() {
        let index = EventIndex::default();
        index.fold(&[
            record(1, "acct-a", registered("cluster-1", "inst-1")),
            record(
                2,
                "acct-a",
                ClusterActivated {
                    cluster_id: "cluster-1".into(),
                },
            ),
            record(3, "acct-b", registered("cluster-1", "inst-9")),
            Record {
                seq: 4,
                subject: "pn.evt.acct-a.cluster.cluster-1.system.k3s.cluster.activated".into(),
                stored_at: chrono::Utc::now(),
                bytes: Bytes::from_static(b"not cbor"),
            },
        ]);
        assert_eq!(index.applied(), 4);
        let c = index.newest("acct-a", "cluster-1", None, 10, 20);
        assert_eq!((c.seqs, c.complete_from, c.applied), (vec![2, 1], 1, 4));
        assert_eq!(index.newest("acct-a", "inst-1", None, 10, 20).seqs, vec![1]);
        // Another account's events are its own.
        assert_eq!(
            index.newest("acct-b", "cluster-1", None, 10, 20).seqs,
            vec![3]
        );
        assert!(index
            .newest("acct-a", "inst-9", None, 10, 20)
            .seqs
            .is_empty());
        // Kind prefixes, bounds.
        let kind = <NodeRegistered as powernode_events::Payload>::KIND;
        assert_eq!(
            index.newest("acct-a", "cluster-1", Some(kind), 10, 20).seqs,
            vec![1]
        );
        assert_eq!(
            index.newest("acct-a", "cluster-1", None, 1, 20).seqs,
            vec![1]
        );
        assert_eq!(
            index.oldest("acct-a", "cluster-1", None, 2, 10, 20).seqs,
            vec![2]
        );
        // Folding the same records again changes nothing.
        index.fold(&[record(
            2,
            "acct-a",
            ClusterActivated {
                cluster_id: "cluster-1".into(),
            },
        )]);
        // cluster-1, inst-1 and the role `worker` (any id-shaped string),
        // cluster-1; in acct-b cluster-1, inst-9, worker.
        assert_eq!(index.size().entries, 7);
    }

    #[test]
    fn a_full_ring_drops_its_oldest_and_says_from_where_it_is_complete() {
        let index = EventIndex::default();
        let records: Vec<Record> = (1..=RING as u64 + 3)
            .map(|seq| {
                record(
                    seq,
                    "acct-a",
                    ClusterActivated {
                        cluster_id: "cluster-1".into(),
                    },
                )
            })
            .collect();
        index.fold(&records);
        let c = index.newest("acct-a", "cluster-1", None, u64::MAX, RING * 2);
        assert_eq!(c.seqs.len(), RING);
        assert_eq!(c.complete_from, 4);
        assert_eq!(c.seqs.last(), Some(&4));
        assert!(EventIndex::covers("cluster-1"));
        assert!(!EventIndex::covers("prod cluster"));
    }
}
