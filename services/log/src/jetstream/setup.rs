//! Stream set-up: created at start-up if missing, updated in place when the
//! settings this build wants differ from what the server has.

use super::{unavailable, JetStreamConfig};
use crate::LogError;
use async_nats::jetstream::{self, context::GetStreamErrorKind};
use tracing::{debug, info, warn};

/// "Stream not found".
const ERR_STREAM_NOT_FOUND: u64 = 10059;

/// Creates the stream, or updates what differs from the wanted settings.
pub(crate) async fn ensure_stream(
    js: &jetstream::Context,
    config: &JetStreamConfig,
) -> Result<(), LogError> {
    let wanted = config.stream_config();
    let mut last_error = None;
    // Two processes may race to create it: look again after a failed create.
    for _ in 0..3 {
        match js.get_stream(&config.stream).await {
            Ok(existing) => {
                let current = existing.cached_info().config.clone();
                let mut updated = current.clone();
                updated.subjects = wanted.subjects.clone();
                updated.num_replicas = wanted.num_replicas;
                updated.duplicate_window = wanted.duplicate_window;
                updated.allow_direct = true;
                updated.allow_atomic_publish = true;
                if current.storage != wanted.storage {
                    warn!(stream = %config.stream, storage = ?current.storage,
                        "event stream is not on file storage; storage cannot be changed in place");
                }
                if updated != current {
                    js.update_stream(&updated)
                        .await
                        .map_err(|e| unavailable("updating the event stream", e))?;
                    info!(stream = %config.stream, "event stream settings updated");
                }
                return Ok(());
            }
            Err(e) if stream_missing(&e) => match js.create_stream(wanted.clone()).await {
                Ok(_) => {
                    info!(stream = %config.stream, replicas = wanted.num_replicas, "event stream created");
                    return Ok(());
                }
                Err(e) => {
                    debug!(error = %e, "creating the event stream failed; looking again");
                    last_error = Some(e.to_string());
                }
            },
            Err(e) => return Err(unavailable("reading the event stream", e)),
        }
    }
    Err(LogError::Unavailable(format!(
        "cannot create the event stream {}: {}",
        config.stream,
        last_error.unwrap_or_default()
    )))
}

fn stream_missing(e: &jetstream::context::GetStreamError) -> bool {
    matches!(e.kind(), GetStreamErrorKind::JetStream(ref j) if j.error_code().0 == ERR_STREAM_NOT_FOUND)
}
