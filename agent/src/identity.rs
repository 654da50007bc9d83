//! The agent's ed25519 identity: created once, kept in a file readable only
//! by its owner, used to sign every event the agent reports.

use ed25519_dalek::SigningKey;
use powernode_events::{Envelope, SignatureError};
use rand::rngs::OsRng;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why the identity could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The key file could not be read or written.
    #[error("identity key {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file does not hold a 32-byte hex seed.
    #[error("identity key {path} is not a 64-character hex ed25519 seed")]
    Malformed {
        /// The key file.
        path: PathBuf,
    },
    /// Signing failed.
    #[error(transparent)]
    Sign(#[from] SignatureError),
}

/// An agent's identity key.
pub struct Identity {
    key: SigningKey,
}

impl Identity {
    /// Loads the key at `path`, creating it (mode 0600) if it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, IdentityError> {
        let io = |source| IdentityError::Io {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let seed: [u8; 32] = hex::decode(text.trim())
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| IdentityError::Malformed {
                        path: path.to_path_buf(),
                    })?;
                Ok(Self {
                    key: SigningKey::from_bytes(&seed),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = SigningKey::generate(&mut OsRng);
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                let mut f = opts.open(path).map_err(io)?;
                f.write_all(hex::encode(key.to_bytes()).as_bytes())
                    .map_err(io)?;
                f.sync_all().map_err(io)?;
                Ok(Self { key })
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The public key, hex-encoded (what enrollment registers).
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }

    /// The same key as a NATS NKey user seed (`SU…`): the agent connects
    /// to NATS with its identity, so the key it enrolled with is its NATS
    /// credential (the platform's auth callout admits it).
    pub fn nats_seed(&self) -> String {
        nkeys::KeyPair::new_from_raw(nkeys::KeyPairType::User, self.key.to_bytes())
            .and_then(|k| k.seed())
            .expect("an ed25519 seed is a valid NKey seed")
    }

    /// An identity that lives only in memory (in-process simulated agents).
    pub fn ephemeral() -> Self {
        Self {
            key: SigningKey::generate(&mut OsRng),
        }
    }

    /// Signs arbitrary bytes (heartbeats); hex of the 64-byte signature.
    pub fn sign_bytes(&self, bytes: &[u8]) -> String {
        use ed25519_dalek::Signer;
        hex::encode(self.key.sign(bytes).to_bytes())
    }

    /// Signs an event the agent reports.
    pub fn sign(&self, event: &mut Envelope) -> Result<(), IdentityError> {
        Ok(event.sign(&self.key)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use powernode_events::examples::{example_envelope, example_payloads};

    #[test]
    fn key_is_created_once_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent/identity.key");
        let a = Identity::load_or_create(&path).unwrap();
        let b = Identity::load_or_create(&path).unwrap();
        assert_eq!(a.public_key_hex(), b.public_key_hex());
        let mut e = example_envelope(example_payloads().remove(0));
        a.sign(&mut e).unwrap();
        e.verify(&b.key.verifying_key()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn garbage_key_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, "not hex").unwrap();
        let err = Identity::load_or_create(&path).err().unwrap();
        assert!(err.to_string().contains("not a 64-character hex"), "{err}");
    }
}
