//! Rolling upgrades: batches in order, pause and resume, the failure
//! limit, VIP moves, completion, timeouts.

use super::super::{Effect, SkillsConfig};
use super::world::*;
use crate::services::given::*;
use powernode_events::payloads::k3s::K3sModule;
use powernode_events::payloads::sdwan::VirtualIpPromoted;
use powernode_events::payloads::skills::*;
use powernode_events::EventPayload;
use powernode_projections::fleet::{ExecutionState, StepState};

fn ids() -> Ids {
    Ids::new(ACCOUNT)
}

/// The cluster with the rolling upgrade started (`max` failures in a row).
fn rolling(max: u32) -> (Given, Vec<EventPayload>) {
    let mut g = cluster();
    let first = when(
        &mut g,
        started(SkillName::RollingModuleUpgrade, rolling_plan(), max),
    );
    (g, first)
}

#[test]
fn batches_start_in_order_each_once_its_predecessor_finished() {
    let (mut g, first) = rolling(1);
    assert_eq!(starts(&first), vec![0], "only batch 0 starts: {first:?}");
    // The worker's report: its step succeeds and batch 1 starts, in one pass.
    let next = when_agent(
        &mut g,
        &ids().worker,
        upgraded(0, &ids().worker, K3sModule::K3sAgent),
    );
    assert!(
        matches!(&next[0], EventPayload::SkillStepSucceeded(p) if p.step == 0 && p.running_version_id.as_deref() == Some(TO)),
        "{next:?}"
    );
    assert_eq!(starts(&next), vec![1]);
    // With its decisions folded, nothing more is due until batch 1 reports.
    let again = g.decide(&mut rules(), g.now_plus(chrono::Duration::seconds(1)));
    assert!(again.is_empty(), "{:?}", again.effects());
}

#[test]
fn the_same_decision_made_twice_has_the_same_ids() {
    let mut g = cluster();
    g.and(started(SkillName::RollingModuleUpgrade, rolling_plan(), 1));
    let a = g.decide(&mut rules(), g.now_plus(chrono::Duration::seconds(1)));
    let b = g.decide(&mut rules(), g.now_plus(chrono::Duration::seconds(5)));
    let ids = |d: &powernode_runtime::Decisions<Effect>| -> Vec<uuid::Uuid> {
        d.effects()
            .iter()
            .filter_map(|e| match e {
                Effect::Execution(d) => Some(d.events.iter().map(|e| e.id).collect::<Vec<_>>()),
                Effect::Promote(_) => None,
            })
            .flatten()
            .collect()
    };
    assert!(!ids(&a).is_empty());
    assert_eq!(ids(&a), ids(&b));
}

#[test]
fn a_paused_execution_starts_nothing_and_a_resumed_one_goes_on() {
    let (mut g, _) = rolling(1);
    let paused = when(
        &mut g,
        SkillExecutionPaused {
            execution_id: EXEC.into(),
            reason: "operator".into(),
        },
    );
    assert!(paused.is_empty(), "{paused:?}");
    // The running step still finishes…
    let next = when_agent(
        &mut g,
        &ids().worker,
        upgraded(0, &ids().worker, K3sModule::K3sAgent),
    );
    assert!(
        matches!(&next[..], [EventPayload::SkillStepSucceeded(p)] if p.step == 0),
        "{next:?}"
    );
    // …and nothing starts until the execution is resumed.
    let resumed = when(
        &mut g,
        SkillExecutionResumed {
            execution_id: EXEC.into(),
        },
    );
    assert_eq!(starts(&resumed), vec![1], "{resumed:?}");
}

#[test]
fn reaching_the_failure_limit_aborts_and_no_later_step_starts() {
    let (mut g, _) = rolling(1);
    let next = when_agent(
        &mut g,
        &ids().worker,
        upgrade_failed(0, &ids().worker, K3sModule::K3sAgent),
    );
    match &next[..] {
        [EventPayload::SkillStepFailed(f), EventPayload::SkillExecutionAborted(a)] => {
            assert_eq!(f.consecutive_failures, 1);
            assert!(f.rolled_back);
            assert_eq!(f.running_version_id.as_deref(), Some(FROM));
            assert_eq!(a.reason, "max_consecutive_failures");
            assert_eq!(
                a.detail,
                "1 failure(s) in a row: acme-worker-1: node not ready after 60 s; no further node touched"
            );
        }
        other => panic!("expected a failure and the abort: {other:?}"),
    }
    let e = execution(&g);
    assert_eq!(e.state, ExecutionState::Aborted);
    assert!(e.steps[1..].iter().all(|s| s.state == StepState::Pending));
    // Nothing more happens, whatever comes.
    let later = when(
        &mut g,
        SkillExecutionResumed {
            execution_id: EXEC.into(),
        },
    );
    assert!(later.is_empty(), "{later:?}");
}

#[test]
fn a_success_resets_the_count_of_failures_in_a_row() {
    let (mut g, _) = rolling(2);
    let next = when_agent(
        &mut g,
        &ids().worker,
        upgrade_failed(0, &ids().worker, K3sModule::K3sAgent),
    );
    assert_eq!(
        starts(&next),
        vec![1],
        "one failure of two allowed: {next:?}"
    );
    let next = when_agent(&mut g, SERVER2, upgraded(1, SERVER2, K3sModule::K3sServer));
    assert!(
        matches!(&next[0], EventPayload::SkillStepSucceeded(p) if p.step == 1),
        "{next:?}"
    );
    assert_eq!(execution(&g).consecutive_failures, 0);
}

#[test]
fn the_holders_vip_moves_to_an_upgraded_server_before_its_step() {
    let (mut g, _) = rolling(1);
    when_agent(
        &mut g,
        &ids().worker,
        upgraded(0, &ids().worker, K3sModule::K3sAgent),
    );
    by_agent(&mut g, SERVER2, upgraded(1, SERVER2, K3sModule::K3sServer));
    let out = g.decide(&mut rules(), g.now_plus(chrono::Duration::seconds(1)));
    let promotion = out
        .effects()
        .iter()
        .find_map(|e| match e {
            Effect::Promote(p) => Some(p.as_ref().clone()),
            Effect::Execution(_) => None,
        })
        .expect("the VIP is moved first");
    let EventPayload::VirtualIpPromoted(p) = &promotion.promotion.payload else {
        panic!("a promotion: {promotion:?}");
    };
    assert_eq!(p.to_peer_id, SERVER2_PEER);
    assert_eq!(p.reason, "upgrade");
    assert_eq!(p.generation, 2);
    assert_eq!(p.approval_id, None);
    let folded = fold_decided(&mut g, &out);
    assert!(starts(&folded).is_empty(), "the holder waits: {folded:?}");
    // Once the VIP is held elsewhere, the holder's step starts.
    let next = when(&mut g, p.clone());
    assert_eq!(starts(&next), vec![2], "{next:?}");
    // And its report completes the execution.
    let done = when_agent(
        &mut g,
        &ids().server,
        upgraded(2, &ids().server, K3sModule::K3sServer),
    );
    match done.last() {
        Some(EventPayload::SkillExecutionCompleted(c)) => {
            assert_eq!((c.succeeded, c.failed, c.cluster_id.as_ref()), (3, 0, None));
        }
        other => panic!("completed: {other:?}"),
    }
}

#[test]
fn with_no_upgraded_server_to_take_the_vip_the_holders_step_fails() {
    let mut g = cluster();
    // Only the holder, its VIP to move, and the other server not upgraded.
    let mut holder = rolling_plan().remove(2);
    holder.step = 0;
    holder.batch = 0;
    let next = when(
        &mut g,
        started(SkillName::RollingModuleUpgrade, vec![holder], 1),
    );
    match &next[..] {
        [EventPayload::SkillStepFailed(f), EventPayload::SkillExecutionAborted(_)] => {
            assert_eq!(f.reason, "no upgraded server to take VIP fd00:abcd:1::100");
            assert!(!f.rolled_back);
        }
        other => panic!("the step fails: {other:?}"),
    }
}

#[test]
fn a_server_already_on_the_target_version_may_take_the_vip() {
    let mut g = cluster();
    // The second server was upgraded by an earlier execution.
    g.and(SkillExecutionStarted {
        execution_id: "exec-0".into(),
        ..started(
            SkillName::RollingModuleUpgrade,
            vec![step(0, 0, SERVER2, "acme-server-2", K3sModule::K3sServer)],
            1,
        )
    })
    .and(SkillStepSucceeded {
        execution_id: "exec-0".into(),
        step: 0,
        instance_id: SERVER2.into(),
        running_version_id: Some(TO.into()),
    });
    let mut holder = rolling_plan().remove(2);
    holder.step = 0;
    holder.batch = 0;
    g.and(started(SkillName::RollingModuleUpgrade, vec![holder], 1));
    let out = g.decide(&mut rules(), g.now_plus(chrono::Duration::seconds(1)));
    assert!(
        out.effects().iter().any(|e| matches!(e, Effect::Promote(p)
            if matches!(&p.promotion.payload, EventPayload::VirtualIpPromoted(v) if v.to_peer_id == SERVER2_PEER))),
        "{:?}",
        out.effects()
    );
}

#[test]
fn a_step_with_no_report_within_the_timeout_fails() {
    let (g, _) = rolling(1);
    let config = SkillsConfig {
        step_timeout_ms: 30_000,
        ..SkillsConfig::default()
    };
    let before = g.decide(
        &mut Rules(config.clone()),
        g.now_plus(chrono::Duration::seconds(20)),
    );
    assert!(before.is_empty(), "{:?}", before.effects());
    let after = g.decide(
        &mut Rules(config),
        g.now_plus(chrono::Duration::seconds(40)),
    );
    let Some(Effect::Execution(d)) = after.effects().first() else {
        panic!("a decision: {:?}", after.effects());
    };
    match &d.events[0].payload {
        EventPayload::SkillStepFailed(f) => {
            assert_eq!(f.reason, "no report from the agent within 30 s");
            assert!(!f.rolled_back);
        }
        other => panic!("the step fails: {other:?}"),
    }
}

#[test]
fn a_finished_execution_only_records_its_running_steps_outcomes() {
    let (mut g, _) = rolling(1);
    when(
        &mut g,
        SkillExecutionAborted {
            execution_id: EXEC.into(),
            reason: "cancelled".into(),
            detail: "by the operator".into(),
        },
    );
    let next = when_agent(
        &mut g,
        &ids().worker,
        upgraded(0, &ids().worker, K3sModule::K3sAgent),
    );
    assert!(
        matches!(&next[..], [EventPayload::SkillStepSucceeded(p)] if p.step == 0),
        "{next:?}"
    );
}

#[test]
fn a_promotion_elsewhere_wakes_waiting_executions() {
    let (mut g, _) = rolling(1);
    let ids = ids();
    let next = when(
        &mut g,
        VirtualIpPromoted {
            virtual_ip_id: ids.vip.clone(),
            from_peer_id: Some(ids.server_peer.clone()),
            to_peer_id: SERVER2_PEER.into(),
            generation: 2,
            reason: "drain".into(),
            to_instance_id: Some(SERVER2.into()),
            approval_id: None,
        },
    );
    // Woken, but nothing is due: batch 0 is still running.
    assert!(next.is_empty(), "{next:?}");
}
