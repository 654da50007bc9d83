//! NATS NKey users for agents (and the rig's services): a seed file made
//! once, read on every start. The server's `authorization` block names the
//! public key and what that user may publish and subscribe to.

use std::io::Write;
use std::path::Path;

/// Why an NKey seed file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum NkeyError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The seed file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file holds something that is not a user seed.
    #[error("{path}: not an NKey user seed: {reason}")]
    BadSeed {
        /// The seed file.
        path: String,
        /// What the parser said.
        reason: String,
    },
}

/// Reads the user seed in `path`, creating a new one (mode 0600) when the
/// file does not exist; answers its public key (`U…`).
pub fn load_or_create(path: &Path) -> Result<String, NkeyError> {
    let file_err = |source| NkeyError::File {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let seed = text.trim();
            let pair = nkeys::KeyPair::from_seed(seed).map_err(|e| NkeyError::BadSeed {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            if !seed.starts_with("SU") {
                return Err(NkeyError::BadSeed {
                    path: path.display().to_string(),
                    reason: "a user seed starts with SU".into(),
                });
            }
            Ok(pair.public_key())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let pair = nkeys::KeyPair::new_user();
            let seed = pair.seed().map_err(|e| NkeyError::BadSeed {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            write_private(path, &seed).map_err(file_err)?;
            Ok(pair.public_key())
        }
        Err(e) => Err(file_err(e)),
    }
}

fn write_private(path: &Path, seed: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(seed.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_is_made_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/agent.nk");
        let first = load_or_create(&path).unwrap();
        assert!(first.starts_with('U'), "{first}");
        assert_eq!(load_or_create(&path).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn something_else_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.nk");
        std::fs::write(&path, "not a seed\n").unwrap();
        assert!(matches!(
            load_or_create(&path),
            Err(NkeyError::BadSeed { .. })
        ));
    }
}
