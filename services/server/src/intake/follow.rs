//! Heartbeats heard on NATS by every process that needs them (sensor and
//! failover replicas), not only those this process's intake answered.

use crate::liveness::SharedLiveness;
use futures::StreamExt;
use powernode_projections::FleetState;
use powernode_protocol::{subjects, Heartbeat};
use powernode_runtime::Shared;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Fills `liveness` from every heartbeat published on NATS until
/// `shutdown`, counting only beats whose signature verifies against the
/// enrolled key in `fleet` (a forged beat cannot keep a dead holder "alive").
pub async fn follow_heartbeats(
    client: async_nats::Client,
    fleet: Shared<FleetState>,
    liveness: SharedLiveness,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let shared = client.subscribe(subjects::HEARTBEAT).await?;
    let own = client.subscribe(subjects::HEARTBEAT_ANY).await?;
    let mut beats = futures::stream::select(shared, own);
    info!(
        "following agent heartbeats on {} and {}",
        subjects::HEARTBEAT,
        subjects::HEARTBEAT_ANY
    );
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            m = beats.next() => match m {
                Some(m) => m,
                None => {
                    warn!("heartbeat subscription ended");
                    return Ok(());
                }
            },
        };
        let Ok(hb) = serde_json::from_slice::<Heartbeat>(&msg.payload) else {
            debug!("ignoring a malformed heartbeat");
            continue;
        };
        let sender = subjects::instance_of(msg.subject.as_str(), subjects::HEARTBEAT);
        if sender.is_some_and(|s| s != hb.instance_id) {
            debug!(instance = %hb.instance_id, subject = %msg.subject, "ignoring a heartbeat on another instance's subject");
            continue;
        }
        if liveness.has_beat(&hb.instance_id, hb.sent_at_ms) {
            continue; // the intake of this process verified it already
        }
        let verified = {
            let state = fleet.state.read().await;
            super::verify_heartbeat(&state, &hb)
        };
        match verified {
            Ok(()) => liveness.record_heartbeat(&hb),
            Err(e) => debug!(instance = %hb.instance_id, code = %e.code, "heartbeat not counted"),
        }
    }
}
