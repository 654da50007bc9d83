//! The secret store: join tokens, kubeconfigs and agent enrollment secrets.
//!
//! Secrets never enter the event log (DESIGN.md §3): an event carries only a
//! reference to the secret (its [`SecretKey`]) and a [`fingerprint`] of it, and
//! the secret itself lives here, in a store that matches the log's backend:
//!
//! * [`jetstream::JetStreamSecrets`] — a JetStream KV bucket
//!   ([`jetstream::DEFAULT_BUCKET`], `history: 1`) when the log runs on NATS;
//! * [`embedded::EmbeddedSecrets`] — a sled database of its own (tree
//!   `secrets`, in `<data_dir>/secrets`, directory mode 0700) otherwise.
//!
//! [`open_for`] picks the one that matches the log.
//!
//! Both seal every value at rest with a key kept outside the data directory
//! (see [`seal`]): the raw bytes in sled or in the bucket's stream never hold
//! a secret, and a store opened with another key file cannot read them.
//!
//! A cluster's bootstrap secrets are write-once: [`SecretStore::create`]
//! stores a value only where there is none. A rotation replaces a value
//! only through [`SecretStore::update`], guarded by the [`Version`] it read.
//!
//! Values never appear in `Debug` output or in errors: keys and errors name
//! the key, never the value, and the stores print only where they keep data.

pub mod embedded;
pub mod jetstream;
pub mod seal;

use async_trait::async_trait;
use powernode_events::AccountId;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// `sha256:<hex>` of a secret's bytes: what events keep instead of the
/// secret. The one fingerprint function of the project (the API's token
/// fingerprints use it too), re-exported for secret-store callers.
pub use powernode_protocol::fingerprint;

/// Kind of the secret a K3s node joins its cluster with.
pub const KIND_JOIN_TOKEN: &str = "join_token";
/// Kind of a cluster's admin kubeconfig.
pub const KIND_KUBECONFIG: &str = "kubeconfig";
/// Kind of a cluster's CA (certificate and key, JSON), when its bootstrap
/// runtime made one the platform hands to joining servers.
pub const KIND_CLUSTER_CA: &str = "cluster_ca";
/// Kind of the credential an instance's agent enrolls with.
pub const KIND_ENROLLMENT: &str = "enrollment";

/// Longest kind or object part of a [`SecretKey`], in bytes.
pub const MAX_PART_LEN: usize = 128;

/// A shared handle to whichever secret store is in use.
pub type SharedSecrets = Arc<dyn SecretStore>;

/// A secret's name: `<kind>.<account>.<object>` — e.g.
/// `join_token.acme.cluster-0190…`. Not itself secret: events carry it as the
/// reference to the secret.
///
/// Every part is non-empty and made of `[-_=a-zA-Z0-9]` (the account part
/// also follows [`AccountId`]'s rules), so a key is always a valid JetStream
/// KV key (`[-_=a-zA-Z0-9.]`, no leading or trailing dot, no `..`) and always
/// splits back into its three parts. Constructors **validate, they never
/// sanitize**: an object id with any other character is refused with
/// [`SecretError::InvalidKey`], so two different ids can never map to the
/// same secret.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretKey(String);

impl SecretKey {
    /// `<kind>.<account>.<object>`, with `kind` and `object` checked.
    pub fn new(kind: &str, account: &AccountId, object: &str) -> Result<Self, SecretError> {
        check_part("kind", kind)?;
        check_part("object id", object)?;
        Ok(Self(format!("{kind}.{}.{object}", account.as_str())))
    }

    /// The join token of `cluster_id` in `account`.
    pub fn join_token(account: &AccountId, cluster_id: &str) -> Result<Self, SecretError> {
        Self::new(KIND_JOIN_TOKEN, account, cluster_id)
    }

    /// The kubeconfig of `cluster_id` in `account`.
    pub fn kubeconfig(account: &AccountId, cluster_id: &str) -> Result<Self, SecretError> {
        Self::new(KIND_KUBECONFIG, account, cluster_id)
    }

    /// The CA of `cluster_id` in `account`.
    pub fn cluster_ca(account: &AccountId, cluster_id: &str) -> Result<Self, SecretError> {
        Self::new(KIND_CLUSTER_CA, account, cluster_id)
    }

    /// The enrollment credential of the agent of `instance_id` in `account`.
    pub fn enrollment(account: &AccountId, instance_id: &str) -> Result<Self, SecretError> {
        Self::new(KIND_ENROLLMENT, account, instance_id)
    }

    /// Checks a key read back from elsewhere (an event's reference).
    pub fn parse(s: &str) -> Result<Self, SecretError> {
        let mut parts = s.splitn(3, '.');
        let (Some(kind), Some(account), Some(object)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(SecretError::InvalidKey(format!(
                "{s:?} is not <kind>.<account>.<object>"
            )));
        };
        let account =
            AccountId::new(account).map_err(|e| SecretError::InvalidKey(format!("{s:?}: {e}")))?;
        Self::new(kind, &account, object)
    }

    /// The key as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The kind part (`join_token`, `kubeconfig`, …).
    pub fn kind(&self) -> &str {
        self.parts().0
    }

    /// The account part.
    pub fn account(&self) -> &str {
        self.parts().1
    }

    /// The object part (a cluster or instance id).
    pub fn object(&self) -> &str {
        self.parts().2
    }

    fn parts(&self) -> (&str, &str, &str) {
        let mut parts = self.0.splitn(3, '.');
        let kind = parts.next().unwrap_or_default();
        let account = parts.next().unwrap_or_default();
        let object = parts.next().unwrap_or_default();
        (kind, account, object)
    }
}

impl fmt::Display for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Refuses a key part that is empty, too long or not `[-_=a-zA-Z0-9]`.
fn check_part(what: &str, part: &str) -> Result<(), SecretError> {
    let ok = !part.is_empty()
        && part.len() <= MAX_PART_LEN
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'='));
    if ok {
        Ok(())
    } else {
        Err(SecretError::InvalidKey(format!(
            "{what} {part:?} must be 1-{MAX_PART_LEN} characters of [-_=a-zA-Z0-9]"
        )))
    }
}

/// Why a secret-store call failed. Messages name keys and backends, never
/// a secret's value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The key (or a part of it) is not a valid secret key.
    #[error("invalid secret key: {0}")]
    InvalidKey(String),
    /// The store could not be reached or timed out; the call may be retried.
    #[error("secret store unavailable: {0}")]
    Unavailable(String),
    /// The store failed in a way retrying will not fix (local disk, bad
    /// bucket name or configuration).
    #[error("secret store error: {0}")]
    Storage(String),
    /// The secrets key file is missing, unreadable, in the wrong place or
    /// too widely readable.
    #[error("secrets key file: {0}")]
    KeyFile(String),
    /// A stored value does not open with this key file (names the key,
    /// never its bytes).
    #[error("secret cannot be decrypted: {0}")]
    Undecryptable(String),
    /// An [`SecretStore::update`] found another version than the one it
    /// was given (or no value): nothing was written.
    #[error("secret changed concurrently: {0}")]
    Conflict(String),
}

impl SecretError {
    /// True when retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// What [`SecretStore::create`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// There was no value; this one is stored now.
    Created,
    /// The same value was already stored (a retry): nothing was written.
    AlreadyEqual,
    /// A different value is stored: nothing was written.
    ExistsDifferent,
}

/// The version of a stored value, as [`SecretStore::get_versioned`] read
/// it: [`SecretStore::update`] writes only over that very version. Opaque
/// (a KV revision, or the sealed bytes sled compares).
#[derive(Clone, PartialEq, Eq)]
pub struct Version(VersionRepr);

#[derive(Clone, PartialEq, Eq)]
enum VersionRepr {
    Revision(u64),
    Sealed(Vec<u8>),
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            VersionRepr::Revision(r) => write!(f, "Version(revision {r})"),
            VersionRepr::Sealed(b) => write!(f, "Version({} sealed bytes)", b.len()),
        }
    }
}

/// Where secrets are kept. Every call is durable when it returns `Ok`.
/// Values are sealed at rest (see [`seal`]); a value that does not open is
/// [`SecretError::Undecryptable`].
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// Stores (or replaces) a secret; durable when it returns.
    async fn put(&self, key: &SecretKey, value: &[u8]) -> Result<(), SecretError>;
    /// Stores `value` only if `key` holds nothing (atomically: of two
    /// concurrent creates, one stores and the other sees its value).
    async fn create(&self, key: &SecretKey, value: &[u8]) -> Result<Created, SecretError>;
    /// The secret stored under `key`, or `None` if there is none.
    async fn get(&self, key: &SecretKey) -> Result<Option<Vec<u8>>, SecretError>;
    /// The secret and its version, or `None` if there is none.
    async fn get_versioned(
        &self,
        key: &SecretKey,
    ) -> Result<Option<(Vec<u8>, Version)>, SecretError>;
    /// Replaces the value of `key` only if it is still at `expected`;
    /// otherwise nothing is written and the answer is
    /// [`SecretError::Conflict`]. The new version on success.
    async fn update(
        &self,
        key: &SecretKey,
        value: &[u8],
        expected: &Version,
    ) -> Result<Version, SecretError>;
    /// Removes the secret (no error if there is none); durable when it
    /// returns, and the old value is not kept.
    async fn delete(&self, key: &SecretKey) -> Result<(), SecretError>;
    /// Which backend and where, for logs (never any value).
    fn describe(&self) -> String;
}

/// Opens the secret store that matches the log: the KV bucket
/// [`jetstream::DEFAULT_BUCKET`] with `replicas` on `nats` when the log runs
/// on JetStream (pass `JetStreamLog::client()`), else a sled store in
/// `<data_dir>/secrets`. Values are sealed with the key in `key_file`
/// (`None`: [`seal::resolve_key_file`]), created when absent and refused
/// when it lies inside `data_dir`.
pub async fn open_for(
    nats: Option<&async_nats::Client>,
    data_dir: &Path,
    replicas: usize,
    key_file: Option<&Path>,
) -> Result<SharedSecrets, SecretError> {
    let key_file = seal::resolve_key_file(key_file)?;
    let key = seal::SealingKey::load_or_create(&key_file, Some(data_dir))?;
    match nats {
        Some(client) => Ok(Arc::new(
            jetstream::JetStreamSecrets::open_with_key(
                client.clone(),
                jetstream::DEFAULT_BUCKET,
                replicas,
                key,
            )
            .await?,
        )),
        None => Ok(Arc::new(embedded::EmbeddedSecrets::open_with_key(
            &data_dir.join(embedded::DEFAULT_DIR),
            key,
        )?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acme() -> AccountId {
        AccountId::new("acme").unwrap()
    }

    #[test]
    fn keys_have_three_parts() {
        let k = SecretKey::join_token(&acme(), "cluster-0190ab").unwrap();
        assert_eq!(k.as_str(), "join_token.acme.cluster-0190ab");
        assert_eq!(
            (k.kind(), k.account(), k.object()),
            ("join_token", "acme", "cluster-0190ab")
        );
        assert_eq!(SecretKey::parse(k.as_str()).unwrap(), k);
        assert_eq!(
            SecretKey::kubeconfig(&acme(), "c1").unwrap().to_string(),
            "kubeconfig.acme.c1"
        );
    }

    #[test]
    fn bad_parts_are_refused_not_sanitized() {
        for bad in [
            "",
            "a.b",
            "a b",
            "a/b",
            "a*",
            "a>",
            "ü",
            "x".repeat(MAX_PART_LEN + 1).as_str(),
        ] {
            assert!(
                matches!(
                    SecretKey::join_token(&acme(), bad),
                    Err(SecretError::InvalidKey(_))
                ),
                "{bad:?}"
            );
        }
        for bad in ["", "a", "a.b", ".a.b", "a.b.", "a..b", "a.b.c.d", "a.b c.d"] {
            assert!(SecretKey::parse(bad).is_err(), "{bad:?}");
        }
    }
}
