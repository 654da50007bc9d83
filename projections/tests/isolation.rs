//! Account isolation: one account never sees or changes another's objects.

mod common;

use common::*;
use powernode_events::payloads::k3s::ClusterDecommissioned;
use powernode_projections::fleet::{ClusterStatus, VipStatus};

#[test]
fn two_accounts_clusters_do_not_mix() {
    // given two accounts, each with its own cluster, interleaved in one log
    let (ids_a, ids_b) = (Ids::new("alpha"), Ids::new("beta"));
    let mut s = Stream::new();
    setup(&mut s, "alpha", &ids_a);
    setup(&mut s, "beta", &ids_b);
    bootstrap(&mut s, "alpha", &ids_a);
    bootstrap(&mut s, "beta", &ids_b);
    worker_join(&mut s, "beta", &ids_b);
    let state = s.fold();
    let (alpha, beta) = (acct("alpha"), acct("beta"));

    // then each account sees only its own cluster, nodes and VIP
    let names = |acc| {
        state
            .clusters(acc, true)
            .iter()
            .map(|c| c.id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&alpha), vec![ids_a.cluster.clone()]);
    assert_eq!(names(&beta), vec![ids_b.cluster.clone()]);
    assert!(state.cluster(&alpha, &ids_b.cluster).is_none());
    assert!(state.cluster(&beta, &ids_a.cluster).is_none());
    assert_eq!(state.node_count(&alpha, &ids_b.cluster), 0);
    assert_eq!(state.node_count(&alpha, &ids_a.cluster), 1);
    assert_eq!(state.node_count(&beta, &ids_b.cluster), 2);
    assert!(state.virtual_ip(&alpha, &ids_b.vip).is_none());
    assert!(state.instance(&alpha, &ids_b.worker).is_none());
    assert_eq!(
        state.most_recent_active_cluster(&alpha).unwrap().id,
        ids_a.cluster
    );
    assert_eq!(
        state.most_recent_active_cluster(&beta).unwrap().id,
        ids_b.cluster
    );

    // and an event naming beta's cluster but filed under alpha changes nothing of beta's
    s.push(
        "alpha",
        ClusterDecommissioned {
            cluster_id: ids_b.cluster.clone(),
            released_virtual_ip_id: Some(ids_b.vip.clone()),
        },
    );
    let after = s.fold();
    assert_eq!(
        after.cluster(&beta, &ids_b.cluster).unwrap().status,
        ClusterStatus::Active
    );
    assert_eq!(
        after.virtual_ip(&beta, &ids_b.vip).unwrap().status,
        VipStatus::Allocated
    );
}
