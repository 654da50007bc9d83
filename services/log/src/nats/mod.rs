//! How the platform's processes reach NATS: their credentials
//! ([`PlatformCreds`]) and the connect options ([`connect`]). Who else may
//! connect, and how, is the server's auth callout
//! (`powernode_server::natsauth`).

pub mod connect;

use std::path::{Path, PathBuf};

/// The NATS account (server config) the platform and its agents live in.
pub const PLATFORM_ACCOUNT: &str = "PN";

/// Why credentials could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CredsError {
    /// The file could not be read.
    #[error("cannot read the NATS credentials {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds no usable key.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The platform's NATS credentials: the NKey user its services connect as
/// and, for the process that runs the auth callout (the API), the account
/// key that signs agents' grants.
#[derive(Clone)]
pub struct PlatformCreds {
    /// The user seed (`SU…`).
    pub user_seed: String,
    /// The callout issuer's account seed (`SA…`), when this file has it.
    pub issuer_seed: Option<String>,
}

impl std::fmt::Debug for PlatformCreds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformCreds")
            .field("user", &self.user_public_key())
            .field("issuer", &self.issuer().map(|k| k.public_key()))
            .finish()
    }
}

const USER_BEGIN: &str = "-----BEGIN USER NKEY SEED-----";
const USER_END: &str = "------END USER NKEY SEED------";
const ISSUER_BEGIN: &str = "-----BEGIN POWERNODE AUTH CALLOUT ISSUER SEED-----";
const ISSUER_END: &str = "------END POWERNODE AUTH CALLOUT ISSUER SEED------";

impl PlatformCreds {
    /// New random keys.
    pub fn generate() -> Self {
        Self {
            user_seed: nkeys::KeyPair::new_user()
                .seed()
                .expect("a new key has a seed"),
            issuer_seed: Some(
                nkeys::KeyPair::new_account()
                    .seed()
                    .expect("a new key has a seed"),
            ),
        }
    }

    /// Reads a credentials file: the one `powernode nats init` writes, or a
    /// bare NKey seed file (`SU…`).
    pub fn read(path: &Path) -> Result<Self, CredsError> {
        let text = std::fs::read_to_string(path).map_err(|source| CredsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|reason| CredsError::Invalid {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses the text of a credentials file.
    pub fn parse(text: &str) -> Result<Self, String> {
        let lines = || text.lines().map(str::trim);
        let user_seed = lines()
            .find(|l| l.starts_with("SU"))
            .ok_or("no NKey user seed (a line starting with SU)")?
            .to_string();
        nkeys::KeyPair::from_seed(&user_seed).map_err(|e| format!("the user seed: {e}"))?;
        let issuer_seed = lines().find(|l| l.starts_with("SA")).map(str::to_string);
        if let Some(seed) = &issuer_seed {
            nkeys::KeyPair::from_seed(seed).map_err(|e| format!("the issuer seed: {e}"))?;
        }
        Ok(Self {
            user_seed,
            issuer_seed,
        })
    }

    /// The text [`Self::read`] reads back.
    pub fn to_file_text(&self) -> String {
        let mut out = format!(
            "# powernode's NATS credentials (made by `powernode nats init`): secret, keep 0600.\n\
             # The user the platform's services connect as:\n{USER_BEGIN}\n{}\n{USER_END}\n",
            self.user_seed
        );
        if let Some(seed) = &self.issuer_seed {
            out.push_str(&format!(
                "# The account key that signs agents' grants (only the API process, which runs the auth callout, needs it):\n\
                 {ISSUER_BEGIN}\n{seed}\n{ISSUER_END}\n"
            ));
        }
        out
    }

    /// The same credentials without the issuer key (for services other
    /// than the API).
    pub fn without_issuer(&self) -> Self {
        Self {
            issuer_seed: None,
            ..self.clone()
        }
    }

    /// The user's public key (`U…`).
    pub fn user_public_key(&self) -> String {
        nkeys::KeyPair::from_seed(&self.user_seed)
            .map(|k| k.public_key())
            .unwrap_or_default()
    }

    /// The callout issuer's key pair, when present.
    pub fn issuer(&self) -> Option<nkeys::KeyPair> {
        nkeys::KeyPair::from_seed(self.issuer_seed.as_deref()?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_round_trip_and_can_drop_the_issuer() {
        let c = PlatformCreds::generate();
        let back = PlatformCreds::parse(&c.to_file_text()).unwrap();
        assert_eq!(back.user_seed, c.user_seed);
        assert_eq!(back.issuer_seed, c.issuer_seed);
        let plain = PlatformCreds::parse(&c.without_issuer().to_file_text()).unwrap();
        assert!(plain.issuer_seed.is_none());
        assert!(PlatformCreds::parse("nothing here")
            .unwrap_err()
            .contains("no NKey user seed"));
        let bare = PlatformCreds::parse(&format!("{}\n", c.user_seed)).unwrap();
        assert_eq!(bare.user_public_key(), c.user_public_key());
        assert!(!format!("{c:?}").contains(&c.user_seed));
    }
}
