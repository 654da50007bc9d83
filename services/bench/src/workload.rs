//! A realistic event workload: the cluster lifecycle of the runbook, as the
//! services and agents emit it, with agent events signed by enrolled keys.
//!
//! Events are grouped into independent *streams* (one per cluster) whose
//! order matters within the stream only, so concurrent appenders can each
//! own some streams and the log still sees every agent enroll before it signs.

use ed25519_dalek::SigningKey;
use powernode_events::payloads::fleet::*;
use powernode_events::payloads::k3s::*;
use powernode_events::payloads::sdwan::*;
use powernode_events::{AccountId, Actor, Envelope, EventPayload};
use std::collections::BTreeMap;
use std::net::Ipv6Addr;

/// One cluster's lifecycle, in order.
pub struct ClusterStream {
    /// The events, in the order they must be appended.
    pub events: Vec<Envelope>,
}

const FP: &str = "sha256:5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";
const VERSION: &str = "v1.30.5+k3s1";

/// Builds streams totalling at least `total` events across `accounts` accounts.
pub fn build(total: usize, accounts: usize) -> Vec<ClusterStream> {
    let mut streams = Vec::new();
    let mut produced = 0;
    let mut i = 0usize;
    while produced < total {
        let account =
            AccountId::new(format!("acct-{}", i % accounts.max(1))).expect("generated id is valid");
        let s = cluster_lifecycle(&account, i, total - produced);
        produced += s.events.len();
        streams.push(s);
        i += 1;
    }
    streams
}

struct Builder<'a> {
    account: &'a AccountId,
    events: Vec<Envelope>,
    cap: usize,
}

impl Builder<'_> {
    fn service(&mut self, name: &str, p: impl Into<EventPayload>) {
        if self.events.len() < self.cap {
            self.events
                .push(Envelope::new(self.account.clone(), Actor::service(name), p));
        }
    }

    fn operator(&mut self, p: impl Into<EventPayload>) {
        if self.events.len() < self.cap {
            let actor = Actor::Operator {
                token_id: "tok-bench".into(),
            };
            self.events
                .push(Envelope::new(self.account.clone(), actor, p));
        }
    }

    fn agent(&mut self, instance: &str, key: &SigningKey, p: impl Into<EventPayload>) {
        if self.events.len() < self.cap {
            let actor = Actor::Agent {
                instance_id: instance.to_string(),
            };
            let mut e = Envelope::new(self.account.clone(), actor, p);
            e.sign(key).expect("example events always encode");
            self.events.push(e);
        }
    }
}

fn cluster_lifecycle(account: &AccountId, i: usize, cap: usize) -> ClusterStream {
    let mut b = Builder {
        account,
        events: Vec::with_capacity(64),
        cap,
    };
    let cluster_id = format!("cluster-{i:08}");
    let net = format!("net-{i:08}");
    let server_tmpl = format!("tmpl-srv-{i:08}");
    let worker_tmpl = format!("tmpl-wrk-{i:08}");
    let hi = (i as u16).wrapping_add(1);
    let overlay: ipnet::Ipv6Net = format!("fd00:{hi:x}:1::/64")
        .parse()
        .expect("generated prefix");
    let vip_range: ipnet::Ipv6Net = format!("fd00:{hi:x}:1::100/120")
        .parse()
        .expect("generated prefix");
    let vip: Ipv6Addr = format!("fd00:{hi:x}:1::100")
        .parse()
        .expect("generated address");
    b.operator(TemplateCreated {
        template_id: server_tmpl.clone(),
        name: format!("k3s-server-{i}"),
    });
    b.operator(TemplateCreated {
        template_id: worker_tmpl.clone(),
        name: format!("k3s-worker-{i}"),
    });
    b.operator(NetworkCreated {
        network_id: net.clone(),
        name: format!("k3s-net-{i}"),
        handle: format!("h{i}"),
        overlay_prefix: overlay,
        vip_range,
        pod_subnet_prefix: Some("10.42.0.0/16".parse().expect("literal prefix")),
        routing_mode: RoutingMode::Ibgp,
    });
    // 3 servers + 2 workers.
    let roles = [true, true, true, false, false];
    let mut members = Vec::new();
    for (n, &server) in roles.iter().enumerate() {
        let node_id = format!("node-{i:08}-{n}");
        let inst = format!("inst-{i:08}-{n}");
        let tmpl = if server { &server_tmpl } else { &worker_tmpl };
        let key = SigningKey::from_bytes(&seed(i, n));
        b.operator(NodeCreated {
            node_id: node_id.clone(),
            hostname: format!("k3s-{}-{i}-{n}", if server { "server" } else { "worker" }),
            template_id: tmpl.clone(),
            memory_mb: if server { 8192 } else { 2048 },
        });
        b.operator(InstanceProvisioned {
            instance_id: inst.clone(),
            node_id,
            template_id: tmpl.clone(),
            cni_plugin: None,
            enrollment_fingerprint: FP.into(),
        });
        b.agent(
            &inst,
            &key,
            AgentEnrolled {
                instance_id: inst.clone(),
                public_key: hex::encode(key.verifying_key().to_bytes()),
            },
        );
        b.operator(PeerAttached {
            network_id: net.clone(),
            peer_id: format!("peer-{i:08}-{n}"),
            instance_id: inst.clone(),
            overlay_ip: format!("fd00:{hi:x}:1::{:x}", n + 5)
                .parse()
                .expect("generated address"),
            lan_subnets: vec![],
        });
        members.push((inst, key, server, n));
    }
    b.operator(ModuleAssigned {
        assignment_id: format!("asg-{i:08}-s"),
        template_id: server_tmpl.clone(),
        module_name: K3sModule::K3sServer,
        config: ModuleConfig {
            target_cluster_id: None,
            extra: BTreeMap::new(),
        },
        module_version_id: None,
        instance_id: None,
    });
    let (boot, boot_key, _, _) = &members[0];
    b.agent(
        boot,
        boot_key,
        RuntimeInstalling {
            instance_id: boot.clone(),
            module_name: K3sModule::K3sServer,
            version: VERSION.into(),
        },
    );
    b.agent(
        boot,
        boot_key,
        HandshakeBootstrap {
            instance_id: boot.clone(),
            k3s_version: VERSION.into(),
            node_token_fingerprint: FP.into(),
            kubeconfig_fingerprint: FP.into(),
        },
    );
    let vip_id = format!("vip-{i:08}");
    b.service(
        "sdwan",
        VirtualIpAllocated {
            virtual_ip_id: vip_id.clone(),
            network_id: net.clone(),
            vip,
            purpose: VipPurpose::K3sApiEndpoint,
            cluster_id: cluster_id.clone(),
            primary_holder_peer_id: format!("peer-{i:08}-0"),
        },
    );
    let endpoint = format!("https://[{vip}]:6443");
    b.service(
        "provisioner",
        ClusterBootstrapped {
            cluster_id: cluster_id.clone(),
            name: format!("k3s-cluster-{i}"),
            bootstrap_instance_id: boot.clone(),
            api_endpoint: endpoint.clone(),
            network_id: Some(net.clone()),
            cni_plugin: CniPlugin::Flannel,
            pod_cidr: Some("10.42.0.0/16".parse().expect("literal prefix")),
            server_flags: vec![
                format!("--flannel-iface=wg-sdwan-h{i}"),
                "--flannel-backend=host-gw".into(),
                "--cluster-cidr=10.42.0.0/16".into(),
            ],
            join_token_fingerprint: format!("sha256:{:064x}", i),
        },
    );
    b.agent(
        boot,
        boot_key,
        HandshakeReady {
            instance_id: boot.clone(),
            cluster_id: cluster_id.clone(),
            node_name: format!("k3s-server-{i}-0"),
            k3s_version: VERSION.into(),
            token_fingerprint: None,
        },
    );
    b.service(
        "provisioner",
        ClusterActivated {
            cluster_id: cluster_id.clone(),
        },
    );
    b.service(
        "provisioner",
        NodeRegistered {
            cluster_id: cluster_id.clone(),
            instance_id: boot.clone(),
            role: NodeRole::ControlPlane,
        },
    );
    b.operator(ModuleAssigned {
        assignment_id: format!("asg-{i:08}-w"),
        template_id: worker_tmpl.clone(),
        module_name: K3sModule::K3sAgent,
        config: ModuleConfig {
            target_cluster_id: Some(cluster_id.clone()),
            extra: BTreeMap::new(),
        },
        module_version_id: None,
        instance_id: None,
    });
    for (inst, key, server, n) in members.iter().skip(1) {
        let module = if *server {
            K3sModule::K3sServer
        } else {
            K3sModule::K3sAgent
        };
        b.agent(
            inst,
            key,
            RuntimeInstalling {
                instance_id: inst.clone(),
                module_name: module,
                version: VERSION.into(),
            },
        );
        b.agent(
            inst,
            key,
            HandshakeJoinRequest {
                instance_id: inst.clone(),
                module_name: module,
                target_cluster_id: Some(cluster_id.clone()),
            },
        );
        b.service(
            "provisioner",
            JoinTokenIssued {
                instance_id: inst.clone(),
                cluster_id: cluster_id.clone(),
                api_endpoint: endpoint.clone(),
                token_fingerprint: FP.into(),
            },
        );
        if *server {
            b.service(
                "sdwan",
                VirtualIpCandidateAdded {
                    virtual_ip_id: vip_id.clone(),
                    peer_id: format!("peer-{i:08}-{n}"),
                },
            );
        }
        b.agent(
            inst,
            key,
            HandshakeReady {
                instance_id: inst.clone(),
                cluster_id: cluster_id.clone(),
                node_name: format!("k3s-{i}-{n}"),
                k3s_version: VERSION.into(),
                token_fingerprint: Some(format!("sha256:{:064x}", i)),
            },
        );
        let role = if *server {
            NodeRole::ControlPlane
        } else {
            NodeRole::Worker
        };
        b.service(
            "provisioner",
            NodeRegistered {
                cluster_id: cluster_id.clone(),
                instance_id: inst.clone(),
                role,
            },
        );
    }
    ClusterStream { events: b.events }
}

/// A deterministic key seed per (cluster, member).
fn seed(i: usize, n: usize) -> [u8; 32] {
    let mut s = [7u8; 32];
    s[..8].copy_from_slice(&(i as u64).to_le_bytes());
    s[8] = n as u8;
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_at_least_the_requested_count_with_signed_agent_events() {
        let streams = build(500, 4);
        let events: Vec<_> = streams.iter().flat_map(|s| &s.events).collect();
        assert_eq!(events.len(), 500);
        let signed = events.iter().filter(|e| e.signature.is_some()).count();
        assert!(signed > 100, "only {signed} signed");
        for e in &events {
            assert_eq!(e.signature.is_some(), e.actor.agent_instance().is_some());
        }
    }
}
