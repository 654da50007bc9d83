//! The JetStream secret store: a KV bucket ([`DEFAULT_BUCKET`]) next to the
//! event stream, on the same servers and client as the log.
//!
//! * The bucket keeps one value per key (`history: 1`) with the replicas
//!   asked for (3 on a 3-node cluster); it is created when missing and
//!   opened as it is otherwise, so any number of nodes can open it at once.
//! * **Put** waits for the server's ack: the secret is stored (and, with
//!   `sync_interval: always`, on disk) when it returns.
//! * **Get** reads from the bucket's stream leader, not with direct get
//!   (which any replica answers and may lag), so a secret just put is seen.
//! * **Delete** purges the key: the old value is removed from the stream,
//!   leaving only an empty purge marker.
//! * **Create** is the KV `create` (fails when the key holds a value);
//!   **update** is the KV `update` with the revision read.
//! * Every value is sealed with the store's [`SealingKey`]: the bucket's
//!   stream holds only ciphertext.

use super::seal::SealingKey;
use super::{Created, SecretError, SecretKey, SecretStore, Version, VersionRepr};
use async_nats::jetstream::kv::{self, CreateErrorKind, Store, UpdateErrorKind};
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::HeaderMap;
use async_trait::async_trait;
use bytes::Bytes;
use std::time::Duration;
use tracing::{debug, info};

/// The bucket holding every secret.
pub const DEFAULT_BUCKET: &str = "pn_secrets";
/// How long [`JetStreamSecrets::open`] keeps trying while JetStream is not
/// ready (a cluster still electing its leader).
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// The KV header naming a delete or purge marker.
const KV_OPERATION: &str = "KV-Operation";
/// The header the server puts on markers it writes itself (TTL, removal).
const MARKER_REASON: &str = "Nats-Marker-Reason";

/// A [`SecretStore`] in a JetStream KV bucket.
#[derive(Clone)]
pub struct JetStreamSecrets {
    store: Store,
    key: std::sync::Arc<SealingKey>,
    bucket: String,
    replicas: usize,
}

impl std::fmt::Debug for JetStreamSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamSecrets")
            .field("bucket", &self.bucket)
            .field("replicas", &self.replicas)
            .field("key_file", &self.key.path())
            .finish_non_exhaustive()
    }
}

impl JetStreamSecrets {
    /// [`Self::open_with_key`] with the key in `key_file` (created when
    /// absent).
    pub async fn open(
        client: async_nats::Client,
        bucket: &str,
        replicas: usize,
        key_file: &std::path::Path,
    ) -> Result<Self, SecretError> {
        let key = SealingKey::load_or_create(key_file, None)?;
        Self::open_with_key(client, bucket, replicas, key).await
    }

    /// Opens the KV bucket `bucket` on `client`, creating it (`history: 1`,
    /// `replicas`) if it does not exist, its values sealed with `key`. An
    /// existing bucket is used as it is. A bad bucket name fails at once
    /// with [`SecretError::Storage`]; anything else is retried for up to
    /// [`OPEN_TIMEOUT`] (JetStream not answering yet) and then reported as
    /// [`SecretError::Unavailable`].
    pub async fn open_with_key(
        client: async_nats::Client,
        bucket: &str,
        replicas: usize,
        key: SealingKey,
    ) -> Result<Self, SecretError> {
        if !is_valid_bucket_name(bucket) {
            return Err(SecretError::Storage(format!(
                "invalid KV bucket name {bucket:?}: must be [-_a-zA-Z0-9]+"
            )));
        }
        let js = async_nats::jetstream::new(client);
        let config = kv::Config {
            bucket: bucket.to_string(),
            description: "powernode secrets (never in the event log)".to_string(),
            history: 1,
            num_replicas: replicas.max(1),
            ..Default::default()
        };
        let deadline = tokio::time::Instant::now() + OPEN_TIMEOUT;
        let mut attempt: u32 = 0;
        let store = loop {
            match open_or_create(&js, &config).await {
                Ok(store) => break store,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    attempt += 1;
                    debug!(error = %e, attempt, bucket, "secret bucket not ready; retrying");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt.min(10))))
                        .await;
                }
                Err(e) => return Err(SecretError::Unavailable(e)),
            }
        };
        info!(bucket, replicas, "JetStream secret store ready");
        Ok(Self {
            store,
            key: std::sync::Arc::new(key),
            bucket: bucket.to_string(),
            replicas: replicas.max(1),
        })
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The underlying KV handle (for tools and tests that need raw access).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The raw (sealed) bytes of the last message stored under `key` —
    /// `None` when there is none or it is a delete marker — and its
    /// revision; for tools and tests.
    pub async fn raw(&self, key: &SecretKey) -> Result<Option<(Vec<u8>, u64)>, SecretError> {
        match self
            .store
            .stream
            .get_last_raw_message_by_subject(&self.subject(key))
            .await
        {
            Ok(message) if is_marker(&message.headers) => Ok(None),
            Ok(message) => Ok(Some((message.payload.to_vec(), message.sequence))),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(SecretError::Unavailable(format!(
                "reading {key} from bucket {}: {e}",
                self.bucket
            ))),
        }
    }

    /// Retries `op` while the bucket, just created, is not known yet to
    /// the server this client talks to (nothing was stored).
    async fn retry_new_bucket<T, E, F, Fut>(&self, key: &SecretKey, mut op: F) -> Result<T, E>
    where
        E: std::error::Error + 'static,
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let deadline = tokio::time::Instant::now() + NEW_BUCKET_GRACE;
        let mut attempt: u32 = 0;
        loop {
            match op().await {
                Err(e) if no_stream_yet(&e) && tokio::time::Instant::now() < deadline => {
                    attempt += 1;
                    debug!(%key, attempt, bucket = %self.bucket, "bucket not known to this server yet; retrying");
                    tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt.min(10))))
                        .await;
                }
                other => return other,
            }
        }
    }

    /// The stream subject a key's values are stored under.
    pub fn subject(&self, key: &SecretKey) -> String {
        format!("{}{}", self.store.prefix, key.as_str())
    }
}

/// Opens the bucket, or creates it; a creation lost to a concurrent opener
/// is answered by opening what the winner created.
async fn open_or_create(
    js: &async_nats::jetstream::Context,
    config: &kv::Config,
) -> Result<Store, String> {
    let bucket = config.bucket.as_str();
    let get_err = match js.get_key_value(bucket).await {
        Ok(store) => return Ok(store),
        Err(e) => e,
    };
    let create_err = match js.create_key_value(config.clone()).await {
        Ok(store) => return Ok(store),
        Err(e) => e,
    };
    js.get_key_value(bucket).await.map_err(|again| {
        format!(
            "cannot open or create KV bucket {bucket}: open: {get_err}; \
             create: {create_err}; open again: {again}"
        )
    })
}

/// The server's rule for bucket names.
fn is_valid_bucket_name(bucket: &str) -> bool {
    !bucket.is_empty()
        && bucket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// How long a put waits for a just-created bucket to be known cluster-wide.
const NEW_BUCKET_GRACE: Duration = Duration::from_secs(3);

/// The write found no stream for its subject: nothing was stored.
fn no_stream_yet(e: &(dyn std::error::Error + 'static)) -> bool {
    use async_nats::jetstream::context::{PublishError, PublishErrorKind};
    let mut source = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<PublishError>()
            .is_some_and(|p| p.kind() == PublishErrorKind::StreamNotFound)
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// An update refused because the key is at another revision (10071; and
/// 10164, which async-nats reports as `Other`).
fn wrong_revision(e: &kv::UpdateError) -> bool {
    e.kind() == UpdateErrorKind::WrongLastRevision || {
        let text = format!("{e:?}");
        text.contains("10071") || text.contains("10164")
    }
}

/// True when the stored message is a delete or purge marker, not a value.
fn is_marker(headers: &HeaderMap) -> bool {
    headers
        .get(KV_OPERATION)
        .is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"))
        || headers.get(MARKER_REASON).is_some()
}

#[async_trait]
impl SecretStore for JetStreamSecrets {
    /// A bucket just created on a cluster may not be known yet to the
    /// server this client talks to ("no stream found for given subject":
    /// nothing was stored): such a put is tried again for a short while.
    async fn put(&self, key: &SecretKey, value: &[u8]) -> Result<(), SecretError> {
        let sealed = Bytes::from(self.key.seal(key, value)?);
        self.retry_new_bucket(key, || self.store.put(key.as_str(), sealed.clone()))
            .await
            .map(|_| ())
            .map_err(|e| {
                SecretError::Unavailable(format!("storing {key} in bucket {}: {e}", self.bucket))
            })
    }

    async fn create(&self, key: &SecretKey, value: &[u8]) -> Result<Created, SecretError> {
        let sealed = Bytes::from(self.key.seal(key, value)?);
        match self
            .retry_new_bucket(key, || self.store.create(key.as_str(), sealed.clone()))
            .await
        {
            Ok(_) => Ok(Created::Created),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
                Ok(match self.get(key).await? {
                    Some(current) if current == value => Created::AlreadyEqual,
                    // Deleted between the create and the read: still not ours.
                    _ => Created::ExistsDifferent,
                })
            }
            Err(e) => Err(SecretError::Unavailable(format!(
                "creating {key} in bucket {}: {e}",
                self.bucket
            ))),
        }
    }

    async fn get(&self, key: &SecretKey) -> Result<Option<Vec<u8>>, SecretError> {
        Ok(self.get_versioned(key).await?.map(|(v, _)| v))
    }

    async fn get_versioned(
        &self,
        key: &SecretKey,
    ) -> Result<Option<(Vec<u8>, Version)>, SecretError> {
        match self.raw(key).await? {
            Some((sealed, revision)) => Ok(Some((
                self.key.open(key, &sealed)?,
                Version(VersionRepr::Revision(revision)),
            ))),
            None => Ok(None),
        }
    }

    async fn update(
        &self,
        key: &SecretKey,
        value: &[u8],
        expected: &Version,
    ) -> Result<Version, SecretError> {
        let VersionRepr::Revision(revision) = expected.0 else {
            return Err(SecretError::Conflict(format!(
                "{key}: {expected:?} is not a version of this store"
            )));
        };
        let sealed = Bytes::from(self.key.seal(key, value)?);
        match self
            .retry_new_bucket(key, || {
                self.store.update(key.as_str(), sealed.clone(), revision)
            })
            .await
        {
            Ok(new) => Ok(Version(VersionRepr::Revision(new))),
            Err(e) if wrong_revision(&e) => Err(SecretError::Conflict(format!(
                "{key} is no longer at revision {revision}"
            ))),
            Err(e) => Err(SecretError::Unavailable(format!(
                "updating {key} in bucket {}: {e}",
                self.bucket
            ))),
        }
    }

    async fn delete(&self, key: &SecretKey) -> Result<(), SecretError> {
        self.store.purge(key.as_str()).await.map_err(|e| {
            SecretError::Unavailable(format!("deleting {key} from bucket {}: {e}", self.bucket))
        })
    }

    fn describe(&self) -> String {
        format!(
            "JetStream KV secret store, bucket {} (replicas {}; sealed with the key in {})",
            self.bucket,
            self.replicas,
            self.key.path().display()
        )
    }
}
