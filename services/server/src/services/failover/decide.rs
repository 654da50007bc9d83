//! A silence is decided once. What the failover service makes of a
//! `sdwan.vip_holder_silent` (a proposal, `no_candidate`, `suppressed`)
//! depends on live inputs — which candidates this process has heard lately
//! — so two replicas, or one replica replaying the silence after a restart
//! from an older checkpoint, can decide differently. Derived event ids make
//! the *same* decision a duplicate, but not a different one. So the
//! decision is appended guarded on the VIP's aggregate: when any decision
//! caused by the same silence landed after the state it was made on, that
//! one stands and this one is dropped.
//!
//! Also here: the failover rules ([`Rules`]), which turn silences,
//! approvals, drains and promotions into decisions — pure, no I/O; what
//! they decide is performed by [`super::reactor`].

use super::candidates::{self, Scored};
use super::config::{FailoverConfig, FailoverPolicy};
use super::guard::{self, append_guarded, Guard};
use super::promote::{self, promotion_event, PendingPromotion};
use super::VIP_PROMOTION;
use crate::liveness::SharedLiveness;
use chrono::{DateTime, Utc};
use powernode_events::payloads::approvals::{ApprovalRequested, ApprovalSuperseded};
use powernode_events::payloads::sdwan::{
    FailoverCandidate, FailoverNoCandidate, FailoverProposed, FailoverSuppressed,
};
use powernode_events::{Actor, Envelope, EventKind, EventPayload};
use powernode_log::{EventLog, Filter, LogError};
use powernode_projections::fleet::{ApprovalStatus, VipStatus, VirtualIp};
use powernode_projections::FleetState;
use powernode_runtime::{derived_event_id, Decisions};

/// How a decision attempt ended: `Landed(seq)`, or `Moot(kind)` when
/// another decision about the same silence landed first.
pub use super::guard::Guarded as Decided;

/// Appends `decision` (a `system.sdwan.failover.*` event on a VIP's
/// aggregate, caused by a silence, decided on state that had applied the
/// log through `seen_seq`) unless a decision caused by the same silence
/// landed after `seen_seq`.
pub async fn decide_once(
    log: &dyn EventLog,
    seen_seq: u64,
    decision: &Envelope,
) -> Result<Decided, LogError> {
    let Some(cause) = decision.causation_id else {
        return Err(LogError::Invalid(
            "a failover decision names the silence that caused it".into(),
        ));
    };
    let guard = Guard {
        aggregate: &decision.aggregate,
        filter: Filter {
            account: Some(decision.account_id.clone()),
            kind_prefix: Some(guard::family(EventKind::FailoverProposed)),
        },
        competes: |e: &Envelope| {
            (e.causation_id == Some(cause) && e.aggregate == decision.aggregate)
                .then(|| e.kind().to_string())
        },
        what: "decision",
    };
    append_guarded(log, seen_seq, decision, guard).await
}

/// What the failover service decides besides plain appends: the I/O the
/// runtime has it perform once the projection's lock is released.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Answer a silence, unless another answer to it landed first
    /// ([`decide_once`]); when this one stands, append `then` too.
    DecideOnce {
        /// The sequence the answer was decided on.
        seen_seq: u64,
        /// The answer (`failover.proposed`, `no_candidate`, `suppressed`).
        decision: Envelope,
        /// What follows a standing answer (the approval request of a proposal).
        then: Option<Box<Envelope>>,
    },
    /// Promote a VIP (fenced, [`promote::promote`]), together with the
    /// batch's other promotions, and nudge the agents.
    Promote(PendingPromotion),
}

/// The failover rules: what an event leads to, given the fleet and who was
/// heard when. No I/O.
#[derive(Clone)]
pub struct Rules {
    /// Who was heard when.
    pub liveness: SharedLiveness,
    /// Policy, threshold and damping.
    pub config: FailoverConfig,
}

/// What this service appends: `payload`, caused by `cause`, its id derived
/// from the cause and `tag`, decided at `now`.
fn decision(
    cause: &Envelope,
    now: DateTime<Utc>,
    tag: &str,
    payload: impl Into<EventPayload>,
) -> Envelope {
    let mut event = Envelope::new(
        cause.account_id.clone(),
        Actor::service("failover"),
        payload,
    )
    .caused_by(cause);
    event.id = derived_event_id(cause.id, tag);
    event.occurred_at = now;
    event
}

type Out = Decisions<Effect>;

impl Rules {
    /// Decides about `event` (at `seq`, folded into `state`) at `now`.
    pub fn decide(
        &self,
        state: &FleetState,
        seq: u64,
        event: &Envelope,
        now: DateTime<Utc>,
        out: &mut Out,
    ) {
        let account = &event.account_id;
        match &event.payload {
            EventPayload::VipHolderSilent(p) => {
                let Some(vip) = state.virtual_ip(account, &p.virtual_ip_id) else {
                    return;
                };
                // Only a silence that is still current and not already being handled.
                if vip.status != VipStatus::Allocated
                    || !vip.holder_silent
                    || vip.holder_peer_id != p.holder_peer_id
                    || vip.pending_proposal.is_some()
                {
                    return;
                }
                self.on_silent(state, seq, event, vip, now, out);
            }
            EventPayload::VipHolderRecovered(p) => {
                if let Some(proposal) = state
                    .virtual_ip(account, &p.virtual_ip_id)
                    .and_then(|v| v.pending_proposal.as_ref())
                {
                    supersede(
                        event,
                        now,
                        out,
                        &proposal.approval_id,
                        format!("holder {} was heard again", p.holder_peer_id),
                    );
                }
            }
            EventPayload::ApprovalGranted(p) => {
                self.on_granted(state, seq, event, &p.approval_id, now, out)
            }
            EventPayload::InstanceDrained(p) => {
                self.on_drained(state, seq, event, &p.instance_id, now, out)
            }
            EventPayload::VirtualIpPromoted(p) => {
                // Any waiting approval about this VIP is moot now.
                let subject = format!("virtual_ip/{}", p.virtual_ip_id);
                for approval in state.pending_approvals(account) {
                    if approval.subject == subject && Some(&approval.id) != p.approval_id.as_ref() {
                        supersede(
                            event,
                            now,
                            out,
                            &approval.id,
                            format!(
                                "the VIP was promoted to {} at generation {} ({})",
                                p.to_peer_id, p.generation, p.reason
                            ),
                        );
                    }
                }
            }
            EventPayload::AccountCreated(_)
            | EventPayload::OperatorTokenIssued(_)
            | EventPayload::OperatorTokenRevoked(_)
            | EventPayload::TemplateCreated(_)
            | EventPayload::NodeCreated(_)
            | EventPayload::InstanceProvisioned(_)
            | EventPayload::AgentEnrolled(_)
            | EventPayload::InstanceTerminated(_)
            | EventPayload::AgentSubmissionRejected(_)
            | EventPayload::NetworkCreated(_)
            | EventPayload::PodSubnetPrefixSet(_)
            | EventPayload::PeerAttached(_)
            | EventPayload::VirtualIpAllocated(_)
            | EventPayload::VirtualIpAllocationFailed(_)
            | EventPayload::VirtualIpCandidateAdded(_)
            | EventPayload::VirtualIpReleased(_)
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
            | EventPayload::ApprovalRejected(_)
            | EventPayload::ApprovalExpired(_)
            | EventPayload::ApprovalSuperseded(_)
            | EventPayload::RecordRejected(_)
            | EventPayload::LogSealed(_)
            | EventPayload::AgentSubmissionsRejectedSummary(_) => {}
        }
    }

    fn on_silent(
        &self,
        state: &FleetState,
        seq: u64,
        event: &Envelope,
        vip: &VirtualIp,
        now: DateTime<Utc>,
        out: &mut Out,
    ) {
        let scored: Vec<Scored> = candidates::candidates(
            state,
            &event.account_id,
            vip,
            None,
            &self.config.scoring(&self.liveness, now),
        );
        let once = |decision: Envelope, then: Option<Box<Envelope>>| Effect::DecideOnce {
            seen_seq: seq,
            decision,
            then,
        };
        let Some(best) = candidates::best(&scored).cloned() else {
            let reason = if scored.is_empty() {
                "no other ready k3s-server in the cluster (single-server cluster?)".to_string()
            } else {
                format!(
                    "{} candidate(s), none heard within the silence threshold",
                    scored.len()
                )
            };
            out.effect(once(
                decision(
                    event,
                    now,
                    "no_candidate",
                    FailoverNoCandidate {
                        virtual_ip_id: vip.id.clone(),
                        holder_peer_id: vip.holder_peer_id.clone(),
                        reason,
                    },
                ),
                None,
            ));
            return;
        };
        match self.config.policy {
            FailoverPolicy::Auto => {
                if let Some(reason) = self.config.damped(vip, now) {
                    out.effect(once(
                        decision(
                            event,
                            now,
                            "suppressed",
                            FailoverSuppressed {
                                virtual_ip_id: vip.id.clone(),
                                holder_peer_id: vip.holder_peer_id.clone(),
                                candidate_peer_id: Some(best.peer_id.clone()),
                                reason,
                            },
                        ),
                        None,
                    ));
                    return;
                }
                let promotion =
                    promotion_event(event, "failover", vip, &best, "auto_failover", None);
                promote_later(state, seq, now, promotion, vip, &best, out);
            }
            FailoverPolicy::RequireApproval => {
                let approval_id = format!(
                    "appr-{}",
                    &derived_event_id(event.id, "approval").simple().to_string()[..12]
                );
                let expires_at = event.occurred_at
                    + chrono::Duration::seconds(self.config.approval_ttl_secs as i64);
                let proposal = decision(
                    event,
                    now,
                    "proposed",
                    FailoverProposed {
                        virtual_ip_id: vip.id.clone(),
                        current_holder_peer_id: vip.holder_peer_id.clone(),
                        candidate_peer_id: best.peer_id.clone(),
                        score: best.score,
                        approval_id: approval_id.clone(),
                        generation: vip.generation,
                        candidates: scored.iter().map(|s| s.candidate.clone()).collect(),
                    },
                );
                let request = decision(event, now,
                    "approval_requested",
                    ApprovalRequested {
                        approval_id,
                        action: VIP_PROMOTION.into(),
                        subject: format!("virtual_ip/{}", vip.id),
                        summary: format!(
                            "promote {} (score {:.2}) to hold VIP {} of cluster {}: holder {} silent since {}",
                            best.peer_id,
                            best.score,
                            vip.vip,
                            vip.cluster_id,
                            vip.holder_peer_id,
                            vip.silent_since.as_deref().unwrap_or("?")
                        ),
                        expires_at: expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    },
                );
                out.effect(once(proposal, Some(Box::new(request))));
            }
        }
    }

    fn on_granted(
        &self,
        state: &FleetState,
        seq: u64,
        event: &Envelope,
        approval_id: &str,
        now: DateTime<Utc>,
        out: &mut Out,
    ) {
        let account = &event.account_id;
        let Some(approval) = state.approval(account, approval_id) else {
            return;
        };
        if approval.action != VIP_PROMOTION || approval.status != ApprovalStatus::Granted {
            return;
        }
        let Some(vip) = state.account(account).and_then(|a| {
            a.virtual_ips.values().find(|v| {
                v.pending_proposal
                    .as_ref()
                    .is_some_and(|pp| pp.approval_id == approval_id)
            })
        }) else {
            return;
        };
        let Some(proposal) = vip.pending_proposal.as_ref() else {
            return;
        };
        let scored = candidates::candidates(
            state,
            account,
            vip,
            None,
            &self.config.scoring(&self.liveness, now),
        );
        let chosen = scored
            .iter()
            .find(|s| s.candidate.peer_id == proposal.candidate_peer_id)
            .map(|s| &s.candidate);
        match chosen {
            Some(to)
                if vip.generation == proposal.generation && vip.status == VipStatus::Allocated =>
            {
                let promotion = promotion_event(
                    event,
                    "failover",
                    vip,
                    to,
                    "approved_failover",
                    Some(approval_id),
                );
                promote_later(state, seq, now, promotion, vip, to, out);
            }
            Some(_) => supersede(
                event,
                now,
                out,
                approval_id,
                format!("the VIP moved on to generation {}", vip.generation),
            ),
            None => supersede(
                event,
                now,
                out,
                approval_id,
                format!(
                    "candidate {} is no longer a ready member",
                    proposal.candidate_peer_id
                ),
            ),
        }
    }

    fn on_drained(
        &self,
        state: &FleetState,
        seq: u64,
        event: &Envelope,
        instance_id: &str,
        now: DateTime<Utc>,
        out: &mut Out,
    ) {
        let account = &event.account_id;
        let Some(acct) = state.account(account) else {
            return;
        };
        let held = acct.virtual_ips.values().filter(|v| {
            v.status == VipStatus::Allocated
                && acct
                    .peers
                    .get(&v.holder_peer_id)
                    .is_some_and(|peer| peer.instance_id == instance_id)
        });
        for vip in held {
            let scored = candidates::candidates(
                state,
                account,
                vip,
                Some(instance_id),
                &self.config.scoring(&self.liveness, now),
            );
            match candidates::best(&scored) {
                Some(to) => {
                    let promotion = promotion_event(event, "failover", vip, to, "drain", None);
                    promote_later(state, seq, now, promotion, vip, to, out);
                }
                None => out.append(decision(event, now,
                    &format!("no_candidate/{}", vip.id),
                    FailoverNoCandidate {
                        virtual_ip_id: vip.id.clone(),
                        holder_peer_id: vip.holder_peer_id.clone(),
                        reason: "the drained holder has no ready k3s-server to hand the VIP to (single-server cluster: the API endpoint is down until it returns)".into(),
                    },
                )),
            }
        }
    }
}

/// Decides a promotion, appended at the end of the batch with the others
/// ([`promote::promote_all`]).
fn promote_later(
    state: &FleetState,
    seq: u64,
    now: DateTime<Utc>,
    mut promotion: Envelope,
    vip: &VirtualIp,
    to: &FailoverCandidate,
    out: &mut Out,
) {
    promotion.occurred_at = now;
    let old = promote::holder_instance(state, &promotion.account_id, vip);
    out.effect(Effect::Promote(PendingPromotion::new(
        seq, promotion, to, old,
    )));
}

/// Decides that the approval `approval_id` is superseded, and why.
fn supersede(
    event: &Envelope,
    now: DateTime<Utc>,
    out: &mut Out,
    approval_id: &str,
    reason: String,
) {
    out.append(decision(
        event,
        now,
        &format!("supersede/{approval_id}"),
        ApprovalSuperseded {
            approval_id: approval_id.to_string(),
            reason,
        },
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use powernode_events::payloads::sdwan::{
        FailoverNoCandidate, FailoverProposed, VipHolderSilent,
    };
    use powernode_events::{AccountId, Actor, EventPayload};
    use powernode_log::embedded::EmbeddedLog;
    use powernode_log::Expect;
    use powernode_runtime::derived_event_id;

    fn caused(cause: &Envelope, tag: &str, payload: impl Into<EventPayload>) -> Envelope {
        let mut e = Envelope::new(
            cause.account_id.clone(),
            Actor::service("failover"),
            payload,
        )
        .caused_by(cause);
        e.id = derived_event_id(cause.id, tag);
        e
    }

    #[tokio::test]
    async fn a_silence_another_replica_decided_is_not_decided_again() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path()).unwrap();
        let account = AccountId::new("acct-1").unwrap();
        let silent = Envelope::new(
            account,
            Actor::service("sensor"),
            VipHolderSilent {
                virtual_ip_id: "vip-1".into(),
                holder_peer_id: "peer-1".into(),
                last_seen_at: "2026-11-21T12:00:00Z".into(),
                threshold_ms: 3000,
                observer: "sensor@test".into(),
                reason: Default::default(),
            },
        );
        let seen = log.append(&silent, Expect::Any).await.unwrap().seq;
        // One replica proposes…
        let proposal = caused(
            &silent,
            "proposed",
            FailoverProposed {
                virtual_ip_id: "vip-1".into(),
                current_holder_peer_id: "peer-1".into(),
                candidate_peer_id: "peer-2".into(),
                score: 0.8,
                approval_id: "appr-1".into(),
                generation: 1,
                candidates: Vec::new(),
            },
        );
        let landed = decide_once(&log, seen, &proposal).await.unwrap();
        assert_eq!(landed, Decided::Landed(seen + 1));
        // …the other, replaying the silence with no candidate heard, does not
        // add a second answer…
        let other = caused(
            &silent,
            "no_candidate",
            FailoverNoCandidate {
                virtual_ip_id: "vip-1".into(),
                holder_peer_id: "peer-1".into(),
                reason: "none heard".into(),
            },
        );
        assert_eq!(
            decide_once(&log, seen, &other).await.unwrap(),
            Decided::Moot(EventKind::FailoverProposed.as_str().into())
        );
        // …and the same proposal again is found, not appended twice.
        assert_eq!(decide_once(&log, seen, &proposal).await.unwrap(), landed);
        assert_eq!(log.last_seq().await.unwrap(), seen + 1);
    }
}
