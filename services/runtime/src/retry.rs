//! Running a reactor's effects and deferred work, retrying while it asks
//! to (and saying so in the consumer's status).

use super::{ConsumerConfig, Outbox, ReactError, Reactor, RuntimeError};
use powernode_events::Envelope;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info_span, warn, Instrument};

/// Performs the effects decided about the event at `seq` (the lock is
/// released), retrying while the reactor asks to; never folds or decides
/// the event again.
pub(super) async fn execute<S, R: Reactor<S>>(
    config: &ConsumerConfig,
    reactor: &mut R,
    seq: u64,
    event: &Envelope,
    mut effects: Vec<R::Effect>,
    outbox: &mut Outbox,
    shutdown: &CancellationToken,
) -> Result<(), RuntimeError> {
    let span = info_span!("effects", seq, event_id = %event.id, kind = event.kind());
    async {
        let what = format!("seq {seq}");
        loop {
            match reactor.execute(seq, &mut effects, outbox).await {
                Ok(()) => return Ok(()),
                Err(e) => pause_before_retry(config, &what, e, shutdown).await?,
            }
        }
    }
    .instrument(span)
    .await
}

/// Runs the reactor's deferred work of a batch, retrying while it asks to.
pub(super) async fn end_batch<S, R: Reactor<S>>(
    config: &ConsumerConfig,
    reactor: &mut R,
    applied: u64,
    shutdown: &CancellationToken,
) -> Result<(), RuntimeError> {
    let what = format!("the batch through seq {applied}");
    loop {
        match reactor.end_batch().await {
            Ok(()) => return Ok(()),
            Err(e) => pause_before_retry(config, &what, e, shutdown).await?,
        }
    }
}

/// After a failed reaction to `what`: pauses before the retry a `Retry`
/// asks for; stops on a `Fatal` one, or when shut down meanwhile — without
/// checkpointing past `what`, so it is tried again after a restart.
async fn pause_before_retry(
    config: &ConsumerConfig,
    what: &str,
    error: ReactError,
    shutdown: &CancellationToken,
) -> Result<(), RuntimeError> {
    let (name, status) = (&config.name, &config.status);
    let fatal = |reason: String| RuntimeError::Fatal {
        name: name.to_string(),
        reason,
    };
    match error {
        ReactError::Retry(reason) => {
            warn!(%reason, "reaction to {what} failed; retrying");
            status.retrying(&format!("reaction to {what}: {reason}"));
            tokio::select! {
                _ = shutdown.cancelled() => Err(fatal(format!("shut down while retrying {what}: {reason}"))),
                _ = tokio::time::sleep(Duration::from_millis(250)) => Ok(()),
            }
        }
        ReactError::Fatal(reason) => Err(fatal(format!("{what}: {reason}"))),
    }
}
