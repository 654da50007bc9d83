//! Approvals and VIP failover: `system_list_approvals`, `system_approve`,
//! `system_reject`, `system_sdwan_failover_virtual_ip` (dry run or forced).

use super::{handlers, views, ActionContext};
use crate::api::auth::Permission;
use crate::api::error::{ApiError, ErrorCode};
use crate::services::failover::candidates::{self, Scored};
use crate::services::failover::{nudge, promote, promotion};
use powernode_actions::approvals::{
    ApprovalAnswer, ApprovalView, Candidate, DecideArgs, FailoverDryRun, FailoverForced,
    FailoverVirtualIpAnswer, FailoverVirtualIpArgs, ListApprovalsAnswer, ListApprovalsArgs,
    ScoredCandidate,
};
use powernode_events::payloads::approvals::{ApprovalGranted, ApprovalRejected};
use powernode_events::{AccountId, AggregateRef, AggregateType, Envelope};
use powernode_log::Expect;
use powernode_projections::fleet::{Approval, ApprovalStatus, ClusterStatus, VipStatus};
use powernode_projections::FleetState;
use serde_json::json;

handlers! {
    ListApprovals => list_approvals,
    Approve => approve,
    Reject => reject,
    FailoverVirtualIp => failover_virtual_ip,
}

/// Namespace of forced promotions' event ids.
const FORCED_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0xf0ce_d0a1_0000_4000_8000_666f_7263_6564);

fn candidates_json(scored: &[Scored]) -> Vec<ScoredCandidate> {
    scored
        .iter()
        .map(|s| ScoredCandidate {
            candidate: Candidate {
                peer: s.candidate.peer_id.clone(),
                instance_id: s.candidate.instance_id.clone(),
                score: s.candidate.score,
                reasons: s.candidate.reasons.clone(),
            },
            heard_within_threshold: s.alive,
        })
        .collect()
}

fn approval_json(fleet: &FleetState, account: &AccountId, a: &Approval) -> ApprovalView {
    let vip_id = a.subject.strip_prefix("virtual_ip/");
    let proposal = vip_id
        .and_then(|id| fleet.virtual_ip(account, id))
        .and_then(|v| v.pending_proposal.as_ref())
        .filter(|p| p.approval_id == a.id);
    let candidates: Vec<Candidate> = proposal
        .map(|p| {
            p.candidates
                .iter()
                .map(|c| Candidate {
                    peer: c.peer_id.clone(),
                    instance_id: c.instance_id.clone(),
                    score: c.score,
                    reasons: c.reasons.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    ApprovalView {
        id: a.id.clone(),
        action: a.action.clone(),
        subject: a.subject.clone(),
        summary: a.summary.clone(),
        status: views::approval_status(a.status),
        expires_at: a.expires_at.clone(),
        reason: a.reason.clone(),
        virtual_ip_id: vip_id.map(str::to_string),
        proposed_peer: proposal.map(|p| p.candidate_peer_id.clone()),
        current_holder: proposal.map(|p| p.holder_peer_id.clone()),
        generation: proposal.map(|p| p.generation),
        candidates,
        requested_seq: a.requested_seq,
        decided_seq: a.decided_seq,
    }
}

/// `system_list_approvals({status?})`: waiting ones by default; `status`
/// is `requested`, `granted`, `rejected`, `expired`, `superseded` or `all`.
pub async fn list_approvals(
    ctx: &ActionContext<'_>,
    a: ListApprovalsArgs,
) -> Result<ListApprovalsAnswer, ApiError> {
    let wanted = a.status.as_deref().unwrap_or("requested");
    const STATUSES: &[&str] = &[
        "requested",
        "granted",
        "rejected",
        "expired",
        "superseded",
        "all",
    ];
    if !STATUSES.contains(&wanted) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidArguments,
            format!("status: {wanted:?} is not one of {}", STATUSES.join(", ")),
        ));
    }
    let fleet = ctx.fleet().await;
    let account = &ctx.operator.account;
    let mut list: Vec<&Approval> = fleet
        .account(account)
        .map(|acc| {
            acc.approvals
                .values()
                .filter(|x| wanted == "all" || json!(x.status) == json!(wanted))
                .collect()
        })
        .unwrap_or_default();
    list.sort_by_key(|x| x.requested_seq);
    Ok(ListApprovalsAnswer {
        approvals: list
            .iter()
            .map(|x| approval_json(&fleet, account, x))
            .collect(),
    })
}

/// `system_approve({approval_id})`.
async fn approve(ctx: &ActionContext<'_>, a: DecideArgs) -> Result<ApprovalAnswer, ApiError> {
    decide(ctx, a, true).await
}

/// `system_reject({approval_id, reason})`.
async fn reject(ctx: &ActionContext<'_>, a: DecideArgs) -> Result<ApprovalAnswer, ApiError> {
    decide(ctx, a, false).await
}

/// `system_approve({approval_id})` / `system_reject({approval_id, reason})`.
pub async fn decide(
    ctx: &ActionContext<'_>,
    a: DecideArgs,
    approve: bool,
) -> Result<ApprovalAnswer, ApiError> {
    let account = ctx.operator.account.clone();
    let reason = match (approve, a.reason.as_deref().map(str::trim)) {
        (false, None | Some("")) => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidArguments,
                "reason: a rejection needs a reason",
            ))
        }
        (_, r) => r.map(str::to_string),
    };
    {
        let fleet = ctx.fleet().await;
        let approval = fleet
            .approval(&account, &a.approval_id)
            .ok_or_else(|| ApiError::not_found("approval", &a.approval_id))?;
        check_decidable(&fleet, &account, approval)?;
    }
    let aggregate = AggregateRef::new(AggregateType::Approval, a.approval_id.clone());
    let last = ctx.log().aggregate_last_seq(&account, &aggregate).await?;
    let event = if approve {
        Envelope::new(
            account.clone(),
            ctx.actor(),
            ApprovalGranted {
                approval_id: a.approval_id.clone(),
            },
        )
    } else {
        Envelope::new(
            account.clone(),
            ctx.actor(),
            ApprovalRejected {
                approval_id: a.approval_id.clone(),
                reason: reason.unwrap_or_default(),
            },
        )
    };
    // Guarded: of two operators deciding at once, one wins; the other is
    // told the request was already decided.
    let expect = last.map_or(Expect::NoEvents, Expect::LastSeq);
    match ctx.append_guarded(&event, expect).await {
        Ok(_) => {}
        Err(e) if e.code == ErrorCode::Conflict => {
            return Err(ApiError::new(
                ErrorCode::AlreadyDecided,
                format!(
                    "approval {} was decided by someone else just now",
                    a.approval_id
                ),
            ))
        }
        Err(e) => return Err(e),
    }
    let fleet = ctx.fleet().await;
    let approval = fleet
        .approval(&account, &a.approval_id)
        .ok_or_else(|| ApiError::not_found("approval", &a.approval_id))?;
    Ok(ApprovalAnswer {
        approval: approval_json(&fleet, &account, approval),
    })
}

/// Why an approval cannot be decided now, as an error naming it.
fn check_decidable(fleet: &FleetState, account: &AccountId, a: &Approval) -> Result<(), ApiError> {
    let conflict = |code: ErrorCode, msg: String| Err(ApiError::new(code, msg));
    match a.status {
        ApprovalStatus::Requested => {}
        ApprovalStatus::Expired => {
            return conflict(
                ErrorCode::Expired,
                format!("approval {} expired at {}", a.id, a.expires_at),
            )
        }
        ApprovalStatus::Superseded => {
            return conflict(
                ErrorCode::Superseded,
                format!(
                    "approval {} was superseded: {}",
                    a.id,
                    a.reason.clone().unwrap_or_default()
                ),
            )
        }
        ApprovalStatus::Granted | ApprovalStatus::Rejected => {
            return conflict(
                ErrorCode::AlreadyDecided,
                format!(
                    "approval {} was already {}",
                    a.id,
                    json!(a.status).as_str().unwrap_or("decided")
                ),
            )
        }
    }
    if a.expires_at_utc().is_some_and(|t| t <= chrono::Utc::now()) {
        return conflict(
            ErrorCode::Expired,
            format!("approval {} expired at {}", a.id, a.expires_at),
        );
    }
    if let Some(vip_id) = a.subject.strip_prefix("virtual_ip/") {
        let current = fleet
            .virtual_ip(account, vip_id)
            .and_then(|v| v.pending_proposal.as_ref())
            .is_some_and(|p| p.approval_id == a.id);
        if !current {
            return conflict(
                ErrorCode::Superseded,
                format!(
                    "approval {} no longer matches the VIP (it moved on or was released)",
                    a.id
                ),
            );
        }
    }
    Ok(())
}

/// `system_sdwan_failover_virtual_ip({virtual_ip_id, dry_run?, to_peer_id?})`.
pub async fn failover_virtual_ip(
    ctx: &ActionContext<'_>,
    a: FailoverVirtualIpArgs,
) -> Result<FailoverVirtualIpAnswer, ApiError> {
    let account = ctx.operator.account.clone();
    let (vip, scored, seen_seq) = {
        let fleet = ctx.fleet().await;
        let vip = fleet
            .virtual_ip(&account, &a.virtual_ip_id)
            .ok_or_else(|| ApiError::not_found("virtual_ip", &a.virtual_ip_id))?
            .clone();
        let scored = candidates::candidates(
            &fleet,
            &account,
            &vip,
            None,
            &ctx.failover().scoring(ctx.liveness(), chrono::Utc::now()),
        );
        if !a.dry_run {
            if vip.status != VipStatus::Allocated {
                return Err(ApiError::new(
                    ErrorCode::Released,
                    format!(
                        "virtual IP {} was released ({})",
                        vip.id,
                        vip.release_reason.clone().unwrap_or_default()
                    ),
                ));
            }
            if fleet
                .cluster(&account, &vip.cluster_id)
                .is_some_and(|c| c.status == ClusterStatus::Decommissioned)
            {
                return Err(ApiError::new(
                    ErrorCode::ClusterDecommissioned,
                    format!("cluster {} is decommissioned", vip.cluster_id),
                ));
            }
        }
        (vip, scored, ctx.applied())
    };
    if a.dry_run {
        return Ok(FailoverVirtualIpAnswer::DryRun(FailoverDryRun {
            resolved: false,
            dry_run: true,
            virtual_ip_id: vip.id,
            current_holder: vip.holder_peer_id,
            generation: vip.generation,
            holder_silent: vip.holder_silent,
            candidates: candidates_json(&scored),
        }));
    }
    ctx.operator.require(Permission::SdwanFailover)?;
    let target = match &a.to_peer_id {
        Some(peer) => scored
            .iter()
            .find(|s| &s.candidate.peer_id == peer)
            .map(|s| s.candidate.clone())
            .ok_or_else(|| {
                let known: Vec<&str> = scored.iter().map(|s| s.candidate.peer_id.as_str()).collect();
                ApiError::new(
                    ErrorCode::NotACandidate,
                    format!(
                        "peer {peer} is not a ready k3s-server member of cluster {} (workers and other clusters' nodes cannot hold its VIP); candidates: [{}]",
                        vip.cluster_id,
                        known.join(", ")
                    ),
                )
            })?,
        None => candidates::best(&scored).cloned().ok_or_else(|| {
            ApiError::new(
                ErrorCode::NoCandidate,
                format!("virtual IP {} has no ready candidate heard lately (single-server cluster?)", vip.id),
            )
        })?,
    };
    // The operator's request is the fact itself (no cause in the log). Its id
    // is derived from the VIP, the generation it starts and the target, so
    // a retried request is a duplicate, not a second promotion.
    let mut event = Envelope::new(
        account.clone(),
        ctx.actor(),
        promotion(&vip, &target, "forced", None),
    );
    event.id = uuid::Uuid::new_v5(
        &FORCED_NAMESPACE,
        format!("{}/{}/{}", vip.id, vip.generation + 1, target.peer_id).as_bytes(),
    );
    event.correlation_id = event.id;
    match promote::promote(ctx.log().as_ref(), seen_seq, &event).await? {
        promote::Promoted::Landed(seq) => {
            ctx.wait_for(seq).await?;
            let old = {
                let fleet = ctx.fleet().await;
                fleet
                    .account(&account)
                    .and_then(|acc| acc.peers.get(&vip.holder_peer_id))
                    .map(|p| p.instance_id.clone())
            };
            let nats = ctx.log().nats_client().map(|(c, _)| c);
            let mut targets = vec![target.instance_id.as_str()];
            targets.extend(old.as_deref());
            nudge(nats.as_ref(), &targets, seq).await;
        }
        promote::Promoted::Moot(why) => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("not promoted: {why}"),
            ));
        }
    }
    let fleet = ctx.fleet().await;
    let now = fleet
        .virtual_ip(&account, &vip.id)
        .ok_or_else(|| ApiError::not_found("virtual_ip", &vip.id))?;
    Ok(FailoverVirtualIpAnswer::Forced(Box::new(FailoverForced {
        resolved: true,
        dry_run: false,
        virtual_ip: super::vips::vip_json(&fleet, &account, now),
        promoted_to: target.peer_id,
    })))
}
