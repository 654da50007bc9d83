//! The embedded secret store: a sled database of its own, for `powernode up`
//! without a NATS server.
//!
//! The database lives in its own directory (by convention
//! `<data_dir>/secrets`, see [`DEFAULT_DIR`]), never inside the event log's,
//! so exporting or copying the log never carries a secret. The directory is
//! created with mode 0700 on unix (and tightened to 0700 if it exists). Secrets
//! are kept in the tree [`TREE`], sealed with the store's [`SealingKey`];
//! every write is flushed to disk before it returns. Create-if-absent and
//! guarded updates are sled compare-and-swaps on the sealed bytes (a fresh
//! nonce per write makes those bytes a unique version).

use super::seal::SealingKey;
use super::{Created, SecretError, SecretKey, SecretStore, Version, VersionRepr};
use async_trait::async_trait;
use std::path::{Path, PathBuf};

/// The directory under a node's data directory that holds the store.
pub const DEFAULT_DIR: &str = "secrets";
/// The sled tree holding the secrets.
pub const TREE: &str = "secrets";

/// A [`SecretStore`] in a sled database of its own.
pub struct EmbeddedSecrets {
    path: PathBuf,
    key: SealingKey,
    tree: sled::Tree,
    /// Keeps the database open while the store is held.
    _db: sled::Db,
    /// One flush at a time: sled 0.34 runs `flush_async` on its small
    /// process-wide thread pool, and enough concurrent flushes occupy every
    /// thread waiting for a write that needs one — every sled database of
    /// the process then hangs (50 concurrent puts did).
    flushing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for EmbeddedSecrets {
    // Only where the store is: sled's own Debug could show contents.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedSecrets")
            .field("path", &self.path)
            .field("key_file", &self.key.path())
            .finish_non_exhaustive()
    }
}

impl EmbeddedSecrets {
    /// Opens (creating if needed) the store in `dir`, its values sealed
    /// with the key in `key_file` (created when absent; refused inside
    /// `dir`). See [`Self::open_with_key`].
    pub fn open(dir: &Path, key_file: &Path) -> Result<Self, SecretError> {
        Self::open_with_key(dir, SealingKey::load_or_create(key_file, Some(dir))?)
    }

    /// Opens (creating if needed) the store in `dir`, sealing with `key`.
    /// Waits out a lock a just-dropped handle in this process is still
    /// releasing (see [`powernode_log::sled_db::open`]); fails with
    /// [`SecretError::Storage`] if another process holds the database.
    pub fn open_with_key(dir: &Path, key: SealingKey) -> Result<Self, SecretError> {
        create_private_dir(dir)?;
        let db = powernode_log::sled_db::open(dir).map_err(|e| {
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
            key,
            tree,
            _db: db,
            flushing: tokio::sync::Mutex::new(()),
        })
    }

    /// The directory the store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw (sealed) bytes stored under `key`, for tools and tests.
    pub fn raw(&self, key: &SecretKey) -> Result<Option<Vec<u8>>, SecretError> {
        self.tree
            .get(key.as_str())
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| storage(&format!("reading {key}"), e))
    }

    async fn flush(&self, what: &str, key: &SecretKey) -> Result<(), SecretError> {
        let _one = self.flushing.lock().await;
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
        let sealed = self.key.seal(key, value)?;
        self.tree
            .insert(key.as_str(), sealed)
            .map_err(|e| storage(&format!("storing {key}"), e))?;
        self.flush("the put", key).await
    }

    async fn create(&self, key: &SecretKey, value: &[u8]) -> Result<Created, SecretError> {
        let sealed = self.key.seal(key, value)?;
        let swapped = self
            .tree
            .compare_and_swap(key.as_str(), None::<&[u8]>, Some(sealed))
            .map_err(|e| storage(&format!("creating {key}"), e))?;
        match swapped {
            Ok(()) => {
                self.flush("the create", key).await?;
                Ok(Created::Created)
            }
            Err(sled::CompareAndSwapError { current, .. }) => {
                let current = current.map(|c| self.key.open(key, &c)).transpose()?;
                Ok(match current {
                    Some(c) if c == value => Created::AlreadyEqual,
                    _ => Created::ExistsDifferent,
                })
            }
        }
    }

    async fn get(&self, key: &SecretKey) -> Result<Option<Vec<u8>>, SecretError> {
        Ok(self.get_versioned(key).await?.map(|(v, _)| v))
    }

    async fn get_versioned(
        &self,
        key: &SecretKey,
    ) -> Result<Option<(Vec<u8>, Version)>, SecretError> {
        match self.raw(key)? {
            Some(sealed) => {
                let value = self.key.open(key, &sealed)?;
                Ok(Some((value, Version(VersionRepr::Sealed(sealed)))))
            }
            None => Ok(None),
        }
    }

    async fn update(
        &self,
        key: &SecretKey,
        value: &[u8],
        expected: &Version,
    ) -> Result<Version, SecretError> {
        let VersionRepr::Sealed(old) = &expected.0 else {
            return Err(SecretError::Conflict(format!(
                "{key}: {expected:?} is not a version of this store"
            )));
        };
        let sealed = self.key.seal(key, value)?;
        let swapped = self
            .tree
            .compare_and_swap(key.as_str(), Some(old.as_slice()), Some(sealed.as_slice()))
            .map_err(|e| storage(&format!("updating {key}"), e))?;
        match swapped {
            Ok(()) => {
                self.flush("the update", key).await?;
                Ok(Version(VersionRepr::Sealed(sealed)))
            }
            Err(_) => Err(SecretError::Conflict(format!(
                "{key} is no longer at the version read"
            ))),
        }
    }

    async fn delete(&self, key: &SecretKey) -> Result<(), SecretError> {
        self.tree
            .remove(key.as_str())
            .map_err(|e| storage(&format!("deleting {key}"), e))?;
        self.flush("the delete", key).await
    }

    fn describe(&self) -> String {
        format!(
            "embedded sled secret store at {} (sealed with the key in {})",
            self.path.display(),
            self.key.path().display()
        )
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
