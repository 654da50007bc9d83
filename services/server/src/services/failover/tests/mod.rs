//! The failover rules, given/when/then: candidates and their scores, flap
//! damping, proposals, approvals turned into promotions, drains, and what
//! supersedes a waiting approval. No log: the rules only decide.

use super::candidates::{self, Scoring};
use super::decide::{Effect, Rules};
use super::*;
use crate::liveness::Liveness;
use crate::services::given::*;
use chrono::{DateTime, Duration, Utc};
use powernode_events::payloads::approvals::{ApprovalGranted, ApprovalRequested};
use powernode_events::payloads::fleet::{InstanceDrained, InstanceTerminated};
use powernode_events::payloads::sdwan::{
    FailoverProposed, VipHolderRecovered, VipHolderSilent, VirtualIpCandidateAdded,
    VirtualIpPromoted,
};
use powernode_events::EventPayload;
use powernode_projections::fleet::VirtualIp;
use powernode_runtime::Decisions;

/// A cluster whose VIP is held by the server's peer, with the worker's
/// peer (ready in the cluster) as its failover candidate.
fn with_candidate() -> Given {
    let mut g = Given::joined_worker();
    let (vip, peer) = (g.ids.vip.clone(), g.ids.worker_peer.clone());
    g.and(VirtualIpCandidateAdded {
        virtual_ip_id: vip,
        peer_id: peer,
    });
    g
}

fn silent(g: &Given, holder: &str) -> VipHolderSilent {
    VipHolderSilent {
        virtual_ip_id: g.ids.vip.clone(),
        holder_peer_id: holder.to_string(),
        last_seen_at: "2026-09-21T12:00:00.000Z".into(),
        threshold_ms: 3000,
        observer: "sensor@test".into(),
        reason: Default::default(),
    }
}

fn rules(policy: FailoverPolicy) -> Rules {
    Rules {
        liveness: Liveness::shared(),
        config: FailoverConfig {
            policy,
            ..FailoverConfig::default()
        },
    }
}

/// When `payload` happens, the rules decide one second later.
fn when(g: &mut Given, rules: &Rules, payload: impl Into<EventPayload>) -> Decisions<Effect> {
    g.and(payload);
    let now = g.now_plus(Duration::seconds(1));
    decide_at(g, rules, now)
}

fn decide_at(g: &Given, rules: &Rules, now: DateTime<Utc>) -> Decisions<Effect> {
    let state = g.state();
    let (seq, event) = g.stream.events.last().expect("events");
    let mut out = Decisions::default();
    rules.decide(&state, *seq, event, now, &mut out);
    out
}

/// The time the next event will have (the fixture's clock: one second per
/// event), plus one second: when the rules decide about it.
fn next_decision_time(g: &Given) -> DateTime<Utc> {
    g.now_plus(Duration::seconds(2))
}

fn vip(g: &Given) -> VirtualIp {
    let account = acct(ACCOUNT);
    g.state()
        .virtual_ip(&account, &g.ids.vip)
        .expect("the example has a VIP")
        .clone()
}

/// The one answer to a silence decided: the answer and what follows it.
fn answer(out: &Decisions<Effect>) -> (&EventPayload, Option<&EventPayload>) {
    assert!(out.events().is_empty(), "{:?}", out.events());
    match out.effects() {
        [Effect::DecideOnce { decision, then, .. }] => {
            (&decision.payload, then.as_ref().map(|t| &t.payload))
        }
        other => panic!("expected one answer to the silence, got {other:?}"),
    }
}

fn promotion(out: &Decisions<Effect>) -> (&VirtualIpPromoted, &Vec<String>) {
    match out.effects() {
        [Effect::Promote(p)] => match &p.promotion.payload {
            EventPayload::VirtualIpPromoted(v) => (v, &p.nudge),
            other => panic!("not a promotion: {other:?}"),
        },
        other => panic!("expected one promotion, got {other:?}"),
    }
}

fn superseded(out: &Decisions<Effect>) -> Vec<(String, String)> {
    assert!(out.effects().is_empty(), "{:?}", out.effects());
    payloads(out)
        .into_iter()
        .map(|p| match p {
            EventPayload::ApprovalSuperseded(s) => (s.approval_id.clone(), s.reason.clone()),
            other => panic!("not a supersession: {other:?}"),
        })
        .collect()
}

/// The holder silent, the worker proposed under `approval_id`, and the
/// approval requested.
fn propose(g: &mut Given, approval_id: &str) {
    let (vip_id, holder, candidate) = (
        g.ids.vip.clone(),
        g.ids.server_peer.clone(),
        g.ids.worker_peer.clone(),
    );
    if !vip(g).holder_silent {
        let s = silent(g, &holder);
        g.and(s);
    }
    g.and(FailoverProposed {
        virtual_ip_id: vip_id.clone(),
        current_holder_peer_id: holder,
        candidate_peer_id: candidate,
        score: 1.0,
        approval_id: approval_id.into(),
        generation: 1,
        candidates: Vec::new(),
    })
    .and(ApprovalRequested {
        approval_id: approval_id.into(),
        action: VIP_PROMOTION.into(),
        subject: format!("virtual_ip/{vip_id}"),
        summary: "promote".into(),
        expires_at: "2099-01-01T00:00:00Z".into(),
    });
}

mod approvals;
mod drains;
mod effects;
mod scores;
mod silence;
