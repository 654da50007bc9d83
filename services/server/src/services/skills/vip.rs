//! VIPs off a node before its step: every VIP of a step's `vip_moves`
//! that its node still holds is promoted (a planned move, reason
//! `upgrade`, no approval; fenced like every promotion) to a ready
//! `k3s-server` of the same cluster that already succeeded in this
//! execution or runs the target version. The step starts once the state
//! shows the VIP held elsewhere; with no such server it fails.

use super::rules::Work;
use crate::services::failover::promote::{promotion, PendingPromotion};
use powernode_events::payloads::k3s::K3sModule;
use powernode_events::payloads::sdwan::FailoverCandidate;
use powernode_events::payloads::skills::PlanStep;
use powernode_projections::fleet::{InstanceStatus, K3sPhase, StepState, VipStatus, VirtualIp};

/// Whether a step's VIPs let it start.
pub(super) enum Gate {
    /// Nothing it holds needs moving.
    Open,
    /// These promotions move its VIPs first; it starts once they landed.
    Wait(Vec<PendingPromotion>),
    /// A VIP it holds has nowhere to go.
    Blocked(String),
}

impl Work<'_, '_> {
    /// Whether step `i` may start: every VIP of its `vip_moves` that its
    /// instance still holds is first promoted to a ready `k3s-server` of
    /// the same cluster that already succeeded in this execution or runs
    /// the target version.
    pub(super) fn vip_gate(&self, i: usize) -> Gate {
        let plan = &self.w.steps[i].plan;
        let mut promotions = Vec::new();
        for mv in &plan.vip_moves {
            let Some(vip) = self.acct.virtual_ips.get(&mv.virtual_ip_id) else {
                continue;
            };
            let holder = self
                .acct
                .peers
                .get(&vip.holder_peer_id)
                .map(|p| p.instance_id.as_str());
            if vip.status != VipStatus::Allocated || holder != Some(plan.instance_id.as_str()) {
                continue;
            }
            let Some(to) = self.vip_target(plan, vip) else {
                return Gate::Blocked(format!("no upgraded server to take VIP {}", mv.vip));
            };
            let tag = format!("promote/{}/{}", vip.id, vip.generation + 1);
            let event = self
                .ctx
                .event(&self.w.id, &tag, promotion(vip, &to, "upgrade", None));
            promotions.push(PendingPromotion::new(
                self.ctx.seen_seq,
                event,
                &to,
                Some(&plan.instance_id),
            ));
        }
        if promotions.is_empty() {
            Gate::Open
        } else {
            Gate::Wait(promotions)
        }
    }

    /// Where `vip` goes off `plan`'s node: a candidate peer whose instance
    /// is a ready, enrolled member of the VIP's cluster, not being worked
    /// on, that succeeded in this execution (preferred) or runs the target
    /// version; ties by peer id.
    fn vip_target(&self, plan: &PlanStep, vip: &VirtualIp) -> Option<FailoverCandidate> {
        let mut best: Option<(bool, &str, &str)> = None;
        for peer_id in vip.failover_candidates() {
            let Some(peer) = self.acct.peers.get(peer_id) else {
                continue;
            };
            let Some(inst) = self.acct.instances.get(&peer.instance_id) else {
                continue;
            };
            if inst.id == plan.instance_id
                || inst.status != InstanceStatus::Enrolled
                || inst.k3s_phase != Some(K3sPhase::Ready)
                || inst.cluster_id.as_deref() != Some(vip.cluster_id.as_str())
            {
                continue;
            }
            let mine = self
                .w
                .steps
                .iter()
                .filter(|s| s.plan.instance_id == inst.id);
            let mut upgraded_here = false;
            let mut busy = false;
            for s in mine {
                upgraded_here |= s.state == StepState::Succeeded;
                busy |= s.state == StepState::Running;
            }
            let runs_target = plan.to_version_id.is_some()
                && self
                    .acct
                    .instance_module_version(&inst.id, K3sModule::K3sServer)
                    .map(|v| &v.id)
                    == plan.to_version_id.as_ref();
            if busy || !(upgraded_here || runs_target) {
                continue;
            }
            let better = match best {
                None => true,
                Some((b_up, b_peer, _)) => {
                    (upgraded_here && !b_up) || (upgraded_here == b_up && peer_id < b_peer)
                }
            };
            if better {
                best = Some((upgraded_here, peer_id, inst.id.as_str()));
            }
        }
        best.map(|(upgraded_here, peer_id, instance_id)| FailoverCandidate {
            peer_id: peer_id.to_string(),
            instance_id: instance_id.to_string(),
            score: 1.0,
            reasons: vec![if upgraded_here {
                format!("upgraded in execution {}", self.w.id)
            } else {
                "runs the target version".to_string()
            }],
        })
    }
}
