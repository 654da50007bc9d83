//! Range reads: an ephemeral, unacknowledged pull consumer from `from`,
//! fetched without waiting (`no_wait`) so a read stops at the stream's end
//! instead of waiting for more, then deleted.

use super::{nats_time, unavailable};
use crate::{Filter, LogError, Record};
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::stream::Stream;
use futures::StreamExt;
use std::time::Duration;
use tracing::debug;

/// Most messages one read asks the server for at a time.
const READ_PULL_MAX: usize = 1024;
/// How often a read asks again after a failed pull.
const READ_PULL_RETRIES: u32 = 5;
/// Idle time after which the server drops a read's ephemeral consumer
/// (reads delete theirs when done; this covers a crash mid-read).
const READ_CONSUMER_IDLE: Duration = Duration::from_secs(30);

/// Up to `limit` records with sequence `>= from` matching `filter`, in order.
pub(crate) async fn read(
    stream: &Stream<()>,
    from: u64,
    limit: usize,
    filter: &Filter,
) -> Result<Vec<Record>, LogError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let config = pull::Config {
        description: Some("powernode read".to_string()),
        filter_subject: filter.subject(),
        deliver_policy: DeliverPolicy::ByStartSequence {
            start_sequence: from.max(1),
        },
        ack_policy: AckPolicy::None,
        inactive_threshold: READ_CONSUMER_IDLE,
        memory_storage: true,
        num_replicas: 1,
        ..Default::default()
    };
    let consumer = stream
        .create_consumer(config)
        .await
        .map_err(|e| unavailable("reading", e))?;
    let result = read_with(&consumer, limit, filter).await;
    let name = consumer.cached_info().name.clone();
    let stream = stream.clone();
    // Detached on purpose: best-effort clean-up that must not delay the
    // read's answer; an ephemeral consumer left behind expires by itself.
    tokio::spawn(async move {
        if let Err(e) = stream.delete_consumer(&name).await {
            debug!(consumer = %name, error = %e, "read consumer not deleted; it expires");
        }
    });
    result
}

/// Reads with an ephemeral consumer (deleted afterwards).
async fn read_with(
    consumer: &PullConsumer,
    limit: usize,
    filter: &Filter,
) -> Result<Vec<Record>, LogError> {
    let mut out = Vec::new();
    if consumer.cached_info().num_pending == 0 {
        // On a cluster the create answer can report 0 pending before the
        // consumer has caught up with the stream: ask once more before
        // concluding the range is empty.
        let mut consumer = consumer.clone();
        let fresh = consumer
            .info()
            .await
            .map_err(|e| unavailable("reading", e))?;
        if fresh.num_pending == 0 {
            return Ok(out);
        }
    }
    let mut failures = 0;
    loop {
        let want = (limit - out.len()).min(READ_PULL_MAX);
        let mut batch = consumer
            .fetch()
            .max_messages(want)
            .messages()
            .await
            .map_err(|e| unavailable("reading", e))?;
        let mut got = 0;
        let mut at_end = false;
        let mut failed = None;
        while let Some(m) = batch.next().await {
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            got += 1;
            let info = m
                .info()
                .map_err(|e| LogError::Storage(format!("malformed delivery metadata: {e}")))?;
            let (seq, stored_at) = (info.stream_sequence, nats_time(info.published));
            at_end = info.pending == 0;
            let subject = m.subject.to_string();
            if filter.matches_subject(&subject) {
                out.push(Record {
                    seq,
                    subject,
                    stored_at,
                    bytes: m.payload.clone(),
                });
                if out.len() == limit {
                    return Ok(out);
                }
            }
        }
        if let Some(e) = failed {
            // A consumer just created on a cluster may not answer pulls
            // yet (503): what arrived is kept, the pull is asked again.
            failures += 1;
            if failures > READ_PULL_RETRIES {
                return Err(unavailable("reading", e));
            }
            debug!(error = %e, failures, "read pull failed; retrying");
            tokio::time::sleep(Duration::from_millis(25 * u64::from(failures))).await;
            continue;
        }
        if got == 0 || at_end {
            return Ok(out);
        }
        failures = 0;
    }
}
