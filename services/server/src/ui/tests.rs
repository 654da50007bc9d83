//! The read-only gate, and the history core over an empty log (the
//! backends over a real node and an export: `tests/tests/ui_backend.rs`).

use super::history::History;
use super::offline::{offline_operator, NoSecrets};
use crate::api::actions::read_only_gate;
use crate::api::ApiState;
use futures::StreamExt;
use powernode_actions::ActionName;
use powernode_events::AccountId;
use powernode_ui::{At, EventQuery};
use serde_json::json;
use std::sync::Arc;

#[test]
fn the_gate_lets_reads_through_and_names_what_it_refuses() {
    let reason = "this dashboard serves x.pnx read-only";
    for (action, args) in [
        (ActionName::ListClusters, json!({})),
        (ActionName::RecentEvents, json!({})),
        (
            ActionName::FailoverVirtualIp,
            json!({"vip_id": "vip-1", "dry_run": true}),
        ),
    ] {
        assert!(read_only_gate(reason, action, &args).is_ok(), "{action}");
    }
    let e = read_only_gate(reason, ActionName::Approve, &json!({})).unwrap_err();
    assert_eq!((e.status.as_u16(), e.code.as_str()), (409, "read_only"));
    assert_eq!(
        e.message,
        "this dashboard serves x.pnx read-only: system_approve changes the fleet and is refused"
    );
    let e = read_only_gate(reason, ActionName::GetKubeconfig, &json!({})).unwrap_err();
    assert!(
        e.message.contains("records an audit event"),
        "{}",
        e.message
    );
    let e = read_only_gate(
        reason,
        ActionName::FailoverVirtualIp,
        &json!({"vip_id": "vip-1"}),
    )
    .unwrap_err();
    assert_eq!(e.code.as_str(), "read_only");
}

fn empty(dir: &std::path::Path) -> ApiState {
    ApiState {
        log: powernode_log::embedded::EmbeddedLog::open_shared(&dir.join("log")).unwrap(),
        fleet: Default::default(),
        secrets: Arc::new(NoSecrets),
        on_provision: None,
        liveness: Arc::default(),
        failover: Default::default(),
        shutdown: Default::default(),
        status: crate::status::StatusBoard::shared(),
        https: false,
        read_only: None,
        events_index: Default::default(),
    }
}

#[tokio::test]
async fn an_empty_log_answers_its_extent_and_refuses_points_beyond_it() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::new(empty(dir.path()), false);
    let head = h.head().await.unwrap();
    assert_eq!((head.first_seq, head.last_seq), (1, 0));
    let account = AccountId::new("acme").unwrap();
    let op = offline_operator(account.clone());
    assert!(!op.is_admin());

    let e = h
        .call(op.clone(), At::Seq(3), ActionName::ListClusters, json!({}))
        .await
        .unwrap_err();
    assert_eq!((e.status, e.code.as_str()), (422, "invalid_arguments"));
    assert_eq!(e.message, "seq 3 is beyond the head 0");
    // A write at a past point is refused before the point is looked at.
    let e = h
        .call(
            op.clone(),
            At::Seq(3),
            ActionName::DecommissionCluster,
            json!({"cluster_id": "c"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, "read_only");
    // Seq 0: the fleet before anything.
    let v = h
        .call(op, At::Seq(0), ActionName::ListClusters, json!({}))
        .await
        .unwrap();
    assert_eq!(v["clusters"], json!([]), "{v}");

    assert_eq!(h.event(&account, 1).await.unwrap_err().status, 404);
    assert_eq!(h.diff(&account, 0, 1).await.unwrap_err().status, 422);
    assert_eq!(h.diff(&account, 1, 0).await.unwrap_err().status, 422);
    let e = h.explain(&account, "vip-1").await.unwrap_err();
    assert_eq!(
        (e.status, e.message.as_str()),
        (404, "no object vip-1 in this account")
    );
    let feed = h
        .events(
            &account,
            EventQuery {
                after: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(
        feed.collect::<Vec<_>>().await.is_empty(),
        "an export's feed ends"
    );
}
