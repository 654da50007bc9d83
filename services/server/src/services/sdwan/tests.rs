//! The sdwan service's rules, given/when/then.

use super::*;
use crate::services::given::*;
use powernode_events::payloads::fleet::{InstanceProvisioned, NodeCreated};
use powernode_events::payloads::k3s::HandshakeBootstrap;
use powernode_events::payloads::sdwan::{NetworkCreated, PeerAttached, RoutingMode};

fn bootstrap_of(instance: &str) -> HandshakeBootstrap {
    HandshakeBootstrap {
        instance_id: instance.to_string(),
        k3s_version: VERSION.into(),
        node_token_fingerprint: FP.into(),
        kubeconfig_fingerprint: FP.into(),
    }
}

fn allocated(out: &Decisions<Nudge>) -> &VirtualIpAllocated {
    match payloads(out)[..] {
        [EventPayload::VirtualIpAllocated(v)] => v,
        ref other => panic!("expected one allocation, got {other:?}"),
    }
}

#[test]
fn a_bootstrap_gets_the_first_free_vip_of_its_servers_network() {
    let mut g = Given::fleet();
    let server = g.ids.server.clone();
    let out = g.when(&mut Sdwan::default(), bootstrap_of(&server));
    let v = allocated(&out);
    let cluster = cluster_id_for_bootstrap(g.last().id);
    assert_eq!(v.cluster_id, cluster);
    assert_eq!(v.virtual_ip_id, vip_id(&cluster));
    assert_eq!(v.network_id, g.ids.network);
    assert_eq!(v.vip, "fd00:abcd:1::100".parse::<Ipv6Addr>().unwrap());
    assert_eq!(v.primary_holder_peer_id, g.ids.server_peer);
    assert_eq!(v.purpose, VipPurpose::K3sApiEndpoint);
}

#[test]
fn addresses_in_use_and_in_flight_are_skipped() {
    // The active cluster's VIP holds ::100.
    let mut g = Given::active_cluster();
    let mut sdwan = Sdwan::default();
    let worker = g.ids.worker.clone();
    let first = g.when(&mut sdwan, bootstrap_of(&worker));
    assert_eq!(
        allocated(&first).vip,
        "fd00:abcd:1::101".parse::<Ipv6Addr>().unwrap()
    );
    // A second bootstrap before the first allocation is folded.
    let server = g.ids.server.clone();
    let second = g.when(&mut sdwan, bootstrap_of(&server));
    assert_eq!(
        allocated(&second).vip,
        "fd00:abcd:1::102".parse::<Ipv6Addr>().unwrap()
    );
}

#[test]
fn a_bootstrap_is_allocated_for_once() {
    let mut g = Given::fleet();
    let mut sdwan = Sdwan::default();
    let server = g.ids.server.clone();
    g.and(bootstrap_of(&server));
    let now = g.now_plus(chrono::Duration::seconds(1));
    assert!(!g.decide(&mut sdwan, now).is_empty());
    // The same event decided again (a redelivery before the allocation is
    // folded): the in-flight allocation stands.
    assert!(g.decide(&mut sdwan, now).is_empty());
}

#[test]
fn a_server_without_a_peer_falls_back_to_its_hostname() {
    let mut g = Given::fleet();
    let ids = "inst-lonely".to_string();
    let tmpl = g.ids.server_tmpl.clone();
    g.and(NodeCreated {
        node_id: "node-1".into(),
        hostname: "lonely-1".into(),
        template_id: tmpl.clone(),
        memory_mb: 8192,
    })
    .and(InstanceProvisioned {
        instance_id: ids.clone(),
        node_id: "node-1".into(),
        template_id: tmpl,
        cni_plugin: None,
        enrollment_fingerprint: FP.into(),
    });
    let out = g.when(&mut Sdwan::default(), bootstrap_of(&ids));
    let [EventPayload::VirtualIpAllocationFailed(f)] = payloads(&out)[..] else {
        panic!("{:?}", payloads(&out));
    };
    assert_eq!(f.fallback_api_endpoint, "https://lonely-1:6443");
    assert!(f.reason.contains("no SD-WAN peer"), "{}", f.reason);
}

#[test]
fn an_exhausted_range_falls_back_to_the_peers_overlay_address() {
    let mut g = Given::fleet();
    let tmpl = g.ids.server_tmpl.clone();
    // A network whose VIP range has a single address, already taken.
    g.and(NetworkCreated {
        network_id: "net-tiny".into(),
        name: "tiny".into(),
        handle: "tiny".into(),
        overlay_prefix: "fd00:beef::/64".parse().unwrap(),
        vip_range: "fd00:beef::100/128".parse().unwrap(),
        pod_subnet_prefix: None,
        routing_mode: RoutingMode::Ibgp,
    })
    .and(NodeCreated {
        node_id: "node-t".into(),
        hostname: "t-1".into(),
        template_id: tmpl.clone(),
        memory_mb: 8192,
    })
    .and(InstanceProvisioned {
        instance_id: "inst-t".into(),
        node_id: "node-t".into(),
        template_id: tmpl,
        cni_plugin: None,
        enrollment_fingerprint: FP.into(),
    })
    .and(PeerAttached {
        network_id: "net-tiny".into(),
        peer_id: "peer-t".into(),
        instance_id: "inst-t".into(),
        overlay_ip: "fd00:beef::7".parse().unwrap(),
        lan_subnets: vec![],
    })
    .and(VirtualIpAllocated {
        virtual_ip_id: "vip-taken".into(),
        network_id: "net-tiny".into(),
        vip: "fd00:beef::100".parse().unwrap(),
        purpose: VipPurpose::K3sApiEndpoint,
        cluster_id: "cluster-taken".into(),
        primary_holder_peer_id: "peer-t".into(),
    });
    let out = g.when(&mut Sdwan::default(), bootstrap_of("inst-t"));
    let [EventPayload::VirtualIpAllocationFailed(f)] = payloads(&out)[..] else {
        panic!("{:?}", payloads(&out));
    };
    assert!(f.reason.contains("exhausted"), "{}", f.reason);
    assert_eq!(f.fallback_api_endpoint, "https://[fd00:beef::7]:6443");
}

#[test]
fn a_control_plane_server_joining_becomes_a_failover_candidate() {
    let mut g = Given::active_cluster();
    let (cluster, worker) = (g.ids.cluster.clone(), g.ids.worker.clone());
    let out = g.when(
        &mut Sdwan::default(),
        NodeRegistered {
            cluster_id: cluster.clone(),
            instance_id: worker.clone(),
            role: NodeRole::ControlPlane,
        },
    );
    let [EventPayload::VirtualIpCandidateAdded(c)] = payloads(&out)[..] else {
        panic!("{:?}", payloads(&out));
    };
    assert_eq!(c.virtual_ip_id, g.ids.vip);
    assert_eq!(c.peer_id, g.ids.worker_peer);
    // A worker node is not a candidate.
    let out = g.when(
        &mut Sdwan::default(),
        NodeRegistered {
            cluster_id: cluster,
            instance_id: worker,
            role: NodeRole::Worker,
        },
    );
    assert!(out.is_empty());
}

#[test]
fn the_holder_itself_is_not_its_own_candidate() {
    let mut g = Given::active_cluster();
    let (cluster, server) = (g.ids.cluster.clone(), g.ids.server.clone());
    let out = g.when(
        &mut Sdwan::default(),
        NodeRegistered {
            cluster_id: cluster,
            instance_id: server,
            role: NodeRole::ControlPlane,
        },
    );
    assert!(out.is_empty(), "{:?}", payloads(&out));
}

#[test]
fn a_decommissioned_clusters_vip_is_released() {
    let mut g = Given::active_cluster();
    let (cluster, vip) = (g.ids.cluster.clone(), g.ids.vip.clone());
    let out = g.when(
        &mut Sdwan::default(),
        ClusterDecommissioned {
            cluster_id: cluster,
            released_virtual_ip_id: Some(vip.clone()),
        },
    );
    let [EventPayload::VirtualIpReleased(r)] = payloads(&out)[..] else {
        panic!("{:?}", payloads(&out));
    };
    assert_eq!(r.virtual_ip_id, vip);
}

mod nudges {
    use super::*;
    use powernode_events::payloads::sdwan::{VirtualIpPromoted, WireguardKeyRegistered};

    const KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    fn nudged(out: &Decisions<Nudge>) -> Vec<&Nudge> {
        out.effects().iter().collect()
    }

    #[test]
    fn a_promotion_nudges_every_agent_of_the_network_with_its_sequence() {
        let mut g = Given::joined_worker();
        for (n, instance) in [(1u8, g.ids.server.clone()), (2, g.ids.worker.clone())] {
            g.and(WireguardKeyRegistered {
                instance_id: instance,
                public_key: powernode_events::wireguard::encode_base64(&[n; 32]),
                endpoint: format!("10.0.0.{n}:51820"),
            });
        }
        let promotion = VirtualIpPromoted {
            virtual_ip_id: g.ids.vip.clone(),
            from_peer_id: Some(g.ids.server_peer.clone()),
            to_peer_id: g.ids.worker_peer.clone(),
            generation: 2,
            reason: "test".into(),
            to_instance_id: None,
            approval_id: None,
        };
        let out = g.when(&mut Sdwan::default(), promotion);
        let seq = g.last_pair().0;
        let mut everyone = vec![g.ids.server.clone(), g.ids.worker.clone()];
        everyone.sort();
        assert_eq!(
            nudged(&out),
            [&Nudge {
                seq,
                instances: everyone
            }]
        );
    }

    #[test]
    fn a_key_registration_nudges_and_a_candidate_added_does_not() {
        let mut g = Given::joined_worker();
        // The server runs a data plane already (an agent without one
        // applies no config and is not nudged).
        g.and(WireguardKeyRegistered {
            instance_id: g.ids.server.clone(),
            public_key: powernode_events::wireguard::encode_base64(&[9; 32]),
            endpoint: "10.0.0.1:51820".into(),
        });
        let key = WireguardKeyRegistered {
            instance_id: g.ids.worker.clone(),
            public_key: KEY.into(),
            endpoint: "10.0.0.2:51820".into(),
        };
        let out = g.when(&mut Sdwan::default(), key);
        assert_eq!(nudged(&out).len(), 1);
        assert!(nudged(&out)[0].instances.contains(&g.ids.server));
        // Not a data-plane change: the network's revision stays.
        let candidate = VirtualIpCandidateAdded {
            virtual_ip_id: g.ids.vip.clone(),
            peer_id: g.ids.worker_peer.clone(),
        };
        let out = g.when(&mut Sdwan::default(), candidate);
        assert!(nudged(&out).is_empty(), "{:?}", out.effects());
    }

    #[test]
    fn a_replayed_change_nudges_nobody() {
        let mut g = Given::joined_worker();
        g.and(VirtualIpPromoted {
            virtual_ip_id: g.ids.vip.clone(),
            from_peer_id: Some(g.ids.server_peer.clone()),
            to_peer_id: g.ids.worker_peer.clone(),
            generation: 2,
            reason: "test".into(),
            to_instance_id: None,
            approval_id: None,
        });
        let much_later = g.now_plus(chrono::Duration::minutes(5));
        let out = g.decide(&mut Sdwan::default(), much_later);
        assert!(nudged(&out).is_empty());
    }
}
