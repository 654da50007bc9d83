//! Which executions an event wakes: its own, for the events of an
//! execution (agents' reports included); every execution of the account
//! still at work for the fleet events steps wait on (a VIP moved off a
//! node, a provisioned node ready or refused); none for the rest.

use powernode_events::{Envelope, EventPayload};
use powernode_projections::fleet::Execution;
use powernode_projections::FleetState;

/// The executions `event` (folded into `state`) may change the next step of.
pub fn executions<'a>(state: &'a FleetState, event: &Envelope) -> Vec<&'a Execution> {
    let Some(acct) = state.account(&event.account_id) else {
        return Vec::new();
    };
    let of = |id: &str| -> Vec<&'a Execution> {
        acct.executions
            .get(id)
            .filter(|e| e.at_work())
            .into_iter()
            .collect()
    };
    let own = || of(&event.aggregate.id);
    let every = || acct.executions_at_work().collect();
    match &event.payload {
        EventPayload::SkillExecutionStarted(_)
        | EventPayload::SkillStepStarted(_)
        | EventPayload::SkillStepSucceeded(_)
        | EventPayload::SkillStepFailed(_)
        | EventPayload::SkillExecutionPaused(_)
        | EventPayload::SkillExecutionResumed(_)
        | EventPayload::SkillExecutionCompleted(_)
        | EventPayload::SkillExecutionAborted(_) => own(),
        // Agents' reports are on the instance's aggregate.
        EventPayload::ModuleUpgraded(p) => of(&p.execution_id),
        EventPayload::ModuleUpgradeFailed(p) => of(&p.execution_id),
        EventPayload::VirtualIpPromoted(_)
        | EventPayload::VirtualIpReleased(_)
        | EventPayload::HandshakeReady(_)
        | EventPayload::JoinRejected(_)
        | EventPayload::BootstrapRejected(_)
        | EventPayload::ClusterBootstrapped(_)
        | EventPayload::InstanceTerminated(_) => every(),
        EventPayload::AccountCreated(_)
        | EventPayload::OperatorTokenIssued(_)
        | EventPayload::OperatorTokenRevoked(_)
        | EventPayload::TemplateCreated(_)
        | EventPayload::NodeCreated(_)
        | EventPayload::InstanceProvisioned(_)
        | EventPayload::AgentEnrolled(_)
        | EventPayload::InstanceDrained(_)
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
        | EventPayload::JoinTokenRotated(_)
        | EventPayload::ClusterActivated(_)
        | EventPayload::NodeRegistered(_)
        | EventPayload::ClusterDecommissioned(_)
        | EventPayload::PodSubnetPrefixIgnored(_)
        | EventPayload::KubeconfigRetrieved(_)
        | EventPayload::McpToolCalled(_)
        | EventPayload::ModuleVersionCreated(_)
        | EventPayload::AgentOutdated(_)
        | EventPayload::ApprovalRequested(_)
        | EventPayload::ApprovalGranted(_)
        | EventPayload::ApprovalRejected(_)
        | EventPayload::ApprovalExpired(_)
        | EventPayload::ApprovalSuperseded(_)
        | EventPayload::RecordRejected(_)
        | EventPayload::LogSealed(_)
        | EventPayload::AgentSubmissionsRejectedSummary(_) => Vec::new(),
    }
}
