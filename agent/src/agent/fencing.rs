//! The agent's side of VIP failover: apply each reply's VIP duties through
//! the runtime driver, report what is held in every (signed) heartbeat, and
//! wake up early when the platform nudges.

use super::{Agent, AgentError};
use crate::identity::Identity;
use crate::vips::{self, VipAction};
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use powernode_protocol::{AgentReport, AppliedConfig, Heartbeat, HeldVip, VipDuty, VipProbe};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

impl Agent {
    /// Applies one reply's VIP duties ([`vips::plan`]): each hold or release
    /// goes through the driver and is recorded only when the driver did it
    /// (a failure is logged and retried with the next reply: a failed hold
    /// is not reported as held, a failed release still is). The state is
    /// saved when anything changed. With the data plane on, a held VIP is
    /// also put on its network's WireGuard interface (and taken off on
    /// release); a hold counts only when both succeeded.
    pub(super) async fn apply_vip_duties(&mut self, duties: &[VipDuty]) -> Result<(), AgentError> {
        let before = self.state.vips.clone();
        let held_before = self.held_vips();
        let actions = vips::plan(&mut self.state.vips, duties, &self.vips_applied);
        let networks: BTreeMap<&str, Option<String>> = duties
            .iter()
            .map(|d| (d.virtual_ip_id.as_str(), d.network_id.clone()))
            .collect();
        for action in actions {
            let result = match &action {
                VipAction::Hold {
                    virtual_ip_id,
                    vip,
                    generation,
                } => {
                    let (vip, generation) = (vip.clone(), *generation);
                    let network = networks.get(virtual_ip_id.as_str()).cloned().flatten();
                    let on_node = vip.clone();
                    match self
                        .with_runtime(move |rt| rt.hold_vip(&on_node, generation))
                        .await
                    {
                        Ok(()) => self
                            .run_data_plane(move |dp| dp.hold_vip(network.as_deref(), &vip))
                            .await
                            .map(drop)
                            .map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    }
                }
                VipAction::Release {
                    virtual_ip_id, vip, ..
                } => {
                    let network = networks.get(virtual_ip_id.as_str()).cloned().flatten();
                    let off_node = vip.clone();
                    let on_wire = self
                        .run_data_plane(move |dp| dp.release_vip(network.as_deref(), &off_node))
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string());
                    let vip = vip.clone();
                    let on_node = self
                        .with_runtime(move |rt| rt.release_vip(&vip))
                        .await
                        .map_err(|e| e.to_string());
                    on_wire.and(on_node)
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
            self.report_now = true;
        }
        if self.state.vips != before {
            self.store.save(&self.state)?;
        }
        Ok(())
    }
}

/// What one heartbeat reports.
pub(super) struct Report<'a> {
    /// The instance.
    pub instance_id: &'a str,
    /// The VIPs held, at their generations.
    pub held_vips: Vec<HeldVip>,
    /// The log sequence the last nudge named.
    pub after_seq: Option<u64>,
    /// The WireGuard revision applied per network.
    pub wireguard_applied: Vec<AppliedConfig>,
    /// VIP probe results not reported yet.
    pub vip_probes: Vec<VipProbe>,
    /// The agent's report of itself.
    pub report: Option<AgentReport>,
}

/// A heartbeat carrying `report`, signed over [`Heartbeat::bytes_to_sign`] now.
pub(super) fn signed_heartbeat(identity: &Identity, report: Report<'_>) -> Heartbeat {
    let mut beat = Heartbeat {
        instance_id: report.instance_id.to_owned(),
        sent_at_ms: chrono::Utc::now().timestamp_millis(),
        held_vips: report.held_vips,
        after_seq: report.after_seq,
        wireguard_applied: report.wireguard_applied,
        vip_probes: report.vip_probes,
        report: report.report,
        signature: String::new(),
    };
    beat.signature = identity.sign_bytes(&beat.bytes_to_sign());
    beat
}

/// Waits `wait`, or until a nudge or a `wake`; `None` on shutdown, else the
/// highest log sequence the nudges named (0 without nudges). Nudges already queued when
/// the wait ends are consumed too: the reconcile that follows answers them
/// all. A nudge stream that ends leaves the interval only.
pub(super) async fn wait(
    wait: Duration,
    nudges: &mut Option<BoxStream<'static, u64>>,
    wake: &Notify,
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
        _ = wake.notified() => false,
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
