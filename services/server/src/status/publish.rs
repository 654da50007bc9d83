//! Publishing this process's consumers' status, and collecting every
//! replica's (see the [module](super) notes).

use super::{subject_of, SharedBoard, REPORT_INTERVAL, SUBJECT_ANY};
use futures::StreamExt;
use powernode_log::SharedLog;
use powernode_runtime::status::StatusReport;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Reports this process's consumers every [`REPORT_INTERVAL`] and at each
/// state change: into `board`, and on NATS when `client` is given, until
/// `shutdown` (then once more, so a clean stop is seen).
pub async fn run_publisher(
    board: SharedBoard,
    log: SharedLog,
    client: Option<async_nats::Client>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let changed = board.changed();
    let mut tick = tokio::time::interval(REPORT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut head = 0;
    loop {
        let stopping = tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = tick.tick() => false,
            _ = changed.notified() => false,
        };
        if stopping {
            // Let the consumers write their last checkpoint and stop.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        match log.last_seq().await {
            Ok(h) => head = h,
            Err(e) => debug!(error = %e, "log head unknown; reporting the last one"),
        }
        for report in board.local_reports(head) {
            if let Some(client) = &client {
                publish(client, &report).await;
            }
            board.record(report);
        }
        if stopping {
            return Ok(());
        }
    }
}

async fn publish(client: &async_nats::Client, report: &StatusReport) {
    let subject = subject_of(&report.service, &report.replica);
    let body = match serde_json::to_vec(report) {
        Ok(b) => b,
        Err(e) => {
            warn!(error = %e, "cannot encode a status report");
            return;
        }
    };
    if let Err(e) = client.publish(subject, body.into()).await {
        debug!(error = %e, replica = %report.replica, "status not published");
    }
}

/// Keeps every replica's status published on NATS in `board`, until
/// `shutdown`.
pub async fn run_collector(
    board: SharedBoard,
    client: async_nats::Client,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut reports = client.subscribe(SUBJECT_ANY).await?;
    info!("collecting service status on {SUBJECT_ANY}");
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            m = reports.next() => match m {
                Some(m) => m,
                None => {
                    warn!("status subscription ended");
                    return Ok(());
                }
            },
        };
        match serde_json::from_slice::<StatusReport>(&msg.payload) {
            Ok(r) if msg.subject.as_str() == subject_of(&r.service, &r.replica) => board.record(r),
            Ok(_) => {
                debug!(subject = %msg.subject, "ignoring a status on another replica's subject")
            }
            Err(e) => debug!(error = %e, "ignoring a malformed status"),
        }
    }
}
