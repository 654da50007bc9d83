//! A holder gone silent: proposed, said to have no candidate, promoted under
//! `auto`, suppressed, or left alone.

use super::*;

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
