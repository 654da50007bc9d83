//! Approval requests nobody decided in time expire: a timer compares each
//! pending approval's `expires_at` with now and appends
//! `approval.expired` — once per approval, whichever replica sees it first
//! (the event id is derived from the approval id).

use chrono::Utc;
use powernode_events::payloads::approvals::ApprovalExpired;
use powernode_events::{AccountId, Actor, Envelope};
use powernode_log::{Expect, SharedLog};
use powernode_projections::FleetState;
use powernode_runtime::{derived_event_id, Shared};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Expires approval requests nobody decided in time, until `shutdown`.
pub async fn run_expiry(log: SharedLog, shared: Shared<FleetState>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = Utc::now();
        let due: Vec<(AccountId, String)> = {
            let state = shared.state.read().await;
            state
                .accounts()
                .flat_map(|(id, _)| {
                    state
                        .pending_approvals(id)
                        .into_iter()
                        .filter(|a| a.expires_at_utc().is_some_and(|t| t <= now))
                        .map(|a| (id.clone(), a.id.clone()))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        for (account, approval_id) in due {
            let mut event = Envelope::new(
                account,
                Actor::service("failover"),
                ApprovalExpired {
                    approval_id: approval_id.clone(),
                },
            );
            event.id = derived_event_id(EXPIRY_NAMESPACE, &approval_id);
            event.correlation_id = event.id;
            match log.append(&event, Expect::Any).await {
                Ok(_) => info!(%approval_id, "approval request expired"),
                Err(e) => warn!(error = %e, %approval_id, "could not record an expiry; retrying"),
            }
        }
    }
}

/// Namespace of expiry event ids (one expiry per approval, whichever replica).
const EXPIRY_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x0e1b_12ed_0000_4000_8000_6578_7069_7265);
