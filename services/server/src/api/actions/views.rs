//! The projection's types as answers show them: each function copies a
//! `powernode-projections` type into its `powernode-actions` twin, which
//! serializes to the same JSON (the tests hold them to it). The copies
//! destructure every field and match every variant, so a field or variant
//! added to the projection does not compile until its answer shows it.

use powernode_actions::{approvals, clusters, instances, sdwan, templates, vips};
use powernode_projections::fleet;

/// A template.
pub fn template(t: &fleet::Template) -> templates::Template {
    let fleet::Template {
        id,
        name,
        created_seq,
        module_assignments,
        instance_assignments,
    } = t;
    templates::Template {
        id: id.clone(),
        name: name.clone(),
        created_seq: *created_seq,
        module_assignments: module_assignments.iter().map(module_assignment).collect(),
        instance_assignments: instance_assignments
            .iter()
            .map(|(k, v)| (k.clone(), v.iter().map(module_assignment).collect()))
            .collect(),
    }
}

/// A module assignment.
fn module_assignment(a: &fleet::ModuleAssignment) -> templates::ModuleAssignment {
    let fleet::ModuleAssignment {
        assignment_id,
        module_name,
        config,
        assigned_seq,
        module_version_id,
        instance_id,
    } = a;
    templates::ModuleAssignment {
        assignment_id: assignment_id.clone(),
        module_name: *module_name,
        config: config.clone(),
        assigned_seq: *assigned_seq,
        module_version_id: module_version_id.clone(),
        instance_id: instance_id.clone(),
    }
}

/// A node.
pub fn node(n: &fleet::Node) -> instances::Node {
    let fleet::Node {
        id,
        hostname,
        template_id,
        memory_mb,
        created_seq,
    } = n;
    instances::Node {
        id: id.clone(),
        hostname: hostname.clone(),
        template_id: template_id.clone(),
        memory_mb: *memory_mb,
        created_seq: *created_seq,
    }
}

/// An instance (never its credential: the projection holds only its fingerprint).
pub fn instance(i: &fleet::Instance) -> instances::Instance {
    let fleet::Instance {
        id,
        node_id,
        template_id,
        cni_plugin,
        enrollment_fingerprint,
        public_key,
        status,
        k3s_phase,
        k3s_version,
        cluster_id,
        node_name,
        last_join_rejection,
        last_bootstrap_rejection,
        bootstrap,
        phase_seq,
        provisioned_seq,
        outdated_capabilities,
    } = i;
    instances::Instance {
        id: id.clone(),
        node_id: node_id.clone(),
        template_id: template_id.clone(),
        cni_plugin: *cni_plugin,
        enrollment_fingerprint: enrollment_fingerprint.clone(),
        public_key: public_key.clone(),
        status: instance_status(*status),
        k3s_phase: k3s_phase.map(k3s_phase_of),
        k3s_version: k3s_version.clone(),
        cluster_id: cluster_id.clone(),
        node_name: node_name.clone(),
        last_join_rejection: last_join_rejection.clone(),
        last_bootstrap_rejection: last_bootstrap_rejection.clone(),
        bootstrap: bootstrap.as_ref().map(|b| {
            let fleet::BootstrapReport {
                cluster_id,
                node_token_fingerprint,
                seq,
            } = b;
            instances::BootstrapReport {
                cluster_id: cluster_id.clone(),
                node_token_fingerprint: node_token_fingerprint.clone(),
                seq: *seq,
            }
        }),
        phase_seq: *phase_seq,
        provisioned_seq: *provisioned_seq,
        outdated_capabilities: outdated_capabilities.clone(),
    }
}

/// An instance's status.
pub fn instance_status(s: fleet::InstanceStatus) -> instances::InstanceStatus {
    match s {
        fleet::InstanceStatus::Provisioned => instances::InstanceStatus::Provisioned,
        fleet::InstanceStatus::Enrolled => instances::InstanceStatus::Enrolled,
        fleet::InstanceStatus::Drained => instances::InstanceStatus::Drained,
        fleet::InstanceStatus::Terminated => instances::InstanceStatus::Terminated,
    }
}

/// An instance's k3s phase.
pub fn k3s_phase_of(p: fleet::K3sPhase) -> instances::K3sPhase {
    match p {
        fleet::K3sPhase::Installing => instances::K3sPhase::Installing,
        fleet::K3sPhase::Bootstrap => instances::K3sPhase::Bootstrap,
        fleet::K3sPhase::JoinRequest => instances::K3sPhase::JoinRequest,
        fleet::K3sPhase::JoinTokenIssued => instances::K3sPhase::JoinTokenIssued,
        fleet::K3sPhase::JoinRejected => instances::K3sPhase::JoinRejected,
        fleet::K3sPhase::Ready => instances::K3sPhase::Ready,
        fleet::K3sPhase::BootstrapRejected => instances::K3sPhase::BootstrapRejected,
    }
}

/// A cluster.
pub fn cluster(c: &fleet::Cluster) -> clusters::Cluster {
    let fleet::Cluster {
        id,
        name,
        flavor,
        status,
        api_endpoint,
        network_id,
        cni_plugin,
        pod_cidr,
        server_flags,
        join_token_fingerprint,
        bootstrap_instance_id,
        k3s_version,
        created_seq,
        activated_seq,
        decommissioned_seq,
    } = c;
    clusters::Cluster {
        id: id.clone(),
        name: name.clone(),
        flavor: flavor.clone(),
        status: cluster_status(*status),
        api_endpoint: api_endpoint.clone(),
        network_id: network_id.clone(),
        cni_plugin: *cni_plugin,
        pod_cidr: *pod_cidr,
        server_flags: server_flags.clone(),
        join_token_fingerprint: join_token_fingerprint.clone(),
        bootstrap_instance_id: bootstrap_instance_id.clone(),
        k3s_version: k3s_version.clone(),
        created_seq: *created_seq,
        activated_seq: *activated_seq,
        decommissioned_seq: *decommissioned_seq,
    }
}

/// A cluster's status.
pub fn cluster_status(s: fleet::ClusterStatus) -> clusters::ClusterStatus {
    match s {
        fleet::ClusterStatus::Bootstrapping => clusters::ClusterStatus::Bootstrapping,
        fleet::ClusterStatus::Active => clusters::ClusterStatus::Active,
        fleet::ClusterStatus::Decommissioned => clusters::ClusterStatus::Decommissioned,
    }
}

/// A Kubernetes node row.
pub fn k8s_node(n: &fleet::K8sNode) -> clusters::K8sNode {
    let fleet::K8sNode {
        cluster_id,
        instance_id,
        role,
        status,
        version,
        node_name,
        registered_seq,
        registered_at,
    } = n;
    clusters::K8sNode {
        cluster_id: cluster_id.clone(),
        instance_id: instance_id.clone(),
        role: *role,
        status: match status {
            fleet::K8sNodeStatus::Joining => clusters::K8sNodeStatus::Joining,
            fleet::K8sNodeStatus::Ready => clusters::K8sNodeStatus::Ready,
        },
        version: version.clone(),
        node_name: node_name.clone(),
        registered_seq: *registered_seq,
        registered_at: *registered_at,
    }
}

/// A network.
pub fn network(n: &fleet::Network) -> sdwan::Network {
    let fleet::Network {
        id,
        name,
        handle,
        overlay_prefix,
        vip_range,
        pod_subnet_prefix,
        routing_mode,
        created_seq,
        config_seq,
        pod_subnets,
    } = n;
    sdwan::Network {
        id: id.clone(),
        name: name.clone(),
        handle: handle.clone(),
        overlay_prefix: *overlay_prefix,
        vip_range: *vip_range,
        pod_subnet_prefix: *pod_subnet_prefix,
        routing_mode: *routing_mode,
        created_seq: *created_seq,
        config_seq: *config_seq,
        pod_subnets: pod_subnets.clone(),
    }
}

/// A peer's registered WireGuard identity (public key and endpoint only).
pub fn peer_wireguard(k: Option<&fleet::WireguardKey>) -> Option<sdwan::PeerWireguard> {
    let fleet::WireguardKey {
        public_key,
        endpoint,
        registered_seq,
    } = k?;
    Some(sdwan::PeerWireguard {
        public_key: public_key.clone(),
        endpoint: endpoint.clone(),
        registered_seq: *registered_seq,
    })
}

/// A peer, with the WireGuard identity its instance registered.
pub fn peer_with_key(p: &fleet::Peer, key: Option<&fleet::WireguardKey>) -> sdwan::Peer {
    sdwan::Peer {
        wireguard: peer_wireguard(key),
        ..peer(p)
    }
}

/// A peer.
pub fn peer(p: &fleet::Peer) -> sdwan::Peer {
    let fleet::Peer {
        id,
        network_id,
        instance_id,
        overlay_ip,
        lan_subnets,
        attached_seq,
    } = p;
    sdwan::Peer {
        id: id.clone(),
        network_id: network_id.clone(),
        instance_id: instance_id.clone(),
        overlay_ip: *overlay_ip,
        lan_subnets: lan_subnets.clone(),
        attached_seq: *attached_seq,
        wireguard: None,
    }
}

/// A virtual IP's status.
pub fn vip_status(s: fleet::VipStatus) -> vips::VipStatus {
    match s {
        fleet::VipStatus::Allocated => vips::VipStatus::Allocated,
        fleet::VipStatus::Released => vips::VipStatus::Released,
    }
}

/// A promotion.
pub fn promotion(p: &fleet::Promotion) -> vips::Promotion {
    let fleet::Promotion {
        at,
        generation,
        from_peer_id,
        to_peer_id,
        reason,
    } = p;
    vips::Promotion {
        at: *at,
        generation: *generation,
        from_peer_id: from_peer_id.clone(),
        to_peer_id: to_peer_id.clone(),
        reason: reason.clone(),
    }
}

/// An approval's status.
pub fn approval_status(s: fleet::ApprovalStatus) -> approvals::ApprovalStatus {
    match s {
        fleet::ApprovalStatus::Requested => approvals::ApprovalStatus::Requested,
        fleet::ApprovalStatus::Granted => approvals::ApprovalStatus::Granted,
        fleet::ApprovalStatus::Rejected => approvals::ApprovalStatus::Rejected,
        fleet::ApprovalStatus::Expired => approvals::ApprovalStatus::Expired,
        fleet::ApprovalStatus::Superseded => approvals::ApprovalStatus::Superseded,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use powernode_events::payloads::fleet::CniPlugin;
    use powernode_events::payloads::k3s::{K3sModule, ModuleConfig, NodeRole};
    use powernode_events::payloads::sdwan::RoutingMode;
    use serde_json::json;

    /// The projection's JSON of `p` and of its copy are the same.
    fn same<P: serde::Serialize, A: serde::Serialize>(p: &P, a: &A) {
        assert_eq!(
            serde_json::to_value(p).unwrap(),
            serde_json::to_value(a).unwrap()
        );
    }

    pub(in crate::api::actions) fn sample_cluster(decommissioned: bool) -> fleet::Cluster {
        fleet::Cluster {
            id: "cluster-1".into(),
            name: "prod".into(),
            flavor: "k3s".into(),
            status: if decommissioned {
                fleet::ClusterStatus::Decommissioned
            } else {
                fleet::ClusterStatus::Active
            },
            api_endpoint: "https://[fd00::100]:6443".into(),
            network_id: decommissioned.then(|| "net-1".into()),
            cni_plugin: CniPlugin::Flannel,
            pod_cidr: decommissioned.then(|| "10.42.0.0/16".parse().unwrap()),
            server_flags: vec!["--disable=traefik".into()],
            join_token_fingerprint: "sha256:ab".into(),
            bootstrap_instance_id: "inst-1".into(),
            k3s_version: Some("v1.30.0+k3s1".into()),
            created_seq: 7,
            activated_seq: Some(9),
            decommissioned_seq: decommissioned.then_some(12),
        }
    }

    #[test]
    fn copies_serialize_like_the_projection() {
        let t = fleet::Template {
            id: "tmpl-1".into(),
            name: "server".into(),
            created_seq: 1,
            module_assignments: vec![fleet::ModuleAssignment {
                assignment_id: "asg-1".into(),
                module_name: K3sModule::K3sServer,
                config: ModuleConfig {
                    target_cluster_id: None,
                    extra: [("k".to_string(), "v".to_string())].into(),
                },
                assigned_seq: 2,
                module_version_id: Some("v-k3s-1.31.0".into()),
                instance_id: None,
            }],
            instance_assignments: Default::default(),
        };
        same(&t, &template(&t));
        let n = fleet::Node {
            id: "node-1".into(),
            hostname: "h".into(),
            template_id: "tmpl-1".into(),
            memory_mb: 2048,
            created_seq: 3,
        };
        same(&n, &node(&n));
        for (status, phase, bootstrap) in [
            (fleet::InstanceStatus::Provisioned, None, None),
            (
                fleet::InstanceStatus::Enrolled,
                Some(fleet::K3sPhase::JoinTokenIssued),
                Some(fleet::BootstrapReport {
                    cluster_id: "cluster-1".into(),
                    node_token_fingerprint: "sha256:cd".into(),
                    seq: 5,
                }),
            ),
        ] {
            let i = fleet::Instance {
                id: "inst-1".into(),
                node_id: "node-1".into(),
                template_id: "tmpl-1".into(),
                cni_plugin: bootstrap.as_ref().map(|_| CniPlugin::OvnKubernetes),
                enrollment_fingerprint: "sha256:ef".into(),
                public_key: Some("00ff".into()),
                status,
                k3s_phase: phase,
                k3s_version: None,
                cluster_id: Some("cluster-1".into()),
                node_name: None,
                last_join_rejection: Some("no".into()),
                last_bootstrap_rejection: None,
                bootstrap,
                phase_seq: 4,
                provisioned_seq: 4,
                outdated_capabilities: vec!["module_versions".into()],
            };
            same(&i, &instance(&i));
        }
        for decommissioned in [false, true] {
            let c = sample_cluster(decommissioned);
            same(&c, &cluster(&c));
        }
        let k = fleet::K8sNode {
            cluster_id: "cluster-1".into(),
            instance_id: "inst-1".into(),
            role: NodeRole::ControlPlane,
            status: fleet::K8sNodeStatus::Ready,
            version: Some("v1".into()),
            node_name: None,
            registered_seq: 8,
            registered_at: Some(chrono::Utc::now()),
        };
        same(&k, &k8s_node(&k));
        let net = fleet::Network {
            id: "net-1".into(),
            name: "n".into(),
            handle: "n1".into(),
            overlay_prefix: "fd00:1:2:1::/64".parse().unwrap(),
            vip_range: "fd00:1:2:1::100/120".parse().unwrap(),
            pod_subnet_prefix: Some("10.42.0.0/16".parse().unwrap()),
            routing_mode: RoutingMode::Hub,
            created_seq: 10,
            config_seq: 10,
            pod_subnets: Default::default(),
        };
        same(&net, &network(&net));
        let p = fleet::Peer {
            id: "peer-1".into(),
            network_id: "net-1".into(),
            instance_id: "inst-1".into(),
            overlay_ip: "fd00:1:2:1::5".parse().unwrap(),
            lan_subnets: vec!["192.168.1.0/24".parse().unwrap()],
            attached_seq: 11,
        };
        same(&p, &peer(&p));
        let promoted = fleet::Promotion {
            at: chrono::Utc::now(),
            generation: 2,
            from_peer_id: None,
            to_peer_id: "peer-2".into(),
            reason: "forced".into(),
        };
        same(&promoted, &promotion(&promoted));
        for s in [fleet::VipStatus::Allocated, fleet::VipStatus::Released] {
            same(&s, &vip_status(s));
        }
        for s in [
            fleet::ApprovalStatus::Requested,
            fleet::ApprovalStatus::Granted,
            fleet::ApprovalStatus::Rejected,
            fleet::ApprovalStatus::Expired,
            fleet::ApprovalStatus::Superseded,
        ] {
            same(&s, &approval_status(s));
        }
        assert_eq!(
            json!(fleet::ClusterStatus::Bootstrapping),
            json!("bootstrapping")
        );
    }

    #[test]
    fn every_status_and_phase_keeps_its_name() {
        use fleet::{ClusterStatus as C, InstanceStatus as I, K3sPhase as K};
        for s in [I::Provisioned, I::Enrolled, I::Drained, I::Terminated] {
            same(&s, &instance_status(s));
        }
        for p in [
            K::Installing,
            K::Bootstrap,
            K::JoinRequest,
            K::JoinTokenIssued,
            K::JoinRejected,
            K::Ready,
            K::BootstrapRejected,
        ] {
            same(&p, &k3s_phase_of(p));
        }
        for s in [C::Bootstrapping, C::Active, C::Decommissioned] {
            same(&s, &cluster_status(s));
        }
    }
}
