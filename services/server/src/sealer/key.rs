//! The platform's seal key: an ed25519 key made once and kept in a file
//! (32 raw bytes, mode 0600), by default `<data-dir>/keys/seal.key`. Its
//! public half is written beside it (`seal.pub`, hex) for verifiers, and
//! logged at start; the private half is never logged.

use anyhow::{bail, Context};
use powernode_events::{SigningKey, VerifyingKey};
use rand::RngCore as _;
use std::path::{Path, PathBuf};

/// The seal key file under a data directory.
pub fn default_key_file(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("seal.key")
}

/// The public key file beside a key file (`seal.pub`).
pub fn public_key_file(key_file: &Path) -> PathBuf {
    key_file.with_extension("pub")
}

/// The seal key, and where it came from.
pub struct SealKey {
    key: SigningKey,
    path: PathBuf,
}

impl std::fmt::Debug for SealKey {
    // Where the key is kept and its public half, never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealKey")
            .field("path", &self.path)
            .field("public", &self.public_hex())
            .finish_non_exhaustive()
    }
}

impl SealKey {
    /// Reads the key at `path`, creating it (0600, 32 random bytes, linked
    /// into place so concurrent first starts agree) when absent; refused
    /// when group or others may read it or it is not 32 bytes.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        if !path.exists() {
            create(path)?;
        }
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot read the seal key {}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                bail!(
                    "the seal key {} has mode {mode:03o}: group and others must have no access (chmod 600 {})",
                    path.display(),
                    path.display()
                );
            }
        }
        let _ = meta;
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read the seal key {}", path.display()))?;
        let seed: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            anyhow::anyhow!(
                "the seal key {} holds {} bytes, not 32",
                path.display(),
                b.len()
            )
        })?;
        let key = SigningKey::from_bytes(&seed);
        let public = public_key_file(path);
        let hex_pub = hex::encode(key.verifying_key().as_bytes());
        if std::fs::read_to_string(&public)
            .map(|s| s.trim().to_string())
            .ok()
            .as_deref()
            != Some(hex_pub.as_str())
        {
            std::fs::write(&public, format!("{hex_pub}\n"))
                .with_context(|| format!("cannot write {}", public.display()))?;
        }
        Ok(Self {
            key,
            path: path.to_path_buf(),
        })
    }

    /// A key held in memory (tests, benchmarks).
    pub fn from_signing_key(key: SigningKey) -> Self {
        Self {
            key,
            path: PathBuf::new(),
        }
    }

    /// The signing key.
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// The public half verifiers pin.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The public half, hex.
    pub fn public_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    /// Where the key is kept.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn create(path: &Path) -> anyhow::Result<()> {
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
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let linked = crate::secrets::seal::create_secret_file_once(dir, path, &seed);
    linked.with_context(|| format!("cannot create the seal key {}", path.display()))?;
    tracing::info!(path = %path.display(), "created a new log seal key");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_0600_and_its_public_half_beside_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = default_key_file(dir.path());
        let a = SealKey::load_or_create(&path).expect("created");
        let b = SealKey::load_or_create(&path).expect("read back");
        assert_eq!(a.public_hex(), b.public_hex());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            let e = SealKey::load_or_create(&path).expect_err("refused");
            assert!(e.to_string().contains("chmod 600"), "{e}");
        }
        let public = std::fs::read_to_string(public_key_file(&path)).expect("pub");
        assert_eq!(public.trim(), a.public_hex());
        assert!(!format!("{a:?}").contains(&hex::encode(a.signing_key().to_bytes())));
    }
}
