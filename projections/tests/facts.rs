//! Given/when/then tests of the other facts the fleet fold records: VIP
//! failover, approvals, instance lifecycle, tokens and agent keys, and
//! tolerance of events about unknown objects.

mod common;

use common::*;
use powernode_events::examples::{example_envelope, example_payloads};
use powernode_events::payloads::approvals::{ApprovalExpired, ApprovalGranted, ApprovalRejected};
use powernode_events::payloads::fleet::{
    InstanceDrained, InstanceTerminated, OperatorTokenRevoked,
};
use powernode_events::payloads::k3s::JoinRejected;
use powernode_events::payloads::sdwan::{
    VipHolderSilent, VirtualIpCandidateAdded, VirtualIpPromoted,
};
use powernode_events::Actor;
use powernode_projections::fleet::{ApprovalStatus, InstanceStatus, K3sPhase};
use powernode_projections::{FleetState, Projection};

#[test]
fn failover_facts_move_the_holder_under_the_newest_generation_only() {
    // given an active cluster with a second server added as a candidate
    let (a, ids) = ("acme", Ids::new("acme"));
    let mut s = Stream::new();
    setup(&mut s, a, &ids);
    bootstrap(&mut s, a, &ids);
    s.push(
        a,
        VirtualIpCandidateAdded {
            virtual_ip_id: ids.vip.clone(),
            peer_id: "peer-2".into(),
        },
    )
    .push(
        a,
        VirtualIpCandidateAdded {
            virtual_ip_id: ids.vip.clone(),
            peer_id: "peer-2".into(),
        },
    )
    .push(
        a,
        VipHolderSilent {
            virtual_ip_id: ids.vip.clone(),
            holder_peer_id: ids.server_peer.clone(),
            last_seen_at: "2026-11-21T11:59:56Z".into(),
            threshold_ms: 3000,
            observer: "sensor".into(),
            reason: Default::default(),
        },
    );
    let acct = acct(a);
    let silent = s.fold();
    let vip = silent.virtual_ip(&acct, &ids.vip).unwrap();
    assert!(vip.holder_silent);
    assert_eq!(
        vip.failover_candidate_peer_ids,
        vec!["peer-2".to_string()],
        "no duplicates"
    );

    // when promoted at generation 2, then a stale generation-2 promotion arrives
    s.push(
        a,
        VirtualIpPromoted {
            virtual_ip_id: ids.vip.clone(),
            from_peer_id: Some(ids.server_peer.clone()),
            to_peer_id: "peer-2".into(),
            generation: 2,
            reason: "approved_failover".into(),
            to_instance_id: None,
            approval_id: None,
        },
    )
    .push(
        a,
        VirtualIpPromoted {
            virtual_ip_id: ids.vip.clone(),
            from_peer_id: Some(ids.server_peer.clone()),
            to_peer_id: "peer-3".into(),
            generation: 2,
            reason: "forced".into(),
            to_instance_id: None,
            approval_id: None,
        },
    );
    let state = s.fold();

    // then the first generation-2 holder stands, no longer silent
    let vip = state.virtual_ip(&acct, &ids.vip).unwrap();
    assert_eq!(vip.holder_peer_id, "peer-2");
    assert_eq!(vip.generation, 2);
    assert!(!vip.holder_silent);
    // the holder is not its own candidate; the holder it replaced is one now
    assert_eq!(
        vip.failover_candidates().collect::<Vec<_>>(),
        vec![ids.server_peer.as_str()],
        "the replaced holder stays a candidate, the holder is not its own"
    );
}

#[test]
fn approvals_record_the_first_decision_and_who_made_it() {
    let a = "acme";
    let acct = acct(a);
    let operator = Actor::Operator {
        token_id: "tok".into(),
    };

    // given three requests
    let mut s = Stream::new();
    for id in ["appr-1", "appr-2", "appr-3"] {
        approval(&mut s, a, id);
    }
    assert_eq!(s.fold().pending_approvals(&acct).len(), 3);

    // when one is granted (then rejected too late), one rejected, one expired
    s.push_as(
        a,
        operator.clone(),
        ApprovalGranted {
            approval_id: "appr-1".into(),
        },
    )
    .push_as(
        a,
        operator.clone(),
        ApprovalRejected {
            approval_id: "appr-1".into(),
            reason: "late".into(),
        },
    )
    .push_as(
        a,
        operator.clone(),
        ApprovalRejected {
            approval_id: "appr-2".into(),
            reason: "window".into(),
        },
    )
    .push(
        a,
        ApprovalExpired {
            approval_id: "appr-3".into(),
        },
    );
    let state = s.fold();

    // then
    let one = state.approval(&acct, "appr-1").unwrap();
    assert_eq!(one.status, ApprovalStatus::Granted);
    assert_eq!(one.decided_by, Some(operator));
    assert_eq!(one.reason, None);
    assert_eq!(
        state.approval(&acct, "appr-2").unwrap().status,
        ApprovalStatus::Rejected
    );
    assert_eq!(
        state.approval(&acct, "appr-2").unwrap().reason.as_deref(),
        Some("window")
    );
    assert_eq!(
        state.approval(&acct, "appr-3").unwrap().status,
        ApprovalStatus::Expired
    );
    assert!(state.pending_approvals(&acct).is_empty());
    assert!(one.expires_at_utc().is_some());
}

#[test]
fn instance_lifecycle_tokens_and_agent_keys() {
    let (a, ids) = ("acme", Ids::new("acme"));
    let acct = acct(a);
    let mut s = Stream::new();
    setup(&mut s, a, &ids);
    s.push(
        a,
        JoinRejected {
            instance_id: ids.worker.clone(),
            target_cluster_id: Some("cluster-nope".into()),
            reason: "cluster_not_found".into(),
        },
    );

    // given enrolled instances, an issued token and a rejected join
    let state = s.fold();
    let key = state.agent_key(&ids.server).expect("enrolled key");
    assert_eq!(hex::encode(key), AGENT_KEY);
    assert_eq!(
        state.find_instance(&ids.server).map(|(acc, _)| acc.clone()),
        Some(acct.clone())
    );
    assert!(state.agent_key("inst-unknown").is_none());
    let (tok_acct, token) = state
        .operator_token_by_fingerprint("sha256:acme")
        .expect("token");
    assert_eq!(tok_acct, &acct);
    assert!(token.allows("system.kubernetes_provision"));
    let worker = state.instance(&acct, &ids.worker).unwrap();
    assert_eq!(worker.k3s_phase, Some(K3sPhase::JoinRejected));
    assert_eq!(
        worker.last_join_rejection.as_deref(),
        Some("cluster_not_found")
    );

    // when the token is revoked, one instance drained and the other terminated
    s.push(
        a,
        OperatorTokenRevoked {
            token_id: "acme-tok".into(),
        },
    )
    .push(
        a,
        InstanceDrained {
            instance_id: ids.worker.clone(),
        },
    )
    .push(
        a,
        InstanceTerminated {
            instance_id: ids.server.clone(),
        },
    )
    .push(
        a,
        InstanceDrained {
            instance_id: ids.server.clone(),
        },
    );
    let state = s.fold();

    // then
    assert!(!state
        .operator_token(&acct, "acme-tok")
        .unwrap()
        .allows("system.kubernetes_provision"));
    assert_eq!(
        state.instance(&acct, &ids.worker).unwrap().status,
        InstanceStatus::Drained
    );
    assert!(
        state.agent_key(&ids.worker).is_some(),
        "a drained agent may still report"
    );
    assert_eq!(
        state.instance(&acct, &ids.server).unwrap().status,
        InstanceStatus::Terminated
    );
    assert!(
        state.agent_key(&ids.server).is_none(),
        "a terminated agent has no key"
    );
}

#[test]
fn events_about_unknown_objects_are_tolerated() {
    // given an empty fleet, when every example kind arrives out of context
    let mut state = FleetState::default();
    for (i, payload) in example_payloads().into_iter().enumerate() {
        state.apply(i as u64 + 1, &example_envelope(payload));
    }
    // then nothing panicked and every event counted
    assert_eq!(state.applied(), powernode_events::ALL_KINDS.len() as u64);
    let snapshot = state.snapshot().unwrap();
    assert_eq!(FleetState::restore(&snapshot).unwrap(), state);
}

#[test]
fn an_assignment_for_one_instance_overrides_the_template_wide_one_for_it_alone() {
    use powernode_events::payloads::k3s::{K3sModule, ModuleAssigned, ModuleConfig};
    // given a fleet whose server template has its template-wide k3s-server assignment
    let (a, ids) = ("acme", Ids::new("acme"));
    let mut s = Stream::new();
    setup(&mut s, a, &ids);
    // when one instance of the template gets its own assignment
    s.push(
        a,
        ModuleAssigned {
            assignment_id: "asg-own".into(),
            template_id: ids.server_tmpl.clone(),
            module_name: K3sModule::K3sServer,
            config: ModuleConfig {
                target_cluster_id: Some("cluster-x".into()),
                extra: Default::default(),
            },
            module_version_id: Some("v-k3s-1.31.0".into()),
            instance_id: Some(ids.server.clone()),
        },
    );
    let state = s.fold();
    let t = state.template(&acct(a), &ids.server_tmpl).unwrap();
    // then the template-wide list is unchanged, and only that instance sees its own
    assert!(t
        .module_assignments
        .iter()
        .all(|x| x.assignment_id != "asg-own"));
    let own = t.assignment_for(&ids.server, K3sModule::K3sServer).unwrap();
    assert_eq!(own.assignment_id, "asg-own");
    assert_eq!(own.config.target_cluster_id.as_deref(), Some("cluster-x"));
    let other = t.assignment_for("acme-inst-other", K3sModule::K3sServer);
    assert_ne!(other.map(|x| x.assignment_id.as_str()), Some("asg-own"));
    assert_eq!(
        t.assignments_for(&ids.server).len(),
        t.module_assignments.len().max(1)
    );
}
