//! The node's WireGuard key: an x25519 key made on the node on first start,
//! kept at `<state dir>/wireguard.key` (mode 0600, base64 as `wg genkey`
//! prints it, so `wg set … private-key <file>` reads it directly) and reused
//! after every restart. Only the public key ever leaves the node.

use powernode_events::wireguard::{decode_base64, encode_base64};
use std::io::Write;
use std::path::{Path, PathBuf};
use x25519_dalek::{PublicKey, StaticSecret};

/// The file name of the key inside the state dir.
pub const KEY_FILE: &str = "wireguard.key";

/// Why the key could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read or written.
    #[error("WireGuard key {path}: {source}")]
    Io {
        /// The key file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The file exists but does not hold base64 of 32 bytes.
    #[error("WireGuard key {0}: not base64 of a 32-byte x25519 key (remove it to make a new one)")]
    Malformed(String),
}

/// The node's WireGuard key pair (the private half stays in its file and in
/// memory; `Debug` shows the public key only).
#[derive(Clone)]
pub struct WireguardKey {
    path: PathBuf,
    public_key: String,
}

impl std::fmt::Debug for WireguardKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireguardKey")
            .field("path", &self.path)
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

impl WireguardKey {
    /// Loads the key from `<state_dir>/wireguard.key`, making it (mode
    /// 0600) when the file does not exist yet.
    pub fn load_or_create(state_dir: &Path) -> Result<Self, KeyError> {
        let path = state_dir.join(KEY_FILE);
        let io = |source| KeyError::Io {
            path: path.display().to_string(),
            source,
        };
        let secret = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let bytes: [u8; 32] = decode_base64(text.trim())
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| KeyError::Malformed(path.display().to_string()))?;
                StaticSecret::from(bytes)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let secret = StaticSecret::random();
                std::fs::create_dir_all(state_dir).map_err(io)?;
                write_private(&path, &encode_base64(secret.as_bytes())).map_err(io)?;
                secret
            }
            Err(e) => return Err(io(e)),
        };
        Ok(Self {
            public_key: encode_base64(PublicKey::from(&secret).as_bytes()),
            path,
        })
    }

    /// Base64 of the public key, as `wg pubkey` prints it.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// The private key's file (what `wg set … private-key` is given).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Writes `text` (and a newline) to `path` with mode 0600, atomically.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("key.tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
