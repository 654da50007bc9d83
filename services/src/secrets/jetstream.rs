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

use super::{SecretError, SecretKey, SecretStore};
use async_nats::jetstream::kv::{self, Store};
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
    bucket: String,
    replicas: usize,
}

impl std::fmt::Debug for JetStreamSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamSecrets")
            .field("bucket", &self.bucket)
            .field("replicas", &self.replicas)
            .finish_non_exhaustive()
    }
}

impl JetStreamSecrets {
    /// Opens the KV bucket `bucket` on `client`, creating it (`history: 1`,
    /// `replicas`) if it does not exist. An existing bucket is used as it is.
    /// A bad bucket name fails at once with [`SecretError::Storage`];
    /// anything else is retried for up to [`OPEN_TIMEOUT`] (JetStream not
    /// answering yet) and then reported as [`SecretError::Unavailable`].
    pub async fn open(
        client: async_nats::Client,
        bucket: &str,
        replicas: usize,
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

/// The put found no stream for its subject: nothing was stored.
fn no_stream_yet(e: &kv::PutError) -> bool {
    use async_nats::jetstream::context::{PublishError, PublishErrorKind};
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<PublishError>())
        .is_some_and(|p| p.kind() == PublishErrorKind::StreamNotFound)
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
        let value = Bytes::copy_from_slice(value);
        let deadline = tokio::time::Instant::now() + NEW_BUCKET_GRACE;
        let mut attempt: u32 = 0;
        loop {
            match self.store.put(key.as_str(), value.clone()).await {
                Ok(_) => return Ok(()),
                Err(e) if no_stream_yet(&e) && tokio::time::Instant::now() < deadline => {
                    attempt += 1;
                    debug!(%key, attempt, bucket = %self.bucket, "bucket not known to this server yet; retrying");
                    tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt.min(10))))
                        .await;
                }
                Err(e) => {
                    return Err(SecretError::Unavailable(format!(
                        "storing {key} in bucket {}: {e}",
                        self.bucket
                    )))
                }
            }
        }
    }

    async fn get(&self, key: &SecretKey) -> Result<Option<Vec<u8>>, SecretError> {
        match self
            .store
            .stream
            .get_last_raw_message_by_subject(&self.subject(key))
            .await
        {
            Ok(message) if is_marker(&message.headers) => Ok(None),
            Ok(message) => Ok(Some(message.payload.to_vec())),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(SecretError::Unavailable(format!(
                "reading {key} from bucket {}: {e}",
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
            "JetStream KV secret store, bucket {} (replicas {})",
            self.bucket, self.replicas
        )
    }
}
