//! The provisioner's rules, given/when/then.

use super::*;
use crate::services::given::*;
use powernode_events::ids::cluster_id_for_bootstrap;
use powernode_events::payloads::fleet::InstanceTerminated;
use powernode_events::payloads::k3s::{ClusterDecommissioned, HandshakeBootstrap};
use powernode_events::payloads::sdwan::{
    VipPurpose, VirtualIpAllocated, VirtualIpAllocationFailed,
};
use powernode_events::EventKind;

/// The fleet, and `instance`'s bootstrap handshake: the cluster it asks for.
fn bootstrapping(instance: &str) -> (Given, String) {
    let mut g = Given::fleet();
    g.and(HandshakeBootstrap {
        instance_id: instance.to_string(),
        k3s_version: VERSION.into(),
        node_token_fingerprint: FP.into(),
        kubeconfig_fingerprint: FP.into(),
    });
    let cluster = cluster_id_for_bootstrap(g.last().id);
    (g, cluster)
}

fn allocated(g: &Given, cluster: &str) -> VirtualIpAllocated {
    VirtualIpAllocated {
        virtual_ip_id: "vip-x".into(),
        network_id: g.ids.network.clone(),
        vip: "fd00:abcd:1::100".parse().unwrap(),
        purpose: VipPurpose::K3sApiEndpoint,
        cluster_id: cluster.to_string(),
        primary_holder_peer_id: g.ids.server_peer.clone(),
    }
}

fn join(instance: &str, target: Option<&str>) -> HandshakeJoinRequest {
    HandshakeJoinRequest {
        instance_id: instance.to_string(),
        module_name: K3sModule::K3sAgent,
        target_cluster_id: target.map(str::to_string),
    }
}

/// The one decision, which must be a join refusal: its reason.
fn rejected(out: &Decisions<Infallible>) -> String {
    match payloads(out).as_slice() {
        [EventPayload::JoinRejected(r)] => r.reason.clone(),
        other => panic!("expected one join_rejected, got {other:?}"),
    }
}

#[test]
fn a_vip_for_a_bootstrap_creates_its_cluster_behind_the_vip() {
    let (mut g, cluster) = bootstrapping(&Ids::new(ACCOUNT).server);
    let vip = allocated(&g, &cluster);
    let out = g.when(&mut Provisioner, vip);
    let [EventPayload::ClusterBootstrapped(c), ..] = payloads(&out)[..] else {
        panic!("no cluster: {:?}", payloads(&out));
    };
    assert_eq!(c.cluster_id, cluster);
    assert_eq!(c.api_endpoint, "https://[fd00:abcd:1::100]:6443");
    assert_eq!(c.bootstrap_instance_id, g.ids.server);
    assert_eq!(c.name, format!("{ACCOUNT}-server-1"));
    assert_eq!(c.network_id.as_deref(), Some(g.ids.network.as_str()));
    assert_eq!(c.join_token_fingerprint, FP);
    // Decisions are caused by the event, with ids derived from it.
    let e = &out.events()[0];
    assert_eq!(e.causation_id, Some(g.last().id));
    assert_eq!(
        e.id,
        powernode_runtime::derived_event_id(g.last().id, EventKind::ClusterBootstrapped.as_str())
    );
}

#[test]
fn a_failed_allocation_creates_the_cluster_on_the_fallback_endpoint() {
    let (mut g, cluster) = bootstrapping(&Ids::new(ACCOUNT).server);
    let out = g.when(
        &mut Provisioner,
        VirtualIpAllocationFailed {
            cluster_id: cluster.clone(),
            reason: "exhausted".into(),
            fallback_api_endpoint: "https://acme-server-1:6443".into(),
        },
    );
    let [EventPayload::ClusterBootstrapped(c), ..] = payloads(&out)[..] else {
        panic!("no cluster: {:?}", payloads(&out));
    };
    assert_eq!(c.api_endpoint, "https://acme-server-1:6443");
}

#[test]
fn a_cluster_is_created_once() {
    let (mut g, cluster) = bootstrapping(&Ids::new(ACCOUNT).server);
    let vip = allocated(&g, &cluster);
    let first = g.when(&mut Provisioner, vip.clone());
    for e in first.events() {
        g.and(e.payload.clone());
    }
    let again = g.when(&mut Provisioner, vip);
    assert!(again.is_empty(), "{:?}", payloads(&again));
}

#[test]
fn a_big_node_gets_ovn_kubernetes_and_the_networks_pod_prefix_is_reported_ignored() {
    // The server's node has 8 GiB.
    let (mut g, cluster) = bootstrapping(&Ids::new(ACCOUNT).server);
    let vip = allocated(&g, &cluster);
    let out = g.when(&mut Provisioner, vip);
    let [EventPayload::ClusterBootstrapped(c), EventPayload::PodSubnetPrefixIgnored(i)] =
        payloads(&out)[..]
    else {
        panic!("{:?}", payloads(&out));
    };
    assert_eq!(c.cni_plugin, CniPlugin::OvnKubernetes);
    assert_eq!(c.pod_cidr, None);
    assert!(c.server_flags.is_empty());
    assert_eq!(i.pod_subnet_prefix, "10.42.0.0/16".parse().unwrap());
}

#[test]
fn a_small_node_gets_flannel_over_the_sdwan_with_the_networks_pod_prefix() {
    // The worker's node has 2 GiB.
    let (mut g, cluster) = bootstrapping(&Ids::new(ACCOUNT).worker);
    let vip = allocated(&g, &cluster);
    let out = g.when(&mut Provisioner, vip);
    let [EventPayload::ClusterBootstrapped(c)] = payloads(&out)[..] else {
        panic!("{:?}", payloads(&out));
    };
    assert_eq!(c.cni_plugin, CniPlugin::Flannel);
    assert_eq!(c.pod_cidr, Some("10.42.0.0/16".parse().unwrap()));
    assert_eq!(
        c.server_flags,
        [
            format!("--flannel-iface=wg-sdwan-{ACCOUNT}"),
            "--flannel-backend=host-gw".to_string(),
            "--cluster-cidr=10.42.0.0/16".to_string(),
        ]
    );
}

#[test]
fn cni_follows_ram_unless_chosen() {
    assert_eq!(cni_for(HEAVYWEIGHT_MB, None), CniPlugin::OvnKubernetes);
    assert_eq!(cni_for(HEAVYWEIGHT_MB - 1, None), CniPlugin::Flannel);
    assert_eq!(
        cni_for(0, Some(CniPlugin::OvnKubernetes)),
        CniPlugin::OvnKubernetes
    );
    assert_eq!(
        cni_for(1 << 20, Some(CniPlugin::Flannel)),
        CniPlugin::Flannel
    );
}

#[test]
fn a_join_to_the_target_cluster_gets_a_token_and_a_node() {
    let mut g = Given::active_cluster();
    let cluster = g.ids.cluster.clone();
    let worker = g.ids.worker.clone();
    let req = join(&worker, Some(&cluster));
    let out = g.when(&mut Provisioner, req);
    let [EventPayload::JoinTokenIssued(t), EventPayload::NodeRegistered(n)] = payloads(&out)[..]
    else {
        panic!("{:?}", payloads(&out));
    };
    assert_eq!(t.cluster_id, cluster);
    assert_eq!(t.api_endpoint, "https://[fd00:abcd:1::100]:6443");
    assert_eq!(n.role, NodeRole::Worker);
    assert_eq!(n.instance_id, worker);
}

#[test]
fn a_join_without_a_target_goes_to_the_most_recent_active_cluster() {
    let mut g = Given::active_cluster();
    let worker = g.ids.worker.clone();
    let req = join(&worker, None);
    let out = g.when(&mut Provisioner, req);
    let [EventPayload::JoinTokenIssued(t), _] = payloads(&out)[..] else {
        panic!("{:?}", payloads(&out));
    };
    assert_eq!(t.cluster_id, g.ids.cluster);
    // An empty target counts as none.
    let req = join(&worker, Some(""));
    let out = g.when(&mut Provisioner, req);
    assert!(matches!(
        payloads(&out)[0],
        EventPayload::JoinTokenIssued(_)
    ));
}

#[test]
fn a_join_without_a_target_and_no_active_cluster_is_refused() {
    let mut g = Given::fleet();
    let worker = g.ids.worker.clone();
    let req = join(&worker, None);
    let out = g.when(&mut Provisioner, req);
    assert!(rejected(&out).starts_with("no_active_cluster:"));
}

#[test]
fn a_join_to_an_unknown_cluster_is_refused() {
    let mut g = Given::active_cluster();
    let worker = g.ids.worker.clone();
    let req = join(&worker, Some("cluster-nope"));
    let out = g.when(&mut Provisioner, req);
    assert!(rejected(&out).starts_with("cluster_not_found:"));
    let [EventPayload::JoinRejected(r)] = payloads(&out)[..] else {
        unreachable!()
    };
    assert_eq!(r.target_cluster_id.as_deref(), Some("cluster-nope"));
}

#[test]
fn a_join_to_another_accounts_cluster_is_refused() {
    let mut g = Given::active_cluster();
    let other = Ids::new("other");
    setup(&mut g.stream, "other", &other);
    bootstrap(&mut g.stream, "other", &other);
    let worker = g.ids.worker.clone();
    let req = join(&worker, Some(&other.cluster));
    let out = g.when(&mut Provisioner, req);
    assert!(rejected(&out).starts_with("wrong_account:"));
}

#[test]
fn a_join_to_a_bootstrapping_or_decommissioned_cluster_is_refused() {
    let (mut g, cluster) = bootstrapping(&Ids::new(ACCOUNT).server);
    let vip = allocated(&g, &cluster);
    let out = g.when(&mut Provisioner, vip);
    g.and(out.events()[0].payload.clone());
    let worker = g.ids.worker.clone();
    let req = join(&worker, Some(&cluster));
    let out = g.when(&mut Provisioner, req);
    assert!(rejected(&out).starts_with("cluster_not_active:"));

    let mut g = Given::active_cluster();
    let cluster = g.ids.cluster.clone();
    g.and(ClusterDecommissioned {
        cluster_id: cluster.clone(),
        released_virtual_ip_id: None,
    });
    let req = join(&worker, Some(&cluster));
    let out = g.when(&mut Provisioner, req);
    assert!(rejected(&out).starts_with("cluster_decommissioned:"));
}

#[test]
fn a_terminated_or_unknown_instance_cannot_join() {
    let mut g = Given::active_cluster();
    let worker = g.ids.worker.clone();
    g.and(InstanceTerminated {
        instance_id: worker.clone(),
    });
    let req = join(&worker, None);
    let out = g.when(&mut Provisioner, req);
    assert!(rejected(&out).starts_with("instance_terminated:"));

    let req = join("inst-nobody", None);
    let out = g.when(&mut Provisioner, req);
    assert!(rejected(&out).starts_with("unknown_instance:"));
}

#[test]
fn a_node_of_one_live_cluster_cannot_join_another_but_may_rejoin_its_own() {
    let mut g = Given::joined_worker();
    let other = Ids::new("acme2");
    // A second cluster in the same account, bootstrapped by the same server.
    g.and(ClusterBootstrapped {
        cluster_id: other.cluster.clone(),
        name: "second".into(),
        bootstrap_instance_id: g.ids.server.clone(),
        api_endpoint: "https://second:6443".into(),
        network_id: None,
        cni_plugin: CniPlugin::Flannel,
        pod_cidr: None,
        server_flags: Vec::new(),
        join_token_fingerprint: FP.into(),
    })
    .and(ClusterActivated {
        cluster_id: other.cluster.clone(),
    });
    let worker = g.ids.worker.clone();
    let req = join(&worker, Some(&other.cluster));
    let out = g.when(&mut Provisioner, req);
    assert!(rejected(&out).starts_with("already_in_cluster:"));

    let own = g.ids.cluster.clone();
    let req = join(&worker, Some(&own));
    let out = g.when(&mut Provisioner, req);
    assert!(matches!(
        payloads(&out)[0],
        EventPayload::JoinTokenIssued(_)
    ));
}

#[test]
fn a_control_plane_join_registers_a_control_plane_node() {
    let mut g = Given::active_cluster();
    let worker = g.ids.worker.clone();
    let mut req = join(&worker, None);
    req.module_name = K3sModule::K3sServer;
    let out = g.when(&mut Provisioner, req);
    let [_, EventPayload::NodeRegistered(n)] = payloads(&out)[..] else {
        panic!("{:?}", payloads(&out));
    };
    assert_eq!(n.role, NodeRole::ControlPlane);
}

#[test]
fn the_bootstrap_servers_ready_activates_its_cluster_once() {
    let (mut g, cluster) = bootstrapping(&Ids::new(ACCOUNT).server);
    let vip = allocated(&g, &cluster);
    let out = g.when(&mut Provisioner, vip);
    g.and(out.events()[0].payload.clone());
    let ready = |instance: &str| HandshakeReady {
        instance_id: instance.to_string(),
        cluster_id: cluster.clone(),
        node_name: "n".into(),
        k3s_version: VERSION.into(),
        token_fingerprint: None,
    };
    // Another instance's ready does not activate it.
    let worker = g.ids.worker.clone();
    assert!(g.when(&mut Provisioner, ready(&worker)).is_empty());
    let server = g.ids.server.clone();
    let out = g.when(&mut Provisioner, ready(&server));
    let [EventPayload::ClusterActivated(a)] = payloads(&out)[..] else {
        panic!("{:?}", payloads(&out));
    };
    assert_eq!(a.cluster_id, cluster);
    g.and(out.events()[0].payload.clone());
    assert!(g.when(&mut Provisioner, ready(&server)).is_empty());
}

#[test]
fn other_events_decide_nothing() {
    let mut g = Given::fleet();
    let out = g.when(
        &mut Provisioner,
        InstanceTerminated {
            instance_id: "inst-x".into(),
        },
    );
    assert!(out.is_empty());
}
