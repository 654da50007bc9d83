//! Given/when/then tests of a cluster's life in the fleet fold: bootstrap,
//! worker join, activation, decommission and the join-target choice.

mod common;

use common::*;
use powernode_events::payloads::k3s::{ClusterActivated, HandshakeReady, K3sModule, NodeRole};
use powernode_projections::fleet::{
    ClusterStatus, InstanceStatus, K3sPhase, K8sNodeStatus, VipStatus,
};

#[test]
fn bootstrap_then_worker_join_gives_an_active_cluster_with_two_ready_nodes() {
    // given a provisioned fleet
    let (a, ids) = ("acme", Ids::new("acme"));
    let mut s = Stream::new();
    setup(&mut s, a, &ids);

    // when the bootstrap server comes up and a worker joins
    bootstrap(&mut s, a, &ids);
    worker_join(&mut s, a, &ids);
    let state = s.fold();

    // then the cluster is active, VIP-backed, with both nodes ready
    let acct = acct(a);
    let cluster = state.cluster(&acct, &ids.cluster).expect("cluster exists");
    assert_eq!(cluster.status, ClusterStatus::Active);
    assert_eq!(cluster.flavor, "k3s");
    assert_eq!(cluster.api_endpoint, "https://[fd00:abcd:1::100]:6443");
    assert_eq!(cluster.bootstrap_instance_id, ids.server);
    assert_eq!(cluster.k3s_version.as_deref(), Some(VERSION));
    assert_eq!(
        cluster.pod_cidr.map(|p| p.to_string()).as_deref(),
        Some("10.42.0.0/16")
    );
    assert_eq!(state.node_count(&acct, &ids.cluster), 2);

    let nodes = state.cluster_nodes(&acct, &ids.cluster);
    assert_eq!(nodes[0].instance_id, ids.server);
    assert_eq!(nodes[0].role, NodeRole::ControlPlane);
    assert_eq!(nodes[1].instance_id, ids.worker);
    assert_eq!(nodes[1].role, NodeRole::Worker);
    for n in &nodes {
        assert_eq!(n.status, K8sNodeStatus::Ready, "{}", n.instance_id);
        assert_eq!(n.version.as_deref(), Some(VERSION));
    }

    let vip = state.cluster_virtual_ip(&acct, &ids.cluster).expect("vip");
    assert_eq!(vip.id, ids.vip);
    assert_eq!(vip.holder_peer_id, ids.server_peer);
    assert_eq!(vip.generation, 1);
    assert_eq!(vip.status, VipStatus::Allocated);
    assert_eq!(vip.api_endpoint(), cluster.api_endpoint);
    assert_eq!(state.virtual_ip(&acct, &ids.vip), Some(vip));

    let worker_tmpl = state.template(&acct, &ids.worker_tmpl).unwrap();
    let asg = worker_tmpl
        .assignment(K3sModule::K3sAgent)
        .expect("k3s-agent assigned");
    assert_eq!(
        asg.config.target_cluster_id.as_deref(),
        Some(ids.cluster.as_str())
    );
    assert!(state
        .template(&acct, &ids.server_tmpl)
        .unwrap()
        .assignment(K3sModule::K3sServer)
        .is_some());

    let worker = state.instance(&acct, &ids.worker).unwrap();
    assert_eq!(worker.status, InstanceStatus::Enrolled);
    assert_eq!(worker.k3s_phase, Some(K3sPhase::Ready));
    assert_eq!(worker.cluster_id.as_deref(), Some(ids.cluster.as_str()));
    assert_eq!(
        state.instance_peers(&acct, &ids.worker)[0].id,
        ids.worker_peer
    );
    assert_eq!(
        state
            .most_recent_active_cluster(&acct)
            .map(|c| c.id.as_str()),
        Some(ids.cluster.as_str())
    );
    assert_eq!(
        state.account(&acct).unwrap().name.as_deref(),
        Some("acme corp")
    );
    assert_eq!(state.last_seq(), s.events.len() as u64);
    assert_eq!(state.applied(), s.events.len() as u64);
}

#[test]
fn cluster_is_bootstrapping_until_activated() {
    // given a bootstrap stream cut before `cluster.activated`
    let (a, ids) = ("acme", Ids::new("acme"));
    let mut s = Stream::new();
    setup(&mut s, a, &ids);
    bootstrap(&mut s, a, &ids);
    let cut = s
        .events
        .iter()
        .position(|(_, e)| e.kind() == "system.k3s.cluster.activated")
        .unwrap();
    s.events.truncate(cut);

    // when folded
    let state = s.fold();

    // then the cluster exists, bootstrapping, with its bootstrap server's row
    let acct = acct(a);
    assert_eq!(
        state.cluster(&acct, &ids.cluster).unwrap().status,
        ClusterStatus::Bootstrapping
    );
    assert!(state.most_recent_active_cluster(&acct).is_none());
    let nodes = state.cluster_nodes(&acct, &ids.cluster);
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].role, NodeRole::ControlPlane);
    assert_eq!(
        nodes[0].status,
        K8sNodeStatus::Ready,
        "the server reported ready before activation"
    );
}

#[test]
fn decommission_cascades_to_node_rows_and_releases_the_vip_but_keeps_instances() {
    // given a full lifecycle ending in decommission
    let (a, ids) = ("acme", Ids::new("acme"));
    let state = full_lifecycle(a).fold();
    let acct = acct(a);

    // then the cluster is decommissioned and hidden by default
    let cluster = state.cluster(&acct, &ids.cluster).unwrap();
    assert_eq!(cluster.status, ClusterStatus::Decommissioned);
    assert!(cluster.decommissioned_seq.is_some());
    assert!(state.clusters(&acct, false).is_empty());
    assert_eq!(state.clusters(&acct, true).len(), 1);
    assert!(state.most_recent_active_cluster(&acct).is_none());
    // its node rows are gone
    assert_eq!(state.node_count(&acct, &ids.cluster), 0);
    assert!(state.cluster_nodes(&acct, &ids.cluster).is_empty());
    // the VIP is released, with the first reason kept
    let vip = state.virtual_ip(&acct, &ids.vip).unwrap();
    assert_eq!(vip.status, VipStatus::Released);
    assert_eq!(
        vip.release_reason.as_deref(),
        Some("cluster decommissioned")
    );
    // the instances are not terminated, but no longer members
    for id in [&ids.server, &ids.worker] {
        let i = state.instance(&acct, id).unwrap();
        assert_eq!(i.status, InstanceStatus::Enrolled);
        assert_eq!(i.cluster_id, None);
    }
    // a late `ready` or `activated` does not resurrect anything
    let mut s = full_lifecycle(a);
    s.push(
        a,
        ClusterActivated {
            cluster_id: ids.cluster.clone(),
        },
    )
    .push(
        a,
        HandshakeReady {
            instance_id: ids.worker.clone(),
            cluster_id: ids.cluster.clone(),
            node_name: "late".into(),
            k3s_version: VERSION.into(),
            token_fingerprint: None,
        },
    );
    let later = s.fold();
    assert_eq!(
        later.cluster(&acct, &ids.cluster).unwrap().status,
        ClusterStatus::Decommissioned
    );
    assert_eq!(later.node_count(&acct, &ids.cluster), 0);
    assert_eq!(later.instance(&acct, &ids.worker).unwrap().cluster_id, None);
}

#[test]
fn most_recent_active_cluster_is_the_newest_active_one() {
    // given two clusters in one account, the newer one decommissioned later
    let mut s = Stream::new();
    let (prod, staging) = (Ids::new("prod"), Ids::new("staging"));
    setup(&mut s, "acme", &prod);
    setup(&mut s, "acme", &staging);
    bootstrap(&mut s, "acme", &prod);
    bootstrap(&mut s, "acme", &staging);
    let acct = acct("acme");
    let state = s.fold();
    assert_eq!(
        state.most_recent_active_cluster(&acct).unwrap().id,
        staging.cluster
    );
    let order: Vec<_> = state
        .clusters(&acct, false)
        .iter()
        .map(|c| c.id.clone())
        .collect();
    assert_eq!(
        order,
        vec![prod.cluster.clone(), staging.cluster.clone()],
        "creation order"
    );

    // when staging is decommissioned, then prod is the join target again
    decommission(&mut s, "acme", &staging);
    let state = s.fold();
    assert_eq!(
        state.most_recent_active_cluster(&acct).unwrap().id,
        prod.cluster
    );
    assert_eq!(state.clusters(&acct, false).len(), 1);
}
