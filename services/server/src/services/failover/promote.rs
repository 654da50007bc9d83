//! Promotion with fencing: a VIP moves to a new holder under a generation
//! one higher than the last, and the append is guarded on the VIP's
//! aggregate (expected last sequence, [`super::guard`]), so two promotions
//! decided at once — two failover replicas, an operator forcing while the
//! service acts — cannot both land: the second finds the aggregate moved
//! on, sees the promotion that won, and stops.
//!
//! Also here: the promotion event builders, and the nudge that tells the
//! old and new holders' agents to apply a promotion now.

use super::guard::{self, append_guarded, Guard};
use powernode_events::payloads::sdwan::{FailoverCandidate, VirtualIpPromoted};
use powernode_events::{
    AccountId, Actor, AggregateRef, AggregateType, Envelope, EventKind, EventPayload,
};
use powernode_log::{EventLog, Filter, LogError};
use powernode_projections::fleet::VirtualIp;
use powernode_runtime::{derived_event_id, ReactError};
use tracing::{info, warn};

/// How a promotion attempt ended: `Landed(seq)`, or `Moot(why)` when
/// another promotion or a release of the VIP landed first.
pub use super::guard::Guarded as Promoted;

/// Appends `event` (a `virtual_ip.promoted` decided on state that had
/// applied the log through `seen_seq`) if no other promotion or release of
/// the VIP landed after `seen_seq`.
pub async fn promote(
    log: &dyn EventLog,
    seen_seq: u64,
    event: &Envelope,
) -> Result<Promoted, LogError> {
    let EventPayload::VirtualIpPromoted(mine) = &event.payload else {
        return Err(LogError::Invalid(format!(
            "promote takes a {} event",
            EventKind::VirtualIpPromoted
        )));
    };
    let aggregate = AggregateRef::new(AggregateType::VirtualIp, mine.virtual_ip_id.clone());
    let guard = Guard {
        aggregate: &aggregate,
        filter: Filter {
            account: Some(event.account_id.clone()),
            kind_prefix: Some(guard::family(EventKind::VirtualIpPromoted)),
        },
        competes: |e: &Envelope| competing(mine, e),
        what: "promotion",
    };
    let promoted = append_guarded(log, seen_seq, event, guard).await?;
    if let Promoted::Landed(seq) = promoted {
        powernode_log::metrics::failover(&mine.reason);
        info!(
            vip = %mine.virtual_ip_id,
            to = %mine.to_peer_id,
            generation = mine.generation,
            reason = %mine.reason,
            seq,
            "VIP promoted"
        );
    }
    Ok(promoted)
}

/// Why `other` makes `mine` moot: a promotion of the same VIP to this
/// generation or later, or its release.
fn competing(mine: &VirtualIpPromoted, other: &Envelope) -> Option<String> {
    match &other.payload {
        EventPayload::VirtualIpPromoted(p) => {
            (p.virtual_ip_id == mine.virtual_ip_id && p.generation >= mine.generation).then(|| {
                format!(
                    "generation {} already went to {} ({})",
                    p.generation, p.to_peer_id, p.reason
                )
            })
        }
        EventPayload::VirtualIpReleased(p) => {
            (p.virtual_ip_id == mine.virtual_ip_id).then(|| format!("released: {}", p.reason))
        }
        EventPayload::AccountCreated(_)
        | EventPayload::OperatorTokenIssued(_)
        | EventPayload::OperatorTokenRevoked(_)
        | EventPayload::TemplateCreated(_)
        | EventPayload::NodeCreated(_)
        | EventPayload::InstanceProvisioned(_)
        | EventPayload::AgentEnrolled(_)
        | EventPayload::InstanceDrained(_)
        | EventPayload::InstanceTerminated(_)
        | EventPayload::AgentSubmissionRejected(_)
        | EventPayload::NetworkCreated(_)
        | EventPayload::PodSubnetPrefixSet(_)
        | EventPayload::PeerAttached(_)
        | EventPayload::VirtualIpAllocated(_)
        | EventPayload::VirtualIpAllocationFailed(_)
        | EventPayload::VirtualIpCandidateAdded(_)
        | EventPayload::VipHolderSilent(_)
        | EventPayload::VipHolderRecovered(_)
        | EventPayload::FailoverProposed(_)
        | EventPayload::FailoverNoCandidate(_)
        | EventPayload::FailoverSuppressed(_)
        | EventPayload::VirtualIpApplied(_)
        | EventPayload::VirtualIpReachable(_)
        | EventPayload::WireguardKeyRegistered(_)
        | EventPayload::AccessGrantCreated(_)
        | EventPayload::AccessGrantRevoked(_)
        | EventPayload::ModuleAssigned(_)
        | EventPayload::RuntimeInstalling(_)
        | EventPayload::HandshakeBootstrap(_)
        | EventPayload::HandshakeJoinRequest(_)
        | EventPayload::JoinTokenIssued(_)
        | EventPayload::JoinRejected(_)
        | EventPayload::HandshakeReady(_)
        | EventPayload::BootstrapRejected(_)
        | EventPayload::JoinTokenRotated(_)
        | EventPayload::ClusterBootstrapped(_)
        | EventPayload::ClusterActivated(_)
        | EventPayload::NodeRegistered(_)
        | EventPayload::ClusterDecommissioned(_)
        | EventPayload::PodSubnetPrefixIgnored(_)
        | EventPayload::KubeconfigRetrieved(_)
        | EventPayload::McpToolCalled(_)
        | EventPayload::ModuleVersionCreated(_)
        | EventPayload::SkillExecutionStarted(_)
        | EventPayload::SkillStepStarted(_)
        | EventPayload::SkillStepSucceeded(_)
        | EventPayload::SkillStepFailed(_)
        | EventPayload::SkillExecutionPaused(_)
        | EventPayload::SkillExecutionResumed(_)
        | EventPayload::SkillExecutionCompleted(_)
        | EventPayload::SkillExecutionAborted(_)
        | EventPayload::ModuleUpgraded(_)
        | EventPayload::ModuleUpgradeFailed(_)
        | EventPayload::AgentOutdated(_)
        | EventPayload::ApprovalRequested(_)
        | EventPayload::ApprovalGranted(_)
        | EventPayload::ApprovalRejected(_)
        | EventPayload::ApprovalExpired(_)
        | EventPayload::ApprovalSuperseded(_)
        | EventPayload::RecordRejected(_)
        | EventPayload::LogSealed(_)
        | EventPayload::AgentSubmissionsRejectedSummary(_) => None,
    }
}

/// The promotion moving `vip` to `to` under the next generation.
pub fn promotion(
    vip: &VirtualIp,
    to: &FailoverCandidate,
    reason: &str,
    approval_id: Option<&str>,
) -> VirtualIpPromoted {
    VirtualIpPromoted {
        virtual_ip_id: vip.id.clone(),
        from_peer_id: Some(vip.holder_peer_id.clone()),
        to_peer_id: to.peer_id.clone(),
        generation: vip.generation + 1,
        reason: reason.to_string(),
        to_instance_id: Some(to.instance_id.clone()),
        approval_id: approval_id.map(str::to_string),
    }
}

/// The event making `vip` move to `to` (generation + 1), caused by `cause`;
/// its id is derived from the cause, so deciding it again is a duplicate.
pub fn promotion_event(
    cause: &Envelope,
    service: &str,
    vip: &VirtualIp,
    to: &FailoverCandidate,
    reason: &str,
    approval_id: Option<&str>,
) -> Envelope {
    let mut event = Envelope::new(
        cause.account_id.clone(),
        Actor::service(service),
        promotion(vip, to, reason, approval_id),
    )
    .caused_by(cause);
    event.id = derived_event_id(
        cause.id,
        &format!("promote/{}/{}", vip.id, vip.generation + 1),
    );
    event
}

/// Tells the agents of `instances` to heartbeat now, asking for an answer
/// that includes log sequence `seq` (best effort).
pub async fn nudge(nats: Option<&async_nats::Client>, instances: &[&str], seq: u64) {
    let Some(client) = nats else { return };
    for instance in instances {
        let subject = powernode_protocol::subjects::nudge(instance);
        if let Err(e) = client.publish(subject, seq.to_string().into()).await {
            warn!(error = %e, %instance, "could not nudge an agent");
        }
    }
}

/// A promotion decided while handling the record at `seen_seq`.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingPromotion {
    /// The sequence the promotion was decided on.
    pub seen_seq: u64,
    /// The `virtual_ip.promoted` event.
    pub promotion: Envelope,
    /// The agents to nudge once it lands: the new holder, the old one.
    pub nudge: Vec<String>,
}

impl PendingPromotion {
    /// The promotion `promotion` of `vip`, decided at `seen_seq`, nudging
    /// `to`'s agent and the agent of the holder's instance (`old`).
    pub fn new(
        seen_seq: u64,
        promotion: Envelope,
        to: &FailoverCandidate,
        old: Option<&str>,
    ) -> Self {
        let mut nudge = vec![to.instance_id.clone()];
        nudge.extend(old.map(str::to_string));
        Self {
            seen_seq,
            promotion,
            nudge,
        }
    }
}

/// Appends promotions together (each guarded on its own VIP) instead of one
/// round trip after another — 80 approvals arriving together had queued
/// ~60 ms at the median behind each other's appends — and nudges the
/// agents of each one that landed. Answers the ones that failed (to be
/// tried again) and the error to report for them.
pub async fn promote_all(
    log: &dyn EventLog,
    nats: Option<&async_nats::Client>,
    pending: Vec<PendingPromotion>,
) -> (Vec<PendingPromotion>, Option<ReactError>) {
    let results = futures::future::join_all(
        pending
            .iter()
            .map(|p| promote(log, p.seen_seq, &p.promotion)),
    )
    .await;
    let mut failed = Vec::new();
    let mut error = None;
    for (p, result) in pending.into_iter().zip(results) {
        match result {
            Ok(Promoted::Landed(seq)) => {
                let targets: Vec<&str> = p.nudge.iter().map(String::as_str).collect();
                nudge(nats, &targets, seq).await;
            }
            Ok(Promoted::Moot(why)) => {
                info!(event = %p.promotion.id, %why, "promotion not needed");
            }
            Err(e) => {
                let e = ReactError::from(e);
                if matches!(e, ReactError::Fatal(_)) || error.is_none() {
                    error = Some(e);
                }
                failed.push(p);
            }
        }
    }
    (failed, error)
}

/// The instance of `vip`'s current holder.
pub fn holder_instance<'a>(
    state: &'a powernode_projections::FleetState,
    account: &AccountId,
    vip: &VirtualIp,
) -> Option<&'a str> {
    state
        .account(account)?
        .peers
        .get(&vip.holder_peer_id)
        .map(|p| p.instance_id.as_str())
}
