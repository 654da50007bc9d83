//! Checkpoints: a consumer's last applied sequence and its projection's
//! snapshot, kept together in a sled directory of its own (never the event
//! log's).
//!
//! A checkpoint is one sled value, `seq (u64, big endian) | snapshot`, so the
//! sequence and the snapshot are always written together: a reader sees the
//! old pair or the new pair, never a mix. [`CheckpointStore::save`] flushes
//! before returning, so a saved checkpoint survives a crash. Calls block on
//! disk; async callers wrap them in `spawn_blocking` when that matters.

use std::path::{Path, PathBuf};

/// The sled tree checkpoints live in.
const TREE: &str = "checkpoints";
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
        Ok(Self { path, db, tree })
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

    /// Deletes the checkpoint saved under `name` (a full replay follows).
    pub fn remove(&self, name: &str) -> Result<(), CheckpointError> {
        self.tree.remove(name).map_err(|e| self.storage(e))?;
        self.db.flush().map_err(|e| self.storage(e))?;
        Ok(())
    }

    /// The names of all saved checkpoints, in byte order.
    pub fn names(&self) -> Result<Vec<String>, CheckpointError> {
        self.tree
            .iter()
            .keys()
            .map(|k| {
                k.map(|k| String::from_utf8_lossy(&k).into_owned())
                    .map_err(|e| self.storage(e))
            })
            .collect()
    }

    fn storage(&self, source: sled::Error) -> CheckpointError {
        CheckpointError::Storage {
            path: self.path.clone(),
            source,
        }
    }
}
