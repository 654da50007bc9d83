//! The agent's side of VIP failover: apply each reply's VIP duties through
//! the runtime driver, report what is held in every (signed) heartbeat, and
//! wake up early when the platform nudges.

use super::{Agent, AgentError};
use crate::identity::Identity;
use crate::vips::{self, VipAction};
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use powernode_protocol::{Heartbeat, HeldVip, VipDuty};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

impl Agent {
    /// Applies one reply's VIP duties ([`vips::plan`]): each hold or release
    /// goes through the driver and is recorded only when the driver did it
    /// (a failure is logged and retried with the next reply: a failed hold
    /// is not reported as held, a failed release still is). The state is
    /// saved when anything changed.
    pub(super) async fn apply_vip_duties(&mut self, duties: &[VipDuty]) -> Result<(), AgentError> {
        let before = self.state.vips.clone();
        let held_before = self.held_vips();
        let actions = vips::plan(&mut self.state.vips, duties, &self.vips_applied);
        for action in actions {
            let result = match &action {
                VipAction::Hold {
                    vip, generation, ..
                } => {
                    let (vip, generation) = (vip.clone(), *generation);
                    self.with_runtime(move |rt| rt.hold_vip(&vip, generation))
                        .await
                }
                VipAction::Release { vip, .. } => {
                    let vip = vip.clone();
                    self.with_runtime(move |rt| rt.release_vip(&vip)).await
                }
            };
            match (result, &action) {
                (Ok(()), VipAction::Hold { virtual_ip_id, .. }) => {
                    self.vips_applied.insert(virtual_ip_id.clone());
                    vips::record(&mut self.state.vips, &action);
                    info!(instance = %self.instance_id(), %virtual_ip_id, "{action}");
                }
                (Ok(()), VipAction::Release { virtual_ip_id, .. }) => {
                    self.vips_applied.remove(virtual_ip_id);
                    vips::record(&mut self.state.vips, &action);
                    info!(instance = %self.instance_id(), %virtual_ip_id, "{action}");
                }
                (Err(e), _) => {
                    warn!(instance = %self.instance_id(), error = %e, "could not apply: {action}; retrying with the next heartbeat");
                }
            }
        }
        if self.held_vips() != held_before {
            self.vips_changed = true;
        }
        if self.state.vips != before {
            self.store.save(&self.state)?;
        }
        Ok(())
    }
}

/// A heartbeat from `instance_id` reporting `held_vips`, signed over
/// [`Heartbeat::bytes_to_sign`] now.
pub(super) fn signed_heartbeat(
    identity: &Identity,
    instance_id: &str,
    held_vips: Vec<HeldVip>,
    after_seq: Option<u64>,
) -> Heartbeat {
    let mut beat = Heartbeat {
        instance_id: instance_id.to_owned(),
        sent_at_ms: chrono::Utc::now().timestamp_millis(),
        held_vips,
        after_seq,
        wireguard_applied: Vec::new(),
        vip_probes: Vec::new(),
        signature: String::new(),
    };
    beat.signature = identity.sign_bytes(&beat.bytes_to_sign());
    beat
}

/// Waits `wait`, or until a nudge; `None` on shutdown, else the highest log
/// sequence the nudges named (0 without nudges). Nudges already queued when
/// the wait ends are consumed too: the reconcile that follows answers them
/// all. A nudge stream that ends leaves the interval only.
pub(super) async fn wait(
    wait: Duration,
    nudges: &mut Option<BoxStream<'static, u64>>,
    shutdown: &CancellationToken,
) -> Option<u64> {
    let mut seq = 0;
    let nudged = async {
        match nudges.as_mut() {
            Some(stream) => stream.next().await,
            None => std::future::pending().await,
        }
    };
    let mut ended = tokio::select! {
        _ = shutdown.cancelled() => return None,
        _ = tokio::time::sleep(wait) => false,
        n = nudged => match n {
            Some(s) => { seq = seq.max(s); false }
            None => true,
        },
    };
    let Some(stream) = nudges.as_mut() else {
        return Some(seq);
    };
    while !ended {
        match stream.next().now_or_never() {
            Some(Some(s)) => seq = seq.max(s),
            Some(None) => ended = true,
            None => break,
        }
    }
    if ended {
        warn!("the nudge subscription ended; heartbeats on the interval only");
        *nudges = None;
    }
    Some(seq)
}
