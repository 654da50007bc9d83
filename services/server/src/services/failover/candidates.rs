//! Failover candidates and their scores.
//!
//! A candidate is another `k3s-server` member of the VIP's cluster (a peer
//! added as failover candidate) whose instance is ready and not drained or
//! terminated. Its score in [0, 1] weighs:
//! * heartbeat freshness (0.5): heard within a third of the silence
//!   threshold is full marks, falling to nothing at the threshold;
//! * same SD-WAN network as the VIP (0.3): the address routes there without
//!   a detour;
//! * recent flaps (0.2): each time the candidate lost this VIP within the
//!   damping window costs a third.
//!
//! Every candidate carries the reasons its score is made of, so an operator
//! approving a proposal sees why.

use crate::liveness::Liveness;
use chrono::{DateTime, Utc};
use powernode_events::payloads::sdwan::FailoverCandidate;
use powernode_events::AccountId;
use powernode_projections::fleet::VirtualIp;
use powernode_projections::fleet::{InstanceStatus, K3sPhase};
use powernode_projections::FleetState;
use std::time::Duration;

/// What scoring needs besides the state.
pub struct Scoring<'a> {
    /// Who was heard when.
    pub liveness: &'a Liveness,
    /// Silence threshold: a candidate not heard for this long scores zero
    /// for freshness.
    pub threshold: Duration,
    /// Window in which lost holdings count as flaps.
    pub window: Duration,
    /// Now.
    pub now: DateTime<Utc>,
}

/// A scored candidate, and whether it was heard within the threshold (a
/// silent candidate is listed, but never promoted).
#[derive(Debug, Clone)]
pub struct Scored {
    /// The candidate as events and answers show it.
    pub candidate: FailoverCandidate,
    /// Heard within the silence threshold.
    pub alive: bool,
}

/// Candidates of `vip` other than `exclude_instance` (a draining holder),
/// best first (ties by peer id, so every replica orders them alike).
pub fn candidates(
    fleet: &FleetState,
    account: &AccountId,
    vip: &VirtualIp,
    exclude_instance: Option<&str>,
    scoring: &Scoring<'_>,
) -> Vec<Scored> {
    let Some(acct) = fleet.account(account) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for peer_id in vip.failover_candidates() {
        let Some(peer) = acct.peers.get(peer_id) else {
            continue;
        };
        if Some(peer.instance_id.as_str()) == exclude_instance {
            continue;
        }
        let Some(instance) = acct.instances.get(&peer.instance_id) else {
            continue;
        };
        if instance.status != InstanceStatus::Enrolled
            || instance.k3s_phase != Some(K3sPhase::Ready)
            || instance.cluster_id.as_deref() != Some(vip.cluster_id.as_str())
        {
            continue;
        }
        let mut reasons = vec!["ready k3s-server".to_string()];
        let freshness = match scoring.liveness.last_seen(&peer.instance_id) {
            Some(at) => {
                let age = (scoring.now - at).to_std().unwrap_or_default();
                let full = scoring.threshold / 3;
                let f = if age <= full {
                    1.0
                } else if age >= scoring.threshold {
                    0.0
                } else {
                    1.0 - (age - full).as_secs_f64() / (scoring.threshold - full).as_secs_f64()
                };
                reasons.push(format!("heartbeat {:.1} s ago", age.as_secs_f64()));
                f
            }
            None => {
                reasons.push("no heartbeat heard yet".to_string());
                0.0
            }
        };
        let same_network = peer.network_id == vip.network_id;
        reasons.push(if same_network {
            "same SD-WAN network".to_string()
        } else {
            format!("other SD-WAN network {}", peer.network_id)
        });
        let window_start =
            scoring.now - chrono::Duration::from_std(scoring.window).unwrap_or_default();
        let flaps = vip
            .promotions
            .iter()
            .filter(|p| p.at >= window_start && p.from_peer_id.as_deref() == Some(peer_id))
            .count();
        if flaps > 0 {
            reasons.push(format!(
                "lost this VIP {flaps}× in the last {} s",
                scoring.window.as_secs()
            ));
        }
        let score = 0.5 * freshness
            + if same_network { 0.3 } else { 0.15 }
            + 0.2 * (1.0 - (flaps.min(3) as f64) / 3.0);
        out.push(Scored {
            candidate: FailoverCandidate {
                peer_id: peer_id.to_string(),
                instance_id: peer.instance_id.clone(),
                score: (score * 100.0).round() / 100.0,
                reasons,
            },
            alive: freshness > 0.0,
        });
    }
    out.sort_by(|a, b| {
        b.candidate
            .score
            .total_cmp(&a.candidate.score)
            .then_with(|| a.candidate.peer_id.cmp(&b.candidate.peer_id))
    });
    out
}

/// The candidate to promote: the best one heard within the threshold.
pub fn best(candidates: &[Scored]) -> Option<&FailoverCandidate> {
    candidates.iter().find(|c| c.alive).map(|c| &c.candidate)
}
