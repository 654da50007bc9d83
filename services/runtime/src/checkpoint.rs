//! Checkpoints: a consumer's last applied sequence and its projection's
//! state, kept together in a sled directory of its own (never the event
//! log's).
//!
//! Two forms:
//!
//! * **incremental** (what the consumer runtime writes): the projection's
//!   entries ([`powernode_projections::Projection::take_changes`]), one sled
//!   value per entry under `name \0 key`, and the sequence under `name \0`.
//!   [`CheckpointStore::save_changes`] writes only the entries that changed,
//!   with the sequence, in one sled batch: a reader sees the old entries
//!   with the old sequence or the new ones with the new, never a mix. A
//!   checkpoint costs what changed since the last one, whatever the fleet's
//!   size.
//! * **whole** (older stores, and tools): one sled value,
//!   `seq (u64, big endian) | snapshot` ([`CheckpointStore::save`]). The
//!   runtime still reads one and replaces it by the incremental form.
//!
//! Writes flush before returning, so a saved checkpoint survives a crash.
//! Calls block on disk; async callers wrap them in `spawn_blocking`.

use std::path::{Path, PathBuf};

/// The sled tree whole checkpoints live in.
const TREE: &str = "checkpoints";
/// The sled tree incremental checkpoints' entries live in.
const ENTRIES: &str = "checkpoint-entries";
/// Bytes of the sequence prefix in a stored value.
const SEQ_LEN: usize = 8;

/// A consumer's saved position: everything up to and including `seq` is in
/// `snapshot`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The last log sequence folded into `snapshot`.
    pub seq: u64,
    /// The projection's snapshot ([`crate::Projection::snapshot`]).
    pub snapshot: Vec<u8>,
}

/// Why a checkpoint could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The directory could not be opened: locked by another process, not
    /// writable, or not a directory.
    #[error(
        "cannot open checkpoint store at {}: {source} \
         (is another process using this directory, or is it not writable?)",
        path.display()
    )]
    Open {
        /// The directory.
        path: PathBuf,
        /// What sled said.
        source: sled::Error,
    },
    /// Reading or writing failed after the store was open.
    #[error("checkpoint store at {} failed: {source}", path.display())]
    Storage {
        /// The directory.
        path: PathBuf,
        /// What sled said.
        source: sled::Error,
    },
    /// A stored checkpoint is too short to hold a sequence.
    #[error("checkpoint {name:?} in {} is corrupt: {reason}", path.display())]
    Corrupt {
        /// The directory.
        path: PathBuf,
        /// The checkpoint's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Named checkpoints in one sled directory. Cheap to clone; safe to share.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    path: PathBuf,
    db: sled::Db,
    tree: sled::Tree,
    entries: sled::Tree,
}

/// An incremental checkpoint as loaded: everything up to and including
/// `seq` is in `entries` (key order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryCheckpoint {
    /// The last log sequence folded into the entries.
    pub seq: u64,
    /// The projection's entries ([`powernode_projections::Projection::restore_entries`]).
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What one [`CheckpointStore::save_changes`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Entries put.
    pub puts: usize,
    /// Entries removed.
    pub removes: usize,
    /// Bytes of keys and values put.
    pub bytes: u64,
}

impl CheckpointStore {
    /// Opens (creating if needed) the store in directory `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, CheckpointError> {
        let path = path.as_ref().to_path_buf();
        let open_err = |source| CheckpointError::Open {
            path: path.clone(),
            source,
        };
        let db = powernode_log::sled_db::open(&path).map_err(open_err)?;
        let tree = db.open_tree(TREE).map_err(open_err)?;
        let entries = db.open_tree(ENTRIES).map_err(open_err)?;
        Ok(Self {
            path,
            db,
            tree,
            entries,
        })
    }

    /// The directory this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The checkpoint saved under `name`, if any.
    pub fn load(&self, name: &str) -> Result<Option<Checkpoint>, CheckpointError> {
        let Some(value) = self.tree.get(name).map_err(|e| self.storage(e))? else {
            return Ok(None);
        };
        if value.len() < SEQ_LEN {
            return Err(CheckpointError::Corrupt {
                path: self.path.clone(),
                name: name.to_string(),
                reason: format!("{} bytes, expected at least {SEQ_LEN}", value.len()),
            });
        }
        let (seq, snapshot) = value.split_at(SEQ_LEN);
        let mut seq_bytes = [0u8; SEQ_LEN];
        seq_bytes.copy_from_slice(seq);
        Ok(Some(Checkpoint {
            seq: u64::from_be_bytes(seq_bytes),
            snapshot: snapshot.to_vec(),
        }))
    }

    /// Saves `checkpoint` under `name`, replacing the previous one, and
    /// flushes to disk before returning.
    pub fn save(&self, name: &str, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        let mut value = Vec::with_capacity(SEQ_LEN + checkpoint.snapshot.len());
        value.extend_from_slice(&checkpoint.seq.to_be_bytes());
        value.extend_from_slice(&checkpoint.snapshot);
        self.tree.insert(name, value).map_err(|e| self.storage(e))?;
        self.db.flush().map_err(|e| self.storage(e))?;
        Ok(())
    }

    /// Deletes the checkpoint saved under `name`, in either form (a full
    /// replay follows).
    pub fn remove(&self, name: &str) -> Result<(), CheckpointError> {
        let mut batch = sled::Batch::default();
        for key in self.entries.scan_prefix(prefix(name)).keys() {
            batch.remove(key.map_err(|e| self.storage(e))?);
        }
        self.entries
            .apply_batch(batch)
            .map_err(|e| self.storage(e))?;
        self.tree.remove(name).map_err(|e| self.storage(e))?;
        self.db.flush().map_err(|e| self.storage(e))?;
        Ok(())
    }

    /// The names of all saved checkpoints (either form), in byte order.
    pub fn names(&self) -> Result<Vec<String>, CheckpointError> {
        let mut names = std::collections::BTreeSet::new();
        for k in self.tree.iter().keys() {
            let k = k.map_err(|e| self.storage(e))?;
            names.insert(String::from_utf8_lossy(&k).into_owned());
        }
        // The sequence key of each incremental checkpoint is `name \0`.
        for k in self.entries.iter().keys() {
            let k = k.map_err(|e| self.storage(e))?;
            if k.last() == Some(&0) && !k[..k.len() - 1].contains(&0) {
                names.insert(String::from_utf8_lossy(&k[..k.len() - 1]).into_owned());
            }
        }
        Ok(names.into_iter().collect())
    }

    /// The sequence of the checkpoint saved under `name`, in either form.
    pub fn saved_seq(&self, name: &str) -> Result<Option<u64>, CheckpointError> {
        if let Some(seq) = self
            .entries
            .get(prefix(name))
            .map_err(|e| self.storage(e))?
        {
            if let Ok(seq) = <[u8; SEQ_LEN]>::try_from(seq.as_ref()) {
                return Ok(Some(u64::from_be_bytes(seq)));
            }
        }
        Ok(self.load(name)?.map(|c| c.seq))
    }

    /// The incremental checkpoint saved under `name`, if any.
    pub fn load_entries(&self, name: &str) -> Result<Option<EntryCheckpoint>, CheckpointError> {
        let head = prefix(name);
        let Some(seq) = self.entries.get(&head).map_err(|e| self.storage(e))? else {
            return Ok(None);
        };
        let seq: [u8; SEQ_LEN] = seq
            .as_ref()
            .try_into()
            .map_err(|_| CheckpointError::Corrupt {
                path: self.path.clone(),
                name: name.to_string(),
                reason: format!("sequence of {} bytes, expected {SEQ_LEN}", seq.len()),
            })?;
        let mut entries = Vec::new();
        for kv in self.entries.scan_prefix(&head) {
            let (k, v) = kv.map_err(|e| self.storage(e))?;
            if k.len() > head.len() {
                entries.push((k[head.len()..].to_vec(), v.to_vec()));
            }
        }
        Ok(Some(EntryCheckpoint {
            seq: u64::from_be_bytes(seq),
            entries,
        }))
    }

    /// Saves an incremental checkpoint at `seq` under `name`: `changes`
    /// written over the stored entries (a `None` value removes one), or,
    /// when `replace`, instead of them (every stored entry not in `changes`
    /// goes, and so does a whole checkpoint of that name). One atomic batch,
    /// flushed before returning. An empty entry key is refused.
    pub fn save_changes(
        &self,
        name: &str,
        seq: u64,
        changes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
        replace: bool,
    ) -> Result<Written, CheckpointError> {
        let head = prefix(name);
        let mut batch = sled::Batch::default();
        if replace {
            // Removals first: a put below of the same key wins.
            for key in self.entries.scan_prefix(&head).keys() {
                batch.remove(key.map_err(|e| self.storage(e))?);
            }
        }
        let mut written = Written::default();
        for (key, value) in changes {
            if key.is_empty() {
                return Err(CheckpointError::Corrupt {
                    path: self.path.clone(),
                    name: name.to_string(),
                    reason: "a projection gave an entry with an empty key".into(),
                });
            }
            let mut full = Vec::with_capacity(head.len() + key.len());
            full.extend_from_slice(&head);
            full.extend_from_slice(&key);
            match value {
                Some(v) => {
                    written.puts += 1;
                    written.bytes += (full.len() + v.len()) as u64;
                    batch.insert(full, v);
                }
                None => {
                    written.removes += 1;
                    batch.remove(full);
                }
            }
        }
        batch.insert(head, &seq.to_be_bytes());
        self.entries
            .apply_batch(batch)
            .map_err(|e| self.storage(e))?;
        if replace {
            self.tree.remove(name).map_err(|e| self.storage(e))?;
        }
        self.db.flush().map_err(|e| self.storage(e))?;
        Ok(written)
    }

    /// Bytes of keys and values the incremental checkpoint `name` holds.
    pub fn entry_bytes(&self, name: &str) -> Result<u64, CheckpointError> {
        let mut total = 0u64;
        for kv in self.entries.scan_prefix(prefix(name)) {
            let (k, v) = kv.map_err(|e| self.storage(e))?;
            total += (k.len() + v.len()) as u64;
        }
        Ok(total)
    }

    /// The store's size on disk (sled's own count: its log, every tree).
    pub fn size_on_disk(&self) -> Result<u64, CheckpointError> {
        self.db.size_on_disk().map_err(|e| self.storage(e))
    }

    fn storage(&self, source: sled::Error) -> CheckpointError {
        CheckpointError::Storage {
            path: self.path.clone(),
            source,
        }
    }
}

/// Where `name`'s entries live: `name \0` (and its sequence, at that key).
fn prefix(name: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(name.len() + 1);
    p.extend_from_slice(name.as_bytes());
    p.push(0);
    p
}

/// Figures of one consumer's checkpoints in this process (for benches and
/// status): what each cost the loop and the disk.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckpointStats {
    /// Checkpoints saved.
    pub saved: u64,
    /// Of which wrote every entry (the first after a whole checkpoint or
    /// none).
    pub full: u64,
    /// Entries put and removed by the last one.
    pub last_entries: usize,
    /// Bytes the last one wrote.
    pub last_bytes: u64,
    /// Bytes all of them wrote.
    pub total_bytes: u64,
    /// The most recent stalls, ms: how long the loop waited while the
    /// changes were taken (at most [`STATS_KEPT`]).
    pub stall_ms: Vec<f64>,
    /// The most recent writes, ms: batch and flush, beside the loop.
    pub save_ms: Vec<f64>,
}

/// Samples kept per figure in [`CheckpointStats`].
pub const STATS_KEPT: usize = 4096;

static STATS: std::sync::Mutex<std::collections::BTreeMap<String, CheckpointStats>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Every consumer's checkpoint figures in this process, by consumer name
/// (consumers of the same name in one process add up).
pub fn stats() -> std::collections::BTreeMap<String, CheckpointStats> {
    STATS.lock().map(|s| s.clone()).unwrap_or_default()
}

/// Records one saved checkpoint of `name`.
pub(crate) fn record(name: &str, full: bool, written: Written, stall_ms: f64, save_ms: f64) {
    let Ok(mut all) = STATS.lock() else {
        return; // a panic elsewhere poisoned it; figures are best effort
    };
    let s = all.entry(name.to_string()).or_default();
    s.saved += 1;
    s.full += u64::from(full);
    s.last_entries = written.puts + written.removes;
    s.last_bytes = written.bytes;
    s.total_bytes += written.bytes;
    for (samples, v) in [(&mut s.stall_ms, stall_ms), (&mut s.save_ms, save_ms)] {
        if samples.len() == STATS_KEPT {
            samples.remove(0);
        }
        samples.push(v);
    }
}

static APPLIED: std::sync::Mutex<
    std::collections::BTreeMap<String, std::sync::Arc<std::sync::atomic::AtomicU64>>,
> = std::sync::Mutex::new(std::collections::BTreeMap::new());

/// The last sequence each consumer of this process applied, by name, as
/// its checkpointer last saw it (after every batch).
pub fn applied() -> std::collections::BTreeMap<String, u64> {
    APPLIED
        .lock()
        .map(|all| {
            all.iter()
                .map(|(k, v)| (k.clone(), v.load(std::sync::atomic::Ordering::Relaxed)))
                .collect()
        })
        .unwrap_or_default()
}

/// Where consumer `name` reports what it applied.
pub(crate) fn applied_handle(name: &str) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
    let mut all = APPLIED.lock().unwrap_or_else(|e| e.into_inner());
    all.entry(name.to_string()).or_default().clone()
}
