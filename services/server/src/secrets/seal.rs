//! Encryption of secrets at rest.
//!
//! Every value either store keeps is sealed with XChaCha20-Poly1305 under a
//! 32-byte key read from a key file kept **outside** the data directory
//! (`--secrets-key-file`, env [`ENV_KEY_FILE`], default
//! `$XDG_CONFIG_HOME/powernode/secrets.key` or
//! `~/.config/powernode/secrets.key`). A fresh random nonce is drawn for
//! every value, and the secret's key name is the associated data, so a
//! value copied under another key does not open.
//!
//! Sealed layout: `[VERSION][24-byte nonce][ciphertext + 16-byte tag]`.
//!
//! The key file is created (mode 0600, 32 random bytes, published
//! atomically so concurrent first starts agree on one key) when absent. It
//! is refused when it lies inside the data directory, has any group or
//! other permission bits, or is not exactly 32 bytes.

use super::{SecretError, SecretKey};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore as _;
use std::path::{Path, PathBuf};

/// The environment variable naming the key file.
pub const ENV_KEY_FILE: &str = "POWERNODE_SECRETS_KEY_FILE";
/// Length of the key in the key file, in bytes.
pub const KEY_LEN: usize = 32;
/// First byte of every sealed value (the format's version).
pub const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// The key secrets are sealed with, and where it came from.
pub struct SealingKey {
    cipher: XChaCha20Poly1305,
    path: PathBuf,
}

impl std::fmt::Debug for SealingKey {
    // Only where the key is kept, never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealingKey")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SealingKey {
    /// Reads the key file at `path`, creating it (0600, 32 random bytes)
    /// when it does not exist. Refused when it is inside `data_dir` (if
    /// given), readable or writable by group or others, or not 32 bytes.
    pub fn load_or_create(path: &Path, data_dir: Option<&Path>) -> Result<Self, SecretError> {
        if let Some(data_dir) = data_dir {
            refuse_inside(path, data_dir)?;
        }
        if !path.exists() {
            create_key_file(path)?;
        }
        let bytes = read_key_file(path)?;
        Ok(Self {
            cipher: XChaCha20Poly1305::new((&bytes).into()),
            path: path.to_path_buf(),
        })
    }

    /// The key file this key was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `value` sealed for `key` (a fresh random nonce each call).
    pub fn seal(&self, key: &SecretKey, value: &[u8]) -> Result<Vec<u8>, SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: value,
                    aad: key.as_str().as_bytes(),
                },
            )
            .map_err(|_| SecretError::Storage(format!("cannot seal {key}")))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens what [`Self::seal`] made for `key`. Anything else — another
    /// key file, a value stored under another key, tampered or plaintext
    /// bytes — is [`SecretError::Undecryptable`] naming the key.
    pub fn open(&self, key: &SecretKey, sealed: &[u8]) -> Result<Vec<u8>, SecretError> {
        let undecryptable = || {
            SecretError::Undecryptable(format!(
                "{key} does not open with the key in {} (another --secrets-key-file, a value \
                 copied from another key, or tampered bytes)",
                self.path.display()
            ))
        };
        if sealed.len() < 1 + NONCE_LEN + TAG_LEN || sealed[0] != VERSION {
            return Err(undecryptable());
        }
        let (nonce, body) = sealed[1..].split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: key.as_str().as_bytes(),
                },
            )
            .map_err(|_| undecryptable())
    }
}

/// The key file to use: `explicit`, else [`ENV_KEY_FILE`], else
/// `$XDG_CONFIG_HOME/powernode/secrets.key`, else
/// `$HOME/.config/powernode/secrets.key`.
pub fn resolve_key_file(explicit: Option<&Path>) -> Result<PathBuf, SecretError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let non_empty = |v: &str| std::env::var_os(v).filter(|s| !s.is_empty());
    if let Some(p) = non_empty(ENV_KEY_FILE) {
        return Ok(PathBuf::from(p));
    }
    if let Some(xdg) = non_empty("XDG_CONFIG_HOME") {
        return Ok(PathBuf::from(xdg).join("powernode").join("secrets.key"));
    }
    if let Some(home) = non_empty("HOME") {
        return Ok(PathBuf::from(home)
            .join(".config")
            .join("powernode")
            .join("secrets.key"));
    }
    Err(SecretError::KeyFile(format!(
        "no secrets key file: pass --secrets-key-file or set {ENV_KEY_FILE} (neither \
         XDG_CONFIG_HOME nor HOME is set)"
    )))
}

/// `path` made absolute with its existing ancestors' symlinks resolved.
fn absolute(path: &Path) -> PathBuf {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    // Canonicalize the longest prefix that exists; keep the rest as is.
    let mut existing = path.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = existing.canonicalize() {
            return normalize(&rest.iter().rev().fold(c, |acc, part| acc.join(part)));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return path,
        }
    }
}

/// `.` and `..` removed lexically (for the part of a path that does not exist).
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn refuse_inside(key_file: &Path, data_dir: &Path) -> Result<(), SecretError> {
    let (key_abs, data_abs) = (absolute(key_file), absolute(data_dir));
    if key_abs.starts_with(&data_abs) {
        return Err(SecretError::KeyFile(format!(
            "the secrets key file {} is inside the data directory {}: keep it elsewhere \
             (--secrets-key-file / {ENV_KEY_FILE}), so a copy of the data directory does not \
             carry the key that opens its secrets",
            key_file.display(),
            data_dir.display()
        )));
    }
    Ok(())
}

fn key_file_error(path: &Path, doing: &str, e: impl std::fmt::Display) -> SecretError {
    SecretError::KeyFile(format!(
        "{doing} the secrets key file {}: {e}",
        path.display()
    ))
}

/// Creates `path` (in `dir`) holding `bytes`, readable by its owner only
/// (0600), exactly once: written to a temporary file, synced, then
/// hard-linked into place, so a reader never sees a partial file and, of
/// two processes racing, the first one's file stays (the other's link
/// finds it there, which is not an error). Shared by the secrets key and
/// the log seal key.
pub(crate) fn create_secret_file_once(
    dir: &Path,
    path: &Path,
    bytes: &[u8],
) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "key".into()),
        std::process::id(),
        rand::rngs::OsRng.next_u64()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    let linked = written.and_then(|()| match std::fs::hard_link(&tmp, path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    });
    let _ = std::fs::remove_file(&tmp);
    linked
}

/// Writes 32 random bytes, mode 0600, to a temp file beside `path`, then
/// links it into place: a concurrent creator's key wins if it got there
/// first, and no reader ever sees a partial file.
fn create_key_file(path: &Path) -> Result<(), SecretError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| key_file_error(path, "creating the directory of", e))?;
    let mut key = [0u8; KEY_LEN];
    rand::rngs::OsRng.fill_bytes(&mut key);
    let linked = create_secret_file_once(dir, path, &key);
    linked.map_err(|e| key_file_error(path, "creating", e))?;
    tracing::info!(path = %path.display(), "created a new secrets key file");
    Ok(())
}

fn read_key_file(path: &Path) -> Result<[u8; KEY_LEN], SecretError> {
    let meta = std::fs::metadata(path).map_err(|e| key_file_error(path, "reading", e))?;
    if !meta.is_file() {
        return Err(key_file_error(path, "reading", "not a regular file"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SecretError::KeyFile(format!(
                "the secrets key file {} has mode {mode:03o}: group and others must have no \
                 access (chmod 600 {})",
                path.display(),
                path.display()
            )));
        }
    }
    let bytes = std::fs::read(path).map_err(|e| key_file_error(path, "reading", e))?;
    bytes.as_slice().try_into().map_err(|_| {
        SecretError::KeyFile(format!(
            "the secrets key file {} holds {} bytes; it must hold exactly {KEY_LEN}",
            path.display(),
            bytes.len()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use powernode_events::AccountId;

    fn key(object: &str) -> SecretKey {
        SecretKey::join_token(&AccountId::new("acme").unwrap(), object).unwrap()
    }

    #[test]
    fn sealed_values_open_only_under_their_key_and_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = SealingKey::load_or_create(&dir.path().join("a.key"), None).unwrap();
        let b = SealingKey::load_or_create(&dir.path().join("b.key"), None).unwrap();
        let sealed = a.seal(&key("c1"), b"plain-secret-value").unwrap();
        assert!(!sealed
            .windows(b"plain-secret-value".len())
            .any(|w| w == b"plain-secret-value"));
        assert_eq!(a.open(&key("c1"), &sealed).unwrap(), b"plain-secret-value");
        assert_ne!(sealed, a.seal(&key("c1"), b"plain-secret-value").unwrap());
        for e in [
            a.open(&key("c2"), &sealed).unwrap_err(),
            b.open(&key("c1"), &sealed).unwrap_err(),
            a.open(&key("c1"), b"plain-secret-value").unwrap_err(),
        ] {
            let msg = e.to_string();
            assert!(matches!(e, SecretError::Undecryptable(_)), "{msg}");
            assert!(!msg.contains("plain-secret-value"), "{msg}");
        }
        // The same file read again is the same key.
        let a2 = SealingKey::load_or_create(&dir.path().join("a.key"), None).unwrap();
        assert_eq!(a2.open(&key("c1"), &sealed).unwrap(), b"plain-secret-value");
    }

    #[cfg(unix)]
    #[test]
    fn key_files_are_private_and_outside_the_data_dir() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conf").join("secrets.key");
        SealingKey::load_or_create(&path, None).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), KEY_LEN as u64);

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = SealingKey::load_or_create(&path, None).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");

        let data = dir.path().join("data");
        let inside = data.join("sub").join("secrets.key");
        let e = SealingKey::load_or_create(&inside, Some(&data)).unwrap_err();
        assert!(e.to_string().contains("inside the data directory"), "{e}");
        assert!(!inside.exists(), "a refused key file is not created");
        // Relative spellings of the same place are caught too.
        let sneaky = data.join("..").join("data").join("k.key");
        assert!(SealingKey::load_or_create(&sneaky, Some(&data)).is_err());
    }
}
