//! Approval requests and their outcome.

use super::AccountState;
use chrono::{DateTime, Utc};
use powernode_events::payloads::approvals::{
    ApprovalExpired, ApprovalGranted, ApprovalRejected, ApprovalRequested, ApprovalSuperseded,
};
use powernode_events::Actor;
use serde::{Deserialize, Serialize};

/// Where an approval request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

/// An action waiting for (or decided by) an operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// Approval id.
    pub id: String,
    /// What is to be approved, e.g. `vip_promotion`.
    pub action: String,
    /// The aggregate the action targets, as `type/id`.
    pub subject: String,
    /// Human summary.
    pub summary: String,
    /// When the request stops being approvable (RFC 3339, as requested).
    pub expires_at: String,
    /// Where it stands.
    pub status: ApprovalStatus,
    /// The operator's reason, when rejected.
    pub reason: Option<String>,
    /// Sequence of the request.
    pub requested_seq: u64,
    /// Sequence of the decision (grant, rejection or expiry).
    pub decided_seq: Option<u64>,
    /// Who decided (the actor of the deciding event).
    pub decided_by: Option<Actor>,
}

impl Approval {
    /// True while the request waits for a decision.
    pub fn is_pending(&self) -> bool {
        self.status == ApprovalStatus::Requested
    }

    /// `expires_at` parsed; `None` when it is not valid RFC 3339.
    pub fn expires_at_utc(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.expires_at)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// `system.approval.requested`: a new pending approval (first request wins).
pub(super) fn requested(account: &mut AccountState, seq: u64, p: &ApprovalRequested) {
    account
        .approvals
        .entry(p.approval_id.clone())
        .or_insert_with(|| Approval {
            id: p.approval_id.clone(),
            action: p.action.clone(),
            subject: p.subject.clone(),
            summary: p.summary.clone(),
            expires_at: p.expires_at.clone(),
            status: ApprovalStatus::Requested,
            reason: None,
            requested_seq: seq,
            decided_seq: None,
            decided_by: None,
        });
}

/// The outcome of a pending approval; the first decision wins.
fn decide(
    account: &mut AccountState,
    seq: u64,
    actor: &Actor,
    id: &str,
    status: ApprovalStatus,
    reason: Option<&str>,
) {
    let Some(approval) = account.approvals.get_mut(id) else {
        return;
    };
    if approval.is_pending() {
        approval.status = status;
        approval.reason = reason.map(str::to_string);
        approval.decided_seq = Some(seq);
        approval.decided_by = Some(actor.clone());
    }
}

/// `system.approval.granted`.
pub(super) fn granted(account: &mut AccountState, seq: u64, actor: &Actor, p: &ApprovalGranted) {
    decide(
        account,
        seq,
        actor,
        &p.approval_id,
        ApprovalStatus::Granted,
        None,
    );
}

/// `system.approval.rejected`.
pub(super) fn rejected(account: &mut AccountState, seq: u64, actor: &Actor, p: &ApprovalRejected) {
    decide(
        account,
        seq,
        actor,
        &p.approval_id,
        ApprovalStatus::Rejected,
        Some(&p.reason),
    );
    super::sdwan::proposal_closed(account, &p.approval_id);
}

/// `system.approval.expired`.
pub(super) fn expired(account: &mut AccountState, seq: u64, actor: &Actor, p: &ApprovalExpired) {
    decide(
        account,
        seq,
        actor,
        &p.approval_id,
        ApprovalStatus::Expired,
        None,
    );
    super::sdwan::proposal_closed(account, &p.approval_id);
}

/// `system.approval.superseded`.
pub(super) fn superseded(
    account: &mut AccountState,
    seq: u64,
    actor: &Actor,
    p: &ApprovalSuperseded,
) {
    decide(
        account,
        seq,
        actor,
        &p.approval_id,
        ApprovalStatus::Superseded,
        Some(&p.reason),
    );
    super::sdwan::proposal_closed(account, &p.approval_id);
}
