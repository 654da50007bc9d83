//! Approval requests nobody decided in time expire: a timer compares each
//! pending approval's `expires_at` with now and appends
//! `approval.expired` — once per approval, whichever replica sees it first
//! (the event id is derived from the approval id).

use chrono::{DateTime, Utc};
use powernode_events::payloads::approvals::ApprovalExpired;
use powernode_events::{AccountId, Actor, Envelope};
use powernode_log::{Expect, SharedLog};
use powernode_projections::FleetState;
use powernode_runtime::{derived_event_id, Shared};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The approval requests due to expire at `now`, as the events that expire
/// them.
pub fn due(state: &FleetState, now: DateTime<Utc>) -> Vec<Envelope> {
    let mut out = Vec::new();
    for (account, _) in state.accounts() {
        for approval in state.pending_approvals(account) {
            if approval.expires_at_utc().is_some_and(|t| t <= now) {
                out.push(expiry(account, &approval.id));
            }
        }
    }
    out
}

/// The event expiring `approval_id` (its id derived from the approval's).
fn expiry(account: &AccountId, approval_id: &str) -> Envelope {
    let mut event = Envelope::new(
        account.clone(),
        Actor::service("failover"),
        ApprovalExpired {
            approval_id: approval_id.to_string(),
        },
    );
    event.id = derived_event_id(EXPIRY_NAMESPACE, approval_id);
    event.correlation_id = event.id;
    event
}

/// Expires approval requests nobody decided in time, until `shutdown`,
/// reading the time from `clock` (the wall clock; tests pass one that
/// follows tokio's paused time).
pub async fn run_expiry(
    log: SharedLog,
    shared: Shared<FleetState>,
    clock: impl Fn() -> DateTime<Utc> + Send + 'static,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let events = due(&*shared.state.read().await, clock());
        for event in events {
            let approval_id = event.aggregate.id.clone();
            match log.append(&event, Expect::Any).await {
                Ok(_) => info!(%approval_id, "approval request expired"),
                Err(e) => warn!(error = %e, %approval_id, "could not record an expiry; retrying"),
            }
        }
    }
}

/// How often the timer looks.
const TICK: Duration = Duration::from_secs(1);

/// Namespace of expiry event ids (one expiry per approval, whichever replica).
const EXPIRY_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x0e1b_12ed_0000_4000_8000_6578_7069_7265);
