//! The embedded secret store: a sled database of its own, for `powernode up`
//! without a NATS server.
//!
//! The database lives in its own directory (by convention
//! `<data_dir>/secrets`, see [`DEFAULT_DIR`]), never inside the event log's,
//! so exporting or copying the log never carries a secret. The directory is
//! created with mode 0700 on unix (and tightened to 0700 if it exists). Secrets
//! are kept in the tree [`TREE`]; every put and delete is flushed to disk
//! before it returns.

use super::{SecretError, SecretKey, SecretStore};
use async_trait::async_trait;
use std::path::{Path, PathBuf};

/// The directory under a node's data directory that holds the store.
pub const DEFAULT_DIR: &str = "secrets";
/// The sled tree holding the secrets.
pub const TREE: &str = "secrets";

/// A [`SecretStore`] in a sled database of its own.
pub struct EmbeddedSecrets {
    path: PathBuf,
    tree: sled::Tree,
    /// Keeps the database open while the store is held.
    _db: sled::Db,
}

impl std::fmt::Debug for EmbeddedSecrets {
    // Only where the store is: sled's own Debug could show contents.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedSecrets")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl EmbeddedSecrets {
    /// Opens (creating if needed) the store in `dir`. Waits out a lock a
    /// just-dropped handle in this process is still releasing (see
    /// [`powernode_projections::sled_db::open`]); fails with
    /// [`SecretError::Storage`] if another process holds the database.
    pub fn open(dir: &Path) -> Result<Self, SecretError> {
        create_private_dir(dir)?;
        let db = powernode_projections::sled_db::open(dir).map_err(|e| {
            storage(
                &format!("opening the sled database at {}", dir.display()),
                e,
            )
        })?;
        let tree = db
            .open_tree(TREE)
            .map_err(|e| storage(&format!("opening tree {TREE}"), e))?;
        Ok(Self {
            path: dir.to_path_buf(),
            tree,
            _db: db,
        })
    }

    /// The directory the store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn flush(&self, what: &str, key: &SecretKey) -> Result<(), SecretError> {
        self.tree
            .flush_async()
            .await
            .map(|_| ())
            .map_err(|e| storage(&format!("flushing {what} of {key}"), e))
    }
}

#[async_trait]
impl SecretStore for EmbeddedSecrets {
    async fn put(&self, key: &SecretKey, value: &[u8]) -> Result<(), SecretError> {
        self.tree
            .insert(key.as_str(), value)
            .map_err(|e| storage(&format!("storing {key}"), e))?;
        self.flush("the put", key).await
    }

    async fn get(&self, key: &SecretKey) -> Result<Option<Vec<u8>>, SecretError> {
        self.tree
            .get(key.as_str())
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| storage(&format!("reading {key}"), e))
    }

    async fn delete(&self, key: &SecretKey) -> Result<(), SecretError> {
        self.tree
            .remove(key.as_str())
            .map_err(|e| storage(&format!("deleting {key}"), e))?;
        self.flush("the delete", key).await
    }

    fn describe(&self) -> String {
        format!("embedded sled secret store at {}", self.path.display())
    }
}

/// Creates `dir` (and its parents) and makes it readable by its owner only.
fn create_private_dir(dir: &Path) -> Result<(), SecretError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
        builder.mode(0o700);
        builder
            .create(dir)
            .map_err(|e| storage(&format!("creating {}", dir.display()), e))?;
        // `mode` only applies to directories it creates: tighten an existing one.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| storage(&format!("restricting {} to 0700", dir.display()), e))
    }
    #[cfg(not(unix))]
    {
        builder
            .create(dir)
            .map_err(|e| storage(&format!("creating {}", dir.display()), e))
    }
}

/// A [`SecretError::Storage`] naming what was being done.
fn storage(doing: &str, e: impl std::fmt::Display) -> SecretError {
    SecretError::Storage(format!("{doing}: {e}"))
}
