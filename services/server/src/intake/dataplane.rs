//! The data plane in a heartbeat's answer, and the data-path check.
//!
//! * `wireguard`: the desired config of each network the instance is a
//!   peer of, once its agent registered a key.
//! * `probe_targets`: the allocated VIPs of its cluster it does not hold,
//!   on a network it has a key-registered peer on (workers probe too).
//! * `cluster_nodes`: for a `k3s-server`, the cluster's nodes as the
//!   platform knows them (what its simulated API lists).
//!
//! A probe that reached the current holder at the VIP's newest generation
//! completes the promotion on the data path: `virtual_ip.reachable` is
//! appended once per (VIP, generation) — its id is derived from them, so
//! concurrent intakes collapse to one fact.

use powernode_events::payloads::k3s::{K3sModule, NodeRole};
use powernode_events::payloads::sdwan::VirtualIpReachable;
use powernode_events::{AccountId, Actor, Envelope};
use powernode_projections::fleet::{Instance, K8sNodeStatus, VipStatus};
use powernode_projections::FleetState;
use powernode_protocol::{ClusterNode, ProbeTarget, VipProbe};
use powernode_runtime::derived_event_id;
use std::collections::HashSet;
use uuid::Uuid;

/// Namespace of the ids of `virtual_ip.reachable` events.
const REACHABLE_NAMESPACE: Uuid = Uuid::from_u128(0x7e1d_a991_0000_4000_8000_7265_6163_6862);

/// The id of the `reachable` fact of `vip_id` at `generation`.
pub fn reachable_event_id(vip_id: &str, generation: u64) -> Uuid {
    derived_event_id(REACHABLE_NAMESPACE, &format!("{vip_id}/{generation}"))
}

/// The VIPs `instance_id` should probe: those of its cluster it does not
/// hold, when it has a registered WireGuard key and a peer on the VIP's
/// network (it can only reach the VIP through that tunnel).
pub fn probe_targets(
    fleet: &FleetState,
    account: &AccountId,
    instance: &Instance,
) -> Vec<ProbeTarget> {
    let Some(a) = fleet.account(account) else {
        return Vec::new();
    };
    if !a.wireguard_keys.contains_key(&instance.id) {
        return Vec::new();
    }
    let Some(cluster_id) = instance.cluster_id.as_deref() else {
        return Vec::new();
    };
    let Some(vip) = fleet
        .cluster_virtual_ip(account, cluster_id)
        .filter(|v| v.status == VipStatus::Allocated)
    else {
        return Vec::new();
    };
    let on_network = fleet
        .instance_peers(account, &instance.id)
        .iter()
        .any(|p| p.network_id == vip.network_id);
    let Some(holder) = a.peers.get(&vip.holder_peer_id) else {
        return Vec::new();
    };
    if !on_network || holder.instance_id == instance.id {
        return Vec::new();
    }
    vec![ProbeTarget {
        virtual_ip_id: vip.id.clone(),
        vip: vip.vip.to_string(),
        generation: vip.generation,
        holder_instance_id: holder.instance_id.clone(),
    }]
}

/// The nodes of `instance`'s cluster, for an instance whose template
/// assigns `k3s-server` (empty otherwise).
pub fn cluster_nodes(
    fleet: &FleetState,
    account: &AccountId,
    instance: &Instance,
) -> Vec<ClusterNode> {
    let server = fleet
        .template(account, &instance.template_id)
        .and_then(|t| t.assignment(K3sModule::K3sServer))
        .is_some();
    let (Some(a), Some(cluster_id)) = (fleet.account(account), instance.cluster_id.as_deref())
    else {
        return Vec::new();
    };
    if !server {
        return Vec::new();
    }
    let vip_network = fleet
        .cluster_virtual_ip(account, cluster_id)
        .map(|v| v.network_id.clone());
    fleet
        .cluster_nodes(account, cluster_id)
        .into_iter()
        .map(|row| {
            let node_instance = a.instances.get(&row.instance_id);
            let hostname = node_instance
                .and_then(|i| a.nodes.get(&i.node_id))
                .map(|n| n.hostname.clone());
            let peers = fleet.instance_peers(account, &row.instance_id);
            // Its address on the VIP's network, else on its first network.
            let overlay_ip = peers
                .iter()
                .find(|p| Some(&p.network_id) == vip_network.as_ref())
                .or_else(|| peers.iter().min_by_key(|p| p.attached_seq))
                .map(|p| p.overlay_ip.to_string());
            ClusterNode {
                name: row
                    .node_name
                    .clone()
                    .or(hostname)
                    .unwrap_or_else(|| row.instance_id.clone()),
                instance_id: row.instance_id.clone(),
                role: match row.role {
                    NodeRole::ControlPlane => "server",
                    NodeRole::Worker => "agent",
                }
                .to_string(),
                ready: row.status == K8sNodeStatus::Ready,
                overlay_ip,
                registered_at: row
                    .registered_at
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default(),
            }
        })
        .collect()
}

/// `virtual_ip.reachable` events for the probes of `prober_instance` that
/// reached a VIP's current holder at its newest generation, where the
/// projection has no check at that generation yet and this intake has not
/// sent one (`sent`: (VIP id, generation) already appended here).
pub fn reachable_events(
    fleet: &FleetState,
    account: &AccountId,
    prober_instance: &str,
    probes: &[VipProbe],
    sent: &mut HashSet<(String, u64)>,
) -> Vec<Envelope> {
    let Some(a) = fleet.account(account) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for probe in probes {
        let Some(vip) = a
            .virtual_ips
            .get(&probe.virtual_ip_id)
            .filter(|v| v.status == VipStatus::Allocated)
        else {
            continue;
        };
        let Some(holder) = a.peers.get(&vip.holder_peer_id) else {
            continue;
        };
        let reached_holder = probe.reached
            && probe.answered_by.as_deref() == Some(holder.instance_id.as_str())
            && probe.generation == Some(vip.generation);
        let known = vip
            .reachable
            .as_ref()
            .is_some_and(|r| r.generation >= vip.generation);
        if !reached_holder || known || holder.instance_id == prober_instance {
            continue;
        }
        // The prober's peer on the VIP's network.
        let Some(prober_peer) = fleet
            .instance_peers(account, prober_instance)
            .into_iter()
            .find(|p| p.network_id == vip.network_id)
        else {
            continue;
        };
        if !sent.insert((vip.id.clone(), vip.generation)) {
            continue;
        }
        let probed_at = chrono::DateTime::from_timestamp_millis(probe.probed_at_ms)
            .unwrap_or_else(chrono::Utc::now)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut event = Envelope::new(
            account.clone(),
            Actor::service("intake"),
            VirtualIpReachable {
                virtual_ip_id: vip.id.clone(),
                generation: vip.generation,
                holder_peer_id: holder.id.clone(),
                probed_by_peer_id: prober_peer.id.clone(),
                probed_at,
            },
        );
        event.id = reachable_event_id(&vip.id, vip.generation);
        event.correlation_id = event.id;
        out.push(event);
    }
    out
}
