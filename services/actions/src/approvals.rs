//! Approvals and VIP failover: `system_list_approvals`, `system_approve`,
//! `system_reject`, `system_sdwan_failover_virtual_ip`.

use crate::vips::VirtualIpView;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Arguments of `system_list_approvals`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListApprovalsArgs {
    /// `requested` (without), `granted`, `rejected`, `expired`,
    /// `superseded` or `all`.
    #[serde(default)]
    pub status: Option<String>,
}

/// Answer of `system_list_approvals`, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ListApprovalsAnswer {
    /// The approvals.
    pub approvals: Vec<ApprovalView>,
}

/// Arguments of `system_approve` and `system_reject`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideArgs {
    /// Approval id.
    pub approval_id: String,
    /// Why (a rejection needs one).
    #[serde(default)]
    pub reason: Option<String>,
}

/// Answer of `system_approve` and `system_reject`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalAnswer {
    /// The approval as decided.
    pub approval: ApprovalView,
}

/// Where an approval request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    /// Waiting for an operator.
    Requested,
    /// Approved.
    Granted,
    /// Rejected by an operator.
    Rejected,
    /// Nobody decided in time.
    Expired,
    /// What it was about changed before anyone decided.
    Superseded,
}

/// An approval with, for a VIP failover, the proposal it would carry out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalView {
    /// Approval id.
    pub id: String,
    /// What is to be approved, e.g. `vip_promotion`.
    pub action: String,
    /// The aggregate the action targets, as `type/id`.
    pub subject: String,
    /// Human summary.
    pub summary: String,
    /// Where it stands.
    pub status: ApprovalStatus,
    /// When it stops being approvable (RFC 3339).
    pub expires_at: String,
    /// The operator's reason, when rejected.
    pub reason: Option<String>,
    /// The virtual IP, when the subject is one.
    pub virtual_ip_id: Option<String>,
    /// The peer the pending proposal would promote.
    pub proposed_peer: Option<String>,
    /// The holder it would replace.
    pub current_holder: Option<String>,
    /// The generation it would replace.
    pub generation: Option<u64>,
    /// Every candidate of the pending proposal, best first.
    pub candidates: Vec<Candidate>,
    /// Sequence of the request.
    pub requested_seq: u64,
    /// Sequence of the decision.
    pub decided_seq: Option<u64>,
}

/// A failover candidate with its score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Candidate {
    /// Its SD-WAN peer.
    pub peer: String,
    /// Its instance.
    pub instance_id: String,
    /// Score in [0, 1]; higher is better.
    pub score: f64,
    /// What the score is made of.
    pub reasons: Vec<String>,
}

/// A candidate of a dry run, with whether it was heard lately.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ScoredCandidate {
    /// The candidate.
    #[serde(flatten)]
    pub candidate: Candidate,
    /// Heard within the silence threshold.
    pub heard_within_threshold: bool,
}

/// Arguments of `system_sdwan_failover_virtual_ip`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailoverVirtualIpArgs {
    /// Virtual IP id.
    pub virtual_ip_id: String,
    /// Only score the candidates (needs no permission).
    #[serde(default)]
    pub dry_run: bool,
    /// The peer to promote; the best candidate without.
    #[serde(default)]
    pub to_peer_id: Option<String>,
}

/// Answer of `system_sdwan_failover_virtual_ip`: the scored candidates of
/// a dry run, or the promoted virtual IP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum FailoverVirtualIpAnswer {
    /// `dry_run: true`.
    DryRun(FailoverDryRun),
    /// A forced promotion.
    Forced(Box<FailoverForced>),
}

/// A failover dry run: nothing changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FailoverDryRun {
    /// Always false.
    pub resolved: bool,
    /// Always true.
    pub dry_run: bool,
    /// Virtual IP id.
    pub virtual_ip_id: String,
    /// The peer holding it.
    pub current_holder: String,
    /// Its generation.
    pub generation: u64,
    /// True while the holder is reported silent.
    pub holder_silent: bool,
    /// The candidates, best first.
    pub candidates: Vec<ScoredCandidate>,
}

/// A forced promotion that landed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FailoverForced {
    /// Always true.
    pub resolved: bool,
    /// Always false.
    pub dry_run: bool,
    /// The virtual IP as it is now.
    pub virtual_ip: VirtualIpView,
    /// The peer promoted.
    pub promoted_to: String,
}
