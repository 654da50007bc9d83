//! The sled layout of the embedded log and the synchronous reads over it.
//!
//! Trees (all names start with [`RESERVED_PREFIX`]):
//!
//! * `pn.log.events` — seq (u64 big-endian) → record: format byte, stored time
//!   (i64 big-endian Unix nanoseconds), subject length (u16 big-endian),
//!   subject, canonical envelope bytes;
//! * `pn.log.ids` — event id (16 bytes) → seq, for idempotent appends;
//! * `pn.log.aggregates` — `<account>.<aggregate type>.<aggregate id>` → seq of
//!   the aggregate's last event, for the optimistic-concurrency guard;
//! * `pn.log.cursors` — durable cursor name → last acknowledged seq.
//!
//! Stored times never decrease along the sequence (the writer clamps them), so
//! "first record at or after t" is a binary search over sequences.

use crate::{Filter, LogError, Record};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use powernode_events::{AccountId, AggregateRef};
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// Tree names with this prefix belong to the log; [`super::EmbeddedLog::open_tree`] refuses them.
pub const RESERVED_PREFIX: &str = "pn.log.";
const EVENTS_TREE: &str = "pn.log.events";
const IDS_TREE: &str = "pn.log.ids";
const AGGREGATES_TREE: &str = "pn.log.aggregates";
const CURSORS_TREE: &str = "pn.log.cursors";

/// Version byte in front of every stored record.
const RECORD_FORMAT: u8 = 1;
/// Format byte + stored time + subject length.
const RECORD_HEADER: usize = 1 + 8 + 2;

/// The key of a sequence in the events tree (big-endian, so keys sort by seq).
pub fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// Reads a big-endian u64 value or key.
fn read_u64(bytes: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(bytes).ok().map(u64::from_be_bytes)
}

/// The guard key of an aggregate: `<account>.<aggregate type>.<aggregate id>`.
pub fn aggregate_key(account: &AccountId, aggregate: &AggregateRef) -> String {
    format!("{account}.{}.{}", aggregate.kind.as_str(), aggregate.id)
}

/// Unix nanoseconds of a time, saturating outside chrono's i64 range.
pub fn to_nanos(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(if t.timestamp() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}

/// Builds the stored form of a record.
pub fn encode_record(
    stored_at_nanos: i64,
    subject: &str,
    bytes: &[u8],
) -> Result<Vec<u8>, LogError> {
    let subject_len = u16::try_from(subject.len())
        .map_err(|_| LogError::Invalid(format!("subject is too long ({} bytes)", subject.len())))?;
    let mut out = Vec::with_capacity(RECORD_HEADER + subject.len() + bytes.len());
    out.push(RECORD_FORMAT);
    out.extend_from_slice(&stored_at_nanos.to_be_bytes());
    out.extend_from_slice(&subject_len.to_be_bytes());
    out.extend_from_slice(subject.as_bytes());
    out.extend_from_slice(bytes);
    Ok(out)
}

/// A stored record, borrowed from the tree's value.
struct StoredRecord<'a> {
    stored_at_nanos: i64,
    subject: &'a str,
    bytes: &'a [u8],
}

impl<'a> StoredRecord<'a> {
    fn decode(seq: u64, value: &'a [u8]) -> Result<Self, LogError> {
        let corrupt =
            |why: &str| LogError::Storage(format!("embedded log record {seq} is corrupt: {why}"));
        if value.len() < RECORD_HEADER {
            return Err(corrupt("shorter than its header"));
        }
        if value[0] != RECORD_FORMAT {
            return Err(corrupt(&format!("unknown record format {}", value[0])));
        }
        let mut nanos = [0u8; 8];
        nanos.copy_from_slice(&value[1..9]);
        let subject_len = usize::from(u16::from_be_bytes([value[9], value[10]]));
        let rest = &value[RECORD_HEADER..];
        if rest.len() < subject_len {
            return Err(corrupt("subject runs past the end"));
        }
        let (subject, bytes) = rest.split_at(subject_len);
        let subject = std::str::from_utf8(subject).map_err(|_| corrupt("subject is not UTF-8"))?;
        Ok(Self {
            stored_at_nanos: i64::from_be_bytes(nanos),
            subject,
            bytes,
        })
    }

    fn to_record(&self, seq: u64) -> Record {
        Record {
            seq,
            subject: self.subject.to_string(),
            stored_at: DateTime::from_timestamp_nanos(self.stored_at_nanos),
            bytes: Bytes::copy_from_slice(self.bytes),
        }
    }
}

/// Maps a sled error to a storage error with context.
pub fn storage(what: &'static str) -> impl Fn(sled::Error) -> LogError {
    move |e| LogError::Storage(format!("embedded log: {what}: {e}"))
}

/// The open sled database and the log's trees.
pub struct Store {
    /// The database (flushes cover every tree).
    pub db: sled::Db,
    /// seq → record.
    pub events: sled::Tree,
    /// event id → seq.
    pub ids: sled::Tree,
    /// aggregate key → last seq.
    pub aggregates: sled::Tree,
    /// cursor name → acked seq.
    pub cursors: sled::Tree,
    /// The directory.
    pub path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the log in `dir`. Fails with a storage
    /// error naming the path when another process holds it.
    pub fn open(dir: &Path) -> Result<Self, LogError> {
        let db = open_db(dir)?;
        let tree = |name: &'static str| db.open_tree(name).map_err(storage(name));
        Ok(Self {
            events: tree(EVENTS_TREE)?,
            ids: tree(IDS_TREE)?,
            aggregates: tree(AGGREGATES_TREE)?,
            cursors: tree(CURSORS_TREE)?,
            db,
            path: dir.to_path_buf(),
        })
    }

    /// The last record's seq and stored time, if any.
    pub fn last_record(&self) -> Result<Option<(u64, i64)>, LogError> {
        let Some((k, v)) = self
            .events
            .last()
            .map_err(storage("reading the last record"))?
        else {
            return Ok(None);
        };
        let seq = read_u64(&k)
            .ok_or_else(|| LogError::Storage("embedded log: malformed sequence key".into()))?;
        let rec = StoredRecord::decode(seq, &v)?;
        Ok(Some((seq, rec.stored_at_nanos)))
    }

    /// Up to `limit` records matching `filter` with `from <= seq <= to`, and
    /// the sequence to continue scanning from.
    pub fn scan(
        &self,
        from: u64,
        to: u64,
        limit: usize,
        filter: &Filter,
    ) -> Result<(Vec<Record>, u64), LogError> {
        let from = from.max(1);
        let mut out = Vec::new();
        if from > to || limit == 0 {
            return Ok((out, from));
        }
        for item in self.events.range(seq_key(from)..=seq_key(to)) {
            let (k, v) = item.map_err(storage("reading records"))?;
            let seq = read_u64(&k)
                .ok_or_else(|| LogError::Storage("embedded log: malformed sequence key".into()))?;
            let rec = StoredRecord::decode(seq, &v)?;
            if filter.matches_subject(rec.subject) {
                out.push(rec.to_record(seq));
                if out.len() >= limit {
                    return Ok((out, seq + 1));
                }
            }
        }
        Ok((out, to + 1))
    }

    /// The stored time of record `seq`.
    fn stored_at(&self, seq: u64) -> Result<i64, LogError> {
        let v = self
            .events
            .get(seq_key(seq))
            .map_err(storage("reading a record"))?
            .ok_or_else(|| {
                LogError::Storage(format!(
                    "embedded log: record {seq} is missing (gap in the log)"
                ))
            })?;
        Ok(StoredRecord::decode(seq, &v)?.stored_at_nanos)
    }

    /// The first seq in `1..=last` stored at or after `t`, or `last + 1`.
    /// Binary search: stored times never decrease along the sequence.
    pub fn first_seq_at_or_after(&self, t: DateTime<Utc>, last: u64) -> Result<u64, LogError> {
        let t = to_nanos(t);
        let (mut lo, mut hi) = (1u64, last + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.stored_at(mid)? >= t {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Ok(lo)
    }

    /// The subject of record `seq` (to check a duplicate id against what is stored).
    pub fn subject_at(&self, seq: u64) -> Result<String, LogError> {
        let v = self
            .events
            .get(seq_key(seq))
            .map_err(storage("reading a record"))?
            .ok_or_else(|| {
                LogError::Storage(format!(
                    "embedded log: record {seq} named by the id index is missing"
                ))
            })?;
        Ok(StoredRecord::decode(seq, &v)?.subject.to_string())
    }

    /// The seq of the event with this id, if stored.
    pub fn seq_of_event(&self, id: &Uuid) -> Result<Option<u64>, LogError> {
        self.read_seq(&self.ids, id.as_bytes(), "reading the event id index")
    }

    /// The seq of the aggregate's last event, if any.
    pub fn aggregate_seq(&self, key: &str) -> Result<Option<u64>, LogError> {
        self.read_seq(
            &self.aggregates,
            key.as_bytes(),
            "reading the aggregate index",
        )
    }

    /// The acknowledged seq of a durable cursor, if it exists.
    pub fn cursor(&self, name: &str) -> Result<Option<u64>, LogError> {
        self.read_seq(&self.cursors, name.as_bytes(), "reading a durable cursor")
    }

    fn read_seq(
        &self,
        tree: &sled::Tree,
        key: &[u8],
        what: &'static str,
    ) -> Result<Option<u64>, LogError> {
        match tree.get(key).map_err(storage(what))? {
            None => Ok(None),
            Some(v) => read_u64(&v)
                .map(Some)
                .ok_or_else(|| LogError::Storage(format!("embedded log: {what}: malformed value"))),
        }
    }

    /// Makes every write so far durable.
    pub async fn flush(&self) -> Result<(), LogError> {
        self.db
            .flush_async()
            .await
            .map_err(storage("flushing to disk"))?;
        Ok(())
    }
}

/// Opens the sled database, waiting out a lock that a just-dropped handle in
/// this process is still releasing.
fn open_db(dir: &Path) -> Result<sled::Db, LogError> {
    crate::sled_db::open(dir).map_err(|e| {
        if crate::sled_db::is_lock_error(&e) {
            LogError::Storage(format!(
                "embedded log at {} is locked: another process (or another open \
                 handle in this one) is using it ({e})",
                dir.display()
            ))
        } else {
            LogError::Storage(format!(
                "cannot open embedded log at {}: {e}",
                dir.display()
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_corruption_is_an_error() {
        let v = encode_record(-5, "pn.evt.a.b.c.k", b"payload").unwrap();
        let r = StoredRecord::decode(7, &v).unwrap();
        assert_eq!(
            (r.stored_at_nanos, r.subject, r.bytes),
            (-5, "pn.evt.a.b.c.k", &b"payload"[..])
        );
        assert!(StoredRecord::decode(7, &v[..5]).is_err());
        let mut bad = v.clone();
        bad[10] = 200;
        assert!(StoredRecord::decode(7, &bad).is_err());
        bad = v;
        bad[0] = 9;
        assert!(StoredRecord::decode(7, &bad).is_err());
    }
}
