//! Drains that move a VIP, and approvals that expire.

use super::*;

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
