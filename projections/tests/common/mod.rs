//! Shared test helpers: a deterministic event stream builder and the
//! lifecycle scenario the fold tests replay.
#![allow(dead_code)]

use chrono::{TimeZone, Utc};
use powernode_events::payloads::{approvals::*, fleet::*, k3s::*, sdwan::*};
use powernode_events::{AccountId, Actor, Envelope, EventPayload};
use powernode_projections::{FleetState, Projection};
use std::collections::BTreeMap;
use uuid::Uuid;

/// An account id for tests.
pub fn acct(s: &str) -> AccountId {
    AccountId::new(s).expect("test account ids are valid")
}

/// Events with log sequences, built deterministically (ids and timestamps
/// follow from the sequence).
#[derive(Default, Clone)]
pub struct Stream {
    pub events: Vec<(u64, Envelope)>,
}

impl Stream {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a service-authored event in `account`.
    pub fn push(&mut self, account: &str, payload: impl Into<EventPayload>) -> &mut Self {
        self.push_as(account, Actor::service("provisioner"), payload)
    }

    /// Appends an event with an explicit actor.
    pub fn push_as(
        &mut self,
        account: &str,
        actor: Actor,
        payload: impl Into<EventPayload>,
    ) -> &mut Self {
        let seq = self.events.len() as u64 + 1;
        let payload = payload.into();
        let id = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + u128::from(seq));
        let env = Envelope {
            id,
            account_id: acct(account),
            aggregate: payload.aggregate(),
            occurred_at: Utc.timestamp_opt(1_790_000_000 + seq as i64, 0).unwrap(),
            actor,
            correlation_id: id,
            causation_id: None,
            payload,
            signature: None,
        };
        self.events.push((seq, env));
        self
    }

    /// Folds every event into a fresh state.
    pub fn fold(&self) -> FleetState {
        fold(&self.events)
    }
}

/// Folds `events` into a fresh state.
pub fn fold(events: &[(u64, Envelope)]) -> FleetState {
    let mut state = FleetState::default();
    for (seq, env) in events {
        state.apply(*seq, env);
    }
    state
}

pub const FP: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
pub const VERSION: &str = "v1.30.5+k3s1";

/// Ids of one account's lifecycle objects, prefixed so two accounts differ.
pub struct Ids {
    pub server_tmpl: String,
    pub worker_tmpl: String,
    pub server_node: String,
    pub worker_node: String,
    pub server: String,
    pub worker: String,
    pub network: String,
    pub server_peer: String,
    pub worker_peer: String,
    pub cluster: String,
    pub vip: String,
}

impl Ids {
    pub fn new(p: &str) -> Self {
        Self {
            server_tmpl: format!("{p}-tmpl-server"),
            worker_tmpl: format!("{p}-tmpl-worker"),
            server_node: format!("{p}-node-server"),
            worker_node: format!("{p}-node-worker"),
            server: format!("{p}-inst-server"),
            worker: format!("{p}-inst-worker"),
            network: format!("{p}-net"),
            server_peer: format!("{p}-peer-server"),
            worker_peer: format!("{p}-peer-worker"),
            cluster: format!("cluster-{p}"),
            vip: format!("vip-{p}"),
        }
    }
}

/// A valid hex ed25519 public key (RFC 8032 test vector 1).
pub const AGENT_KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

/// Fleet set-up: account, token, templates, nodes, instances, enrollment,
/// network and peers.
pub fn setup(s: &mut Stream, account: &str, ids: &Ids) {
    s.push(
        account,
        AccountCreated {
            account_id: account.into(),
            name: format!("{account} corp"),
        },
    )
    .push(
        account,
        OperatorTokenIssued {
            token_id: format!("{account}-tok"),
            permissions: vec!["system.kubernetes_provision".into()],
            fingerprint: format!("sha256:{account}"),
            expires_at: None,
        },
    )
    .push(
        account,
        TemplateCreated {
            template_id: ids.server_tmpl.clone(),
            name: "k3s-server".into(),
        },
    )
    .push(
        account,
        TemplateCreated {
            template_id: ids.worker_tmpl.clone(),
            name: "k3s-worker".into(),
        },
    )
    .push(
        account,
        NodeCreated {
            node_id: ids.server_node.clone(),
            hostname: format!("{account}-server-1"),
            template_id: ids.server_tmpl.clone(),
            memory_mb: 8192,
        },
    )
    .push(
        account,
        NodeCreated {
            node_id: ids.worker_node.clone(),
            hostname: format!("{account}-worker-1"),
            template_id: ids.worker_tmpl.clone(),
            memory_mb: 2048,
        },
    );
    for (inst, node, tmpl) in [
        (&ids.server, &ids.server_node, &ids.server_tmpl),
        (&ids.worker, &ids.worker_node, &ids.worker_tmpl),
    ] {
        s.push(
            account,
            InstanceProvisioned {
                instance_id: inst.clone(),
                node_id: node.clone(),
                template_id: tmpl.clone(),
                cni_plugin: None,
                enrollment_fingerprint: FP.into(),
            },
        )
        .push_as(
            account,
            Actor::Agent {
                instance_id: inst.clone(),
            },
            AgentEnrolled {
                instance_id: inst.clone(),
                public_key: AGENT_KEY.into(),
            },
        );
    }
    s.push(
        account,
        NetworkCreated {
            network_id: ids.network.clone(),
            name: format!("{account}-net"),
            handle: account.into(),
            overlay_prefix: "fd00:abcd:1::/64".parse().unwrap(),
            vip_range: "fd00:abcd:1::100/120".parse().unwrap(),
            pod_subnet_prefix: Some("10.42.0.0/16".parse().unwrap()),
            routing_mode: RoutingMode::Ibgp,
        },
    );
    for (peer, inst, ip) in [
        (&ids.server_peer, &ids.server, "fd00:abcd:1::5"),
        (&ids.worker_peer, &ids.worker, "fd00:abcd:1::6"),
    ] {
        s.push(
            account,
            PeerAttached {
                network_id: ids.network.clone(),
                peer_id: peer.clone(),
                instance_id: inst.clone(),
                overlay_ip: ip.parse().unwrap(),
                lan_subnets: vec![],
            },
        );
    }
}

/// The bootstrap of a cluster, as the tutorial's `recent_events` shows it,
/// ending with the cluster active.
pub fn bootstrap(s: &mut Stream, account: &str, ids: &Ids) {
    let agent = Actor::Agent {
        instance_id: ids.server.clone(),
    };
    s.push(
        account,
        ModuleAssigned {
            assignment_id: format!("{account}-asg-server"),
            template_id: ids.server_tmpl.clone(),
            module_name: K3sModule::K3sServer,
            config: ModuleConfig {
                target_cluster_id: None,
                extra: BTreeMap::new(),
            },
            module_version_id: None,
            instance_id: None,
        },
    )
    .push_as(
        account,
        agent.clone(),
        RuntimeInstalling {
            instance_id: ids.server.clone(),
            module_name: K3sModule::K3sServer,
            version: VERSION.into(),
        },
    )
    .push_as(
        account,
        agent.clone(),
        HandshakeBootstrap {
            instance_id: ids.server.clone(),
            k3s_version: VERSION.into(),
            node_token_fingerprint: FP.into(),
            kubeconfig_fingerprint: FP.into(),
        },
    )
    .push(
        account,
        VirtualIpAllocated {
            virtual_ip_id: ids.vip.clone(),
            network_id: ids.network.clone(),
            vip: "fd00:abcd:1::100".parse().unwrap(),
            purpose: VipPurpose::K3sApiEndpoint,
            cluster_id: ids.cluster.clone(),
            primary_holder_peer_id: ids.server_peer.clone(),
        },
    )
    .push(
        account,
        ClusterBootstrapped {
            cluster_id: ids.cluster.clone(),
            name: format!("{account}-server-1"),
            bootstrap_instance_id: ids.server.clone(),
            api_endpoint: "https://[fd00:abcd:1::100]:6443".into(),
            network_id: Some(ids.network.clone()),
            cni_plugin: CniPlugin::Flannel,
            pod_cidr: Some("10.42.0.0/16".parse().unwrap()),
            server_flags: vec![format!("--flannel-iface=wg-sdwan-{account}")],
            join_token_fingerprint: String::new(),
        },
    )
    .push_as(
        account,
        agent,
        HandshakeReady {
            instance_id: ids.server.clone(),
            cluster_id: ids.cluster.clone(),
            node_name: format!("{account}-server-1"),
            k3s_version: VERSION.into(),
            token_fingerprint: None,
        },
    )
    .push(
        account,
        ClusterActivated {
            cluster_id: ids.cluster.clone(),
        },
    )
    .push(
        account,
        NodeRegistered {
            cluster_id: ids.cluster.clone(),
            instance_id: ids.server.clone(),
            role: NodeRole::ControlPlane,
        },
    );
}

/// A worker joining the cluster with an explicit `target_cluster_id`.
pub fn worker_join(s: &mut Stream, account: &str, ids: &Ids) {
    let agent = Actor::Agent {
        instance_id: ids.worker.clone(),
    };
    s.push(
        account,
        ModuleAssigned {
            assignment_id: format!("{account}-asg-worker"),
            template_id: ids.worker_tmpl.clone(),
            module_name: K3sModule::K3sAgent,
            config: ModuleConfig {
                target_cluster_id: Some(ids.cluster.clone()),
                extra: BTreeMap::new(),
            },
            module_version_id: None,
            instance_id: None,
        },
    )
    .push_as(
        account,
        agent.clone(),
        HandshakeJoinRequest {
            instance_id: ids.worker.clone(),
            module_name: K3sModule::K3sAgent,
            target_cluster_id: Some(ids.cluster.clone()),
        },
    )
    .push(
        account,
        JoinTokenIssued {
            instance_id: ids.worker.clone(),
            cluster_id: ids.cluster.clone(),
            api_endpoint: "https://[fd00:abcd:1::100]:6443".into(),
            token_fingerprint: FP.into(),
        },
    )
    .push(
        account,
        NodeRegistered {
            cluster_id: ids.cluster.clone(),
            instance_id: ids.worker.clone(),
            role: NodeRole::Worker,
        },
    )
    .push_as(
        account,
        agent,
        HandshakeReady {
            instance_id: ids.worker.clone(),
            cluster_id: ids.cluster.clone(),
            node_name: format!("{account}-worker-1"),
            k3s_version: VERSION.into(),
            token_fingerprint: None,
        },
    );
}

/// The cluster's decommission (the VIP release is reported with it and on its own).
pub fn decommission(s: &mut Stream, account: &str, ids: &Ids) {
    s.push(
        account,
        ClusterDecommissioned {
            cluster_id: ids.cluster.clone(),
            released_virtual_ip_id: Some(ids.vip.clone()),
        },
    )
    .push(
        account,
        VirtualIpReleased {
            virtual_ip_id: ids.vip.clone(),
            reason: "cluster decommissioned".into(),
        },
    );
}

/// An approval that is requested then granted.
pub fn approval(s: &mut Stream, account: &str, id: &str) {
    s.push(
        account,
        ApprovalRequested {
            approval_id: id.into(),
            action: "vip_promotion".into(),
            subject: "virtual_ip/vip-x".into(),
            summary: "promote".into(),
            expires_at: "2026-11-21T12:15:00Z".into(),
        },
    );
}

/// The whole lifecycle of one account: set-up, bootstrap, worker join,
/// approval, decommission.
pub fn full_lifecycle(account: &str) -> Stream {
    let ids = Ids::new(account);
    let mut s = Stream::new();
    setup(&mut s, account, &ids);
    bootstrap(&mut s, account, &ids);
    worker_join(&mut s, account, &ids);
    approval(&mut s, account, "appr-1");
    s.push_as(
        account,
        Actor::Operator {
            token_id: format!("{account}-tok"),
        },
        ApprovalGranted {
            approval_id: "appr-1".into(),
        },
    );
    decommission(&mut s, account, &ids);
    s
}
