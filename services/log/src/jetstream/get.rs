//! Point reads by sequence: a direct get per record (served by any replica
//! holding the stream, without a consumer), asked concurrently; a record a
//! replica does not hold yet is asked of the stream leader.

use super::{nats_time, unavailable};
use crate::{LogError, Record};
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::{DirectGetErrorKind, LastRawMessageErrorKind, Stream};
use futures::stream::{self as fstream, StreamExt, TryStreamExt};

/// Point reads in flight at once.
const IN_FLIGHT: usize = 64;

/// The records at `seqs`, in that order; sequences the stream does not hold are left out.
pub(crate) async fn read_seqs(stream: &Stream<()>, seqs: &[u64]) -> Result<Vec<Record>, LogError> {
    let found: Vec<Option<Record>> = fstream::iter(seqs.iter().copied())
        .map(|seq| get(stream, seq))
        .buffered(IN_FLIGHT)
        .try_collect()
        .await?;
    Ok(found.into_iter().flatten().collect())
}

async fn get(stream: &Stream<()>, seq: u64) -> Result<Option<Record>, LogError> {
    let message = match stream.direct_get(seq).await {
        Ok(m) => m,
        Err(e) if matches!(e.kind(), DirectGetErrorKind::NotFound) => {
            match stream.get_raw_message(seq).await {
                Ok(m) => m,
                Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => {
                    return Ok(None)
                }
                Err(e) => return Err(unavailable("reading a record by sequence", e)),
            }
        }
        Err(e) => return Err(unavailable("reading a record by sequence", e)),
    };
    Ok(Some(record(message)))
}

fn record(m: StreamMessage) -> Record {
    Record {
        seq: m.sequence,
        subject: m.subject.to_string(),
        stored_at: nats_time(m.time),
        bytes: m.payload,
    }
}
