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

// Candidates and their scores.

fn scored_at(g: &Given, liveness: &Liveness, now: DateTime<Utc>) -> Vec<candidates::Scored> {
    let config = FailoverConfig::default();
    candidates::candidates(
        &g.state(),
        &acct(ACCOUNT),
        &vip(g),
        None,
        &Scoring {
            liveness,
            threshold: config.threshold(),
            window: config.window(),
            now,
        },
    )
}

#[test]
fn a_fresh_candidate_on_the_vips_network_scores_full_marks() {
    let g = with_candidate();
    let now = g.now_plus(Duration::seconds(1));
    let liveness = Liveness::default();
    liveness.record(&g.ids.worker, now - Duration::milliseconds(500));
    let scored = scored_at(&g, &liveness, now);
    let [only] = &scored[..] else {
        panic!("{scored:?}")
    };
    assert_eq!(only.candidate.peer_id, g.ids.worker_peer);
    assert_eq!(only.candidate.score, 1.0);
    assert!(only.alive);
    assert_eq!(
        only.candidate.reasons,
        [
            "ready k3s-server",
            "heartbeat 0.5 s ago",
            "same SD-WAN network"
        ]
    );
    assert_eq!(candidates::best(&scored), Some(&only.candidate));
}

#[test]
fn freshness_falls_from_a_third_of_the_threshold_to_nothing_at_it() {
    let g = with_candidate();
    let now = g.now_plus(Duration::seconds(1));
    // 2 s of a 3 s threshold: halfway between 1 s and 3 s.
    let liveness = Liveness::default();
    liveness.record(&g.ids.worker, now - Duration::seconds(2));
    let scored = scored_at(&g, &liveness, now);
    assert_eq!(scored[0].candidate.score, 0.75);
    assert!(scored[0].alive);
    // At the threshold: listed, scored without freshness, never promoted.
    let liveness = Liveness::default();
    liveness.record(&g.ids.worker, now - Duration::seconds(3));
    let scored = scored_at(&g, &liveness, now);
    assert_eq!(scored[0].candidate.score, 0.5);
    assert!(!scored[0].alive);
    assert_eq!(candidates::best(&scored), None);
}

#[test]
fn a_candidate_never_heard_is_listed_but_not_promoted() {
    let g = with_candidate();
    let now = g.now_plus(Duration::seconds(1));
    let scored = scored_at(&g, &Liveness::default(), now);
    assert_eq!(scored.len(), 1);
    assert!(scored[0]
        .candidate
        .reasons
        .contains(&"no heartbeat heard yet".to_string()));
    assert_eq!(candidates::best(&scored), None);
}

#[test]
fn each_recent_loss_of_the_vip_costs_a_candidate_a_third_of_the_flap_score() {
    let mut g = with_candidate();
    let (vip_id, server, worker) = (
        g.ids.vip.clone(),
        g.ids.server_peer.clone(),
        g.ids.worker_peer.clone(),
    );
    // The VIP went to the worker and came back: the worker lost it once.
    for (generation, from, to) in [(2, &server, &worker), (3, &worker, &server)] {
        g.and(VirtualIpPromoted {
            virtual_ip_id: vip_id.clone(),
            from_peer_id: Some(from.clone()),
            to_peer_id: to.clone(),
            generation,
            reason: "test".into(),
            to_instance_id: None,
            approval_id: None,
        });
    }
    let now = g.now_plus(Duration::seconds(1));
    let liveness = Liveness::default();
    liveness.record(&g.ids.worker, now);
    let scored = scored_at(&g, &liveness, now);
    assert_eq!(scored[0].candidate.score, 0.93);
    assert!(scored[0].candidate.reasons[3].starts_with("lost this VIP 1×"));
}

#[test]
fn a_worker_that_is_not_ready_in_the_cluster_is_no_candidate() {
    let mut g = with_candidate();
    let worker = g.ids.worker.clone();
    g.and(InstanceTerminated {
        instance_id: worker,
    });
    let now = g.now_plus(Duration::seconds(1));
    assert!(scored_at(&g, &Liveness::default(), now).is_empty());
}

// Damping.

#[test]
fn damping_holds_back_within_the_cooldown_and_past_the_rate() {
    let config = FailoverConfig::default();
    let mut g = with_candidate();
    assert_eq!(config.damped(&vip(&g), g.now_plus(Duration::zero())), None);
    let (vip_id, server, worker) = (
        g.ids.vip.clone(),
        g.ids.server_peer.clone(),
        g.ids.worker_peer.clone(),
    );
    for generation in 2..=4 {
        let (from, to) = if generation % 2 == 0 {
            (&server, &worker)
        } else {
            (&worker, &server)
        };
        g.and(VirtualIpPromoted {
            virtual_ip_id: vip_id.clone(),
            from_peer_id: Some(from.clone()),
            to_peer_id: to.clone(),
            generation,
            reason: "test".into(),
            to_instance_id: None,
            approval_id: None,
        });
    }
    let last = g.last().occurred_at;
    let cooldown = config
        .damped(&vip(&g), last + Duration::seconds(10))
        .expect("within the cooldown");
    assert!(
        cooldown.starts_with("cooldown: last promotion 10.0 s ago"),
        "{cooldown}"
    );
    let rate = config
        .damped(&vip(&g), last + Duration::seconds(60))
        .expect("3 promotions within the window");
    assert_eq!(rate, "3 promotions in the last 600 s (max 3)");
    assert_eq!(config.damped(&vip(&g), last + Duration::seconds(700)), None);
}

// A silence.

#[test]
fn a_silence_with_a_live_candidate_is_proposed_and_an_approval_requested() {
    let mut g = with_candidate();
    let r = rules(FailoverPolicy::RequireApproval);
    r.liveness.record(&g.ids.worker, next_decision_time(&g));
    let holder = g.ids.server_peer.clone();
    let out = {
        let s = silent(&g, &holder);
        when(&mut g, &r, s)
    };
    let (EventPayload::FailoverProposed(p), Some(EventPayload::ApprovalRequested(a))) =
        answer(&out)
    else {
        panic!("{:?}", out.effects());
    };
    assert_eq!(p.virtual_ip_id, g.ids.vip);
    assert_eq!(p.current_holder_peer_id, g.ids.server_peer);
    assert_eq!(p.candidate_peer_id, g.ids.worker_peer);
    assert_eq!(p.generation, 1);
    assert_eq!(p.score, 1.0);
    assert_eq!(p.candidates.len(), 1);
    assert_eq!(a.approval_id, p.approval_id);
    assert_eq!(a.action, VIP_PROMOTION);
    assert_eq!(a.subject, format!("virtual_ip/{}", g.ids.vip));
    let expires = g.last().occurred_at + Duration::seconds(900);
    assert_eq!(
        a.expires_at,
        expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let Effect::DecideOnce { seen_seq, .. } = &out.effects()[0] else {
        unreachable!()
    };
    assert_eq!(*seen_seq, g.stream.events.len() as u64);
}

#[test]
fn a_silence_is_decided_alike_every_time() {
    let mut g = with_candidate();
    let r = rules(FailoverPolicy::RequireApproval);
    r.liveness.record(&g.ids.worker, next_decision_time(&g));
    let holder = g.ids.server_peer.clone();
    let first = {
        let s = silent(&g, &holder);
        when(&mut g, &r, s)
    };
    let again = decide_at(&g, &r, g.now_plus(Duration::seconds(1)));
    assert_eq!(first.effects(), again.effects());
}

#[test]
fn a_silence_without_a_live_candidate_says_so() {
    let mut g = with_candidate();
    let r = rules(FailoverPolicy::RequireApproval);
    let holder = g.ids.server_peer.clone();
    let out = {
        let s = silent(&g, &holder);
        when(&mut g, &r, s)
    };
    let (EventPayload::FailoverNoCandidate(n), None) = answer(&out) else {
        panic!("{:?}", out.effects());
    };
    assert_eq!(
        n.reason,
        "1 candidate(s), none heard within the silence threshold"
    );
}

#[test]
fn a_silence_in_a_single_server_cluster_has_no_candidate() {
    let mut g = Given::joined_worker();
    let r = rules(FailoverPolicy::Auto);
    let holder = g.ids.server_peer.clone();
    let out = {
        let s = silent(&g, &holder);
        when(&mut g, &r, s)
    };
    let (EventPayload::FailoverNoCandidate(n), None) = answer(&out) else {
        panic!("{:?}", out.effects());
    };
    assert!(
        n.reason.starts_with("no other ready k3s-server"),
        "{}",
        n.reason
    );
}

#[test]
fn under_auto_a_silence_promotes_the_best_candidate_and_nudges_both_agents() {
    let mut g = with_candidate();
    let r = rules(FailoverPolicy::Auto);
    r.liveness.record(&g.ids.worker, next_decision_time(&g));
    let holder = g.ids.server_peer.clone();
    let out = {
        let s = silent(&g, &holder);
        when(&mut g, &r, s)
    };
    assert!(out.events().is_empty());
    let (p, nudge) = promotion(&out);
    assert_eq!(p.to_peer_id, g.ids.worker_peer);
    assert_eq!(p.from_peer_id.as_deref(), Some(g.ids.server_peer.as_str()));
    assert_eq!(p.generation, 2);
    assert_eq!(p.reason, "auto_failover");
    assert_eq!(p.approval_id, None);
    assert_eq!(nudge, &[g.ids.worker.clone(), g.ids.server.clone()]);
}

#[test]
fn under_auto_a_silence_right_after_a_promotion_is_suppressed() {
    let mut g = with_candidate();
    let (vip_id, server, worker) = (
        g.ids.vip.clone(),
        g.ids.server_peer.clone(),
        g.ids.worker_peer.clone(),
    );
    g.and(VirtualIpPromoted {
        virtual_ip_id: vip_id,
        from_peer_id: Some(server.clone()),
        to_peer_id: worker.clone(),
        generation: 2,
        reason: "auto_failover".into(),
        to_instance_id: None,
        approval_id: None,
    });
    let r = rules(FailoverPolicy::Auto);
    // The old holder (now a candidate) is heard; the new one goes silent.
    r.liveness.record(&g.ids.server, next_decision_time(&g));
    let out = {
        let s = silent(&g, &worker);
        when(&mut g, &r, s)
    };
    let (EventPayload::FailoverSuppressed(s), None) = answer(&out) else {
        panic!("{:?}", out.effects());
    };
    assert_eq!(s.candidate_peer_id.as_deref(), Some(server.as_str()));
    assert!(s.reason.starts_with("cooldown:"), "{}", s.reason);
}

#[test]
fn a_silence_no_longer_current_or_already_proposed_is_left_alone() {
    let r = rules(FailoverPolicy::RequireApproval);
    // About a peer that is not the holder.
    let mut g = with_candidate();
    r.liveness.record(&g.ids.worker, next_decision_time(&g));
    let other = g.ids.worker_peer.clone();
    assert!({
        let s = silent(&g, &other);
        when(&mut g, &r, s)
    }
    .is_empty());
    // The holder was heard again before the silence was decided.
    let mut g = with_candidate();
    let holder = g.ids.server_peer.clone();
    let s = silent(&g, &holder);
    g.and(s.clone());
    let (seq, event) = g.last_pair();
    g.and(VipHolderRecovered {
        virtual_ip_id: g.ids.vip.clone(),
        holder_peer_id: holder.clone(),
        silent_for_ms: 10,
    });
    let mut out = Decisions::default();
    r.decide(
        &g.state(),
        seq,
        &event,
        g.now_plus(Duration::seconds(1)),
        &mut out,
    );
    assert!(out.is_empty(), "{:?}", out.effects());
    // A proposal is waiting already.
    let mut g = with_candidate();
    g.and(s.clone());
    propose(&mut g, "appr-1");
    let out = when(&mut g, &r, s);
    assert!(out.is_empty());
}

// Approvals.

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

#[test]
fn a_granted_approval_promotes_the_proposed_candidate() {
    let mut g = with_candidate();
    propose(&mut g, "appr-1");
    let r = rules(FailoverPolicy::RequireApproval);
    r.liveness.record(&g.ids.worker, next_decision_time(&g));
    let out = when(
        &mut g,
        &r,
        ApprovalGranted {
            approval_id: "appr-1".into(),
        },
    );
    let (p, _) = promotion(&out);
    assert_eq!(p.to_peer_id, g.ids.worker_peer);
    assert_eq!(p.generation, 2);
    assert_eq!(p.reason, "approved_failover");
    assert_eq!(p.approval_id.as_deref(), Some("appr-1"));
}

#[test]
fn a_granted_approval_whose_candidate_left_is_superseded() {
    let mut g = with_candidate();
    propose(&mut g, "appr-1");
    let worker = g.ids.worker.clone();
    g.and(InstanceTerminated {
        instance_id: worker,
    });
    let r = rules(FailoverPolicy::RequireApproval);
    let out = when(
        &mut g,
        &r,
        ApprovalGranted {
            approval_id: "appr-1".into(),
        },
    );
    assert_eq!(
        superseded(&out),
        [(
            "appr-1".to_string(),
            format!(
                "candidate {} is no longer a ready member",
                g.ids.worker_peer
            )
        )]
    );
}

#[test]
fn a_granted_approval_of_another_action_or_unknown_is_not_a_promotion() {
    let mut g = with_candidate();
    let r = rules(FailoverPolicy::RequireApproval);
    g.and(ApprovalRequested {
        approval_id: "appr-x".into(),
        action: "something_else".into(),
        subject: "virtual_ip/x".into(),
        summary: "x".into(),
        expires_at: "2099-01-01T00:00:00Z".into(),
    });
    for id in ["appr-x", "appr-unknown"] {
        let out = when(
            &mut g,
            &r,
            ApprovalGranted {
                approval_id: id.into(),
            },
        );
        assert!(out.is_empty(), "{id}");
    }
}

#[test]
fn a_holder_heard_again_supersedes_its_waiting_proposal() {
    let mut g = with_candidate();
    propose(&mut g, "appr-1");
    let r = rules(FailoverPolicy::RequireApproval);
    let (vip_id, holder) = (g.ids.vip.clone(), g.ids.server_peer.clone());
    let out = when(
        &mut g,
        &r,
        VipHolderRecovered {
            virtual_ip_id: vip_id,
            holder_peer_id: holder.clone(),
            silent_for_ms: 4000,
        },
    );
    assert_eq!(
        superseded(&out),
        [(
            "appr-1".to_string(),
            format!("holder {holder} was heard again")
        )]
    );
}

#[test]
fn a_promotion_supersedes_the_other_waiting_approvals_about_the_vip() {
    let mut g = with_candidate();
    propose(&mut g, "appr-1");
    let r = rules(FailoverPolicy::RequireApproval);
    let (vip_id, server, worker) = (
        g.ids.vip.clone(),
        g.ids.server_peer.clone(),
        g.ids.worker_peer.clone(),
    );
    let forced = VirtualIpPromoted {
        virtual_ip_id: vip_id,
        from_peer_id: Some(server),
        to_peer_id: worker.clone(),
        generation: 2,
        reason: "forced".into(),
        to_instance_id: None,
        approval_id: None,
    };
    let out = when(&mut g, &r, forced.clone());
    assert_eq!(
        superseded(&out),
        [(
            "appr-1".to_string(),
            format!("the VIP was promoted to {worker} at generation 2 (forced)")
        )]
    );
    // The promotion that carried out the approval does not supersede it.
    let mut g = with_candidate();
    propose(&mut g, "appr-1");
    let out = when(
        &mut g,
        &r,
        VirtualIpPromoted {
            approval_id: Some("appr-1".into()),
            ..forced
        },
    );
    assert!(out.is_empty());
}

// Drains.

#[test]
fn a_drained_holder_hands_its_vip_to_the_best_candidate() {
    let mut g = with_candidate();
    let r = rules(FailoverPolicy::RequireApproval);
    r.liveness.record(&g.ids.worker, next_decision_time(&g));
    let server = g.ids.server.clone();
    let out = when(
        &mut g,
        &r,
        InstanceDrained {
            instance_id: server,
        },
    );
    let (p, _) = promotion(&out);
    assert_eq!(p.to_peer_id, g.ids.worker_peer);
    assert_eq!(p.reason, "drain");
}

#[test]
fn a_drained_holder_without_a_candidate_says_so() {
    let mut g = Given::joined_worker();
    let r = rules(FailoverPolicy::RequireApproval);
    let server = g.ids.server.clone();
    let out = when(
        &mut g,
        &r,
        InstanceDrained {
            instance_id: server,
        },
    );
    assert!(out.effects().is_empty());
    let [EventPayload::FailoverNoCandidate(n)] = payloads(&out)[..] else {
        panic!("{:?}", payloads(&out));
    };
    assert!(n.reason.starts_with("the drained holder"), "{}", n.reason);
}

#[test]
fn a_drained_instance_holding_nothing_decides_nothing() {
    let mut g = with_candidate();
    let r = rules(FailoverPolicy::Auto);
    let worker = g.ids.worker.clone();
    let out = when(
        &mut g,
        &r,
        InstanceDrained {
            instance_id: worker,
        },
    );
    assert!(out.is_empty());
}

// Expiry.

fn requested(g: &Given, approval_id: &str, expires_at: DateTime<Utc>) -> ApprovalRequested {
    ApprovalRequested {
        approval_id: approval_id.into(),
        action: VIP_PROMOTION.into(),
        subject: format!("virtual_ip/{}", g.ids.vip),
        summary: "promote".into(),
        expires_at: expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }
}

#[test]
fn approvals_past_their_time_and_undecided_are_due() {
    let mut g = with_candidate();
    let base = g.now_plus(Duration::seconds(100));
    let (a, b, c) = (
        requested(&g, "appr-a", base),
        requested(&g, "appr-b", base + Duration::seconds(10)),
        requested(&g, "appr-c", base),
    );
    g.and(a).and(b).and(c).and(ApprovalGranted {
        approval_id: "appr-c".into(),
    });
    let due_at = |now| -> Vec<String> {
        expiry::due(&g.state(), now)
            .into_iter()
            .map(|e| match e.payload {
                EventPayload::ApprovalExpired(p) => p.approval_id,
                other => panic!("{other:?}"),
            })
            .collect()
    };
    assert!(due_at(base - Duration::seconds(1)).is_empty());
    assert_eq!(due_at(base), ["appr-a"]);
    assert_eq!(due_at(base + Duration::seconds(10)), ["appr-a", "appr-b"]);
    // One expiry per approval, whoever notices it.
    let state = g.state();
    assert_eq!(
        expiry::due(&state, base)[0].id,
        expiry::due(&state, base + Duration::seconds(5))[0].id
    );
}

#[tokio::test(start_paused = true)]
async fn the_expiry_timer_expires_an_approval_once_its_time_has_come() {
    use powernode_log::embedded::EmbeddedLog;
    use powernode_log::Filter;
    use powernode_runtime::Shared;
    use std::time::Duration as Std;
    use tokio_util::sync::CancellationToken;

    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open_shared(dir.path()).unwrap();
    let mut g = with_candidate();
    let start = g.now_plus(Duration::seconds(1));
    let request = requested(&g, "appr-1", start + Duration::seconds(10));
    g.and(request);
    let shared: Shared<powernode_projections::FleetState> = Shared::default();
    *shared.state.write().await = g.state();
    let stop = CancellationToken::new();
    let timer = tokio::spawn(expiry::run_expiry(
        log.clone(),
        shared,
        paused_clock(start),
        stop.clone(),
    ));
    let records = || async { log.read(1, 10, &Filter::all()).await.unwrap() };

    tokio::time::advance(Std::from_secs(9)).await;
    assert!(settled_for(Std::from_millis(20), &records).await.is_empty());
    tokio::time::advance(Std::from_secs(2)).await;
    let found = settled(&records).await;
    assert_eq!(found.len(), 1);
    let event = powernode_events::Envelope::decode(&found[0].bytes).unwrap();
    let EventPayload::ApprovalExpired(p) = event.payload else {
        panic!("{event:?}")
    };
    assert_eq!(p.approval_id, "appr-1");

    stop.cancel();
    timer.await.unwrap();
}

// The effects, executed against an embedded log.

/// `g`'s events in an embedded log (sequences as in the example), and a
/// failover reactor on it.
async fn reactor_on_log(
    g: &Given,
    dir: &std::path::Path,
    policy: FailoverPolicy,
) -> (
    powernode_log::SharedLog,
    Failover,
    crate::liveness::SharedLiveness,
) {
    use powernode_log::Expect;
    let log = powernode_log::embedded::EmbeddedLog::open_shared(dir).unwrap();
    for (seq, event) in &g.stream.events {
        assert_eq!(log.append(event, Expect::Any).await.unwrap().seq, *seq);
    }
    let liveness = Liveness::shared();
    let config = FailoverConfig {
        policy,
        ..FailoverConfig::default()
    };
    (
        log.clone(),
        Failover::new(log, liveness.clone(), config),
        liveness,
    )
}

#[tokio::test]
async fn a_standing_proposal_brings_its_approval_request_and_a_second_answer_is_moot() {
    use powernode_runtime::{Outbox, Reactor};
    let dir = tempfile::tempdir().unwrap();
    let mut g = with_candidate();
    let holder = g.ids.server_peer.clone();
    let s = silent(&g, &holder);
    g.and(s);
    let (log, mut reactor, liveness) =
        reactor_on_log(&g, dir.path(), FailoverPolicy::RequireApproval).await;
    let now = g.now_plus(Duration::seconds(1));
    liveness.record(&g.ids.worker, now);
    let (seq, _) = g.last_pair();

    let (_, mut effects) = g.decide(&mut reactor, now).into_parts();
    let mut outbox = Outbox::default();
    reactor
        .execute(seq, &mut effects, &mut outbox)
        .await
        .unwrap();
    assert!(effects.is_empty(), "every effect done");
    assert_eq!(
        log.last_seq().await.unwrap(),
        seq + 1,
        "the proposal landed"
    );
    assert!(matches!(
        outbox.events(),
        [e] if matches!(e.payload, EventPayload::ApprovalRequested(_))
    ));

    // Another replica, hearing no one, answers the same silence otherwise.
    let (_, mut other) = g
        .decide(
            &mut Failover::new(log.clone(), Liveness::shared(), FailoverConfig::default()),
            now,
        )
        .into_parts();
    assert!(matches!(&other[..], [Effect::DecideOnce { decision, .. }]
        if matches!(decision.payload, EventPayload::FailoverNoCandidate(_))));
    let mut outbox = Outbox::default();
    reactor.execute(seq, &mut other, &mut outbox).await.unwrap();
    assert_eq!(log.last_seq().await.unwrap(), seq + 1, "no second answer");
    assert!(outbox.events().is_empty());
}

#[tokio::test]
async fn promotions_wait_for_the_end_of_the_batch() {
    use powernode_runtime::{Outbox, Reactor};
    let dir = tempfile::tempdir().unwrap();
    let mut g = with_candidate();
    let holder = g.ids.server_peer.clone();
    let s = silent(&g, &holder);
    g.and(s);
    let (log, mut reactor, liveness) = reactor_on_log(&g, dir.path(), FailoverPolicy::Auto).await;
    let now = g.now_plus(Duration::seconds(1));
    liveness.record(&g.ids.worker, now);
    let (seq, _) = g.last_pair();

    let (_, mut effects) = g.decide(&mut reactor, now).into_parts();
    assert!(matches!(&effects[..], [Effect::Promote(_)]));
    reactor
        .execute(seq, &mut effects, &mut Outbox::default())
        .await
        .unwrap();
    assert_eq!(log.last_seq().await.unwrap(), seq, "nothing appended yet");
    reactor.end_batch().await.unwrap();
    let found = log
        .read(seq + 1, 10, &powernode_log::Filter::all())
        .await
        .unwrap();
    let [promoted] = &found[..] else {
        panic!("{found:?}")
    };
    let e = powernode_events::Envelope::decode(&promoted.bytes).unwrap();
    let EventPayload::VirtualIpPromoted(p) = e.payload else {
        panic!("{e:?}")
    };
    assert_eq!(p.to_peer_id, g.ids.worker_peer);
    // Done once: a second end of batch appends nothing.
    reactor.end_batch().await.unwrap();
    assert_eq!(log.last_seq().await.unwrap(), seq + 1);
}
