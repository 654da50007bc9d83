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
        .and_then(|t| t.assignment_for(&instance.id, K3sModule::K3sServer))
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
                // A row restored from a snapshot older than the field has
                // no time: the epoch, still valid RFC 3339 for every reader.
                registered_at: row
                    .registered_at
                    .unwrap_or_default()
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
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

/// Checks the VIP addresses a heartbeat names (held, or probed) against
/// the log: a VIP of the instance's account must be named with its own
/// address, which lies in its network's VIP range. An agent naming another
/// address (outside the range, or another VIP's) is refused and nothing of
/// its beat is recorded. VIP ids the account does not have are ignored, as
/// elsewhere in the heartbeat.
pub fn check_vip_addresses(
    fleet: &FleetState,
    account: &AccountId,
    hb: &powernode_protocol::Heartbeat,
) -> Result<(), super::Refusal> {
    let Some(a) = fleet.account(account) else {
        return Ok(());
    };
    let named = hb
        .held_vips
        .iter()
        .map(|h| ("held_vips", &h.virtual_ip_id, &h.vip))
        .chain(
            hb.vip_probes
                .iter()
                .map(|p| ("vip_probes", &p.virtual_ip_id, &p.vip)),
        );
    for (field, id, address) in named {
        let Some(vip) = a.virtual_ips.get(id) else {
            continue;
        };
        let range = a.networks.get(&vip.network_id).map(|n| n.vip_range);
        let parsed = address.parse::<std::net::Ipv6Addr>().ok();
        if parsed != Some(vip.vip) {
            let outside = match (parsed, range) {
                (Some(ip), Some(r)) if !r.contains(&ip) => {
                    format!(", outside network {}'s VIP range {r}", vip.network_id)
                }
                _ => String::new(),
            };
            return Err(super::refusal(
                "vip_mismatch",
                format!(
                    "{field}: {address:?} is not virtual IP {id}'s address {}{outside}",
                    vip.vip
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::given::*;
    use powernode_events::payloads::sdwan::{VirtualIpPromoted, WireguardKeyRegistered};
    use powernode_events::wireguard::encode_base64;
    use powernode_events::EventPayload;

    /// A joined worker; both instances registered a WireGuard key.
    fn keyed() -> Given {
        let mut g = Given::joined_worker();
        for (n, instance) in [(1u8, g.ids.server.clone()), (2, g.ids.worker.clone())] {
            g.and(WireguardKeyRegistered {
                instance_id: instance,
                public_key: encode_base64(&[n; 32]),
                endpoint: format!("10.99.0.{n}:51820"),
            });
        }
        g
    }

    fn account() -> AccountId {
        AccountId::new(ACCOUNT).expect("a valid account id")
    }

    #[test]
    fn a_vip_named_with_another_address_is_refused_naming_it() {
        let g = keyed();
        let state = g.state();
        let vip = state
            .account(&account())
            .and_then(|a| a.virtual_ips.get(&g.ids.vip))
            .expect("the given VIP")
            .clone();
        let beat = |held: &str, probed: &str| powernode_protocol::Heartbeat {
            instance_id: g.ids.server.clone(),
            sent_at_ms: 0,
            held_vips: vec![powernode_protocol::HeldVip {
                virtual_ip_id: g.ids.vip.clone(),
                vip: held.to_string(),
                generation: 1,
            }],
            after_seq: None,
            wireguard_applied: Vec::new(),
            vip_probes: vec![VipProbe {
                virtual_ip_id: g.ids.vip.clone(),
                vip: probed.to_string(),
                ..probe(&g.ids.server, 1)
            }],
            report: None,
            signature: String::new(),
        };
        let own = vip.vip.to_string();
        assert!(check_vip_addresses(&state, &account(), &beat(&own, &own)).is_ok());
        let e = check_vip_addresses(&state, &account(), &beat("fd00:dead::1", &own))
            .expect_err("an address outside the range");
        assert_eq!(e.code, "vip_mismatch");
        assert!(e.message.contains("outside network"), "{}", e.message);
        assert!(e.message.contains("held_vips"), "{}", e.message);
        let e = check_vip_addresses(&state, &account(), &beat(&own, "not-an-address"))
            .expect_err("a probe of something else");
        assert!(e.message.contains("vip_probes"), "{}", e.message);
    }

    fn probe(by: &str, generation: u64) -> VipProbe {
        VipProbe {
            virtual_ip_id: String::new(),
            vip: String::new(),
            reached: true,
            answered_by: Some(by.to_string()),
            generation: Some(generation),
            probed_at_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn only_a_keyed_non_holder_probes_the_vip() {
        let state = Given::joined_worker().state();
        let worker = state
            .instance(&account(), &Ids::new(ACCOUNT).worker)
            .cloned();
        let worker = worker.expect("the worker");
        assert!(
            probe_targets(&state, &account(), &worker).is_empty(),
            "no key"
        );
        let g = keyed();
        let state = g.state();
        let worker = state
            .instance(&account(), &g.ids.worker)
            .expect("the worker");
        let targets = probe_targets(&state, &account(), worker);
        let [t] = &targets[..] else {
            panic!("{targets:?}")
        };
        assert_eq!(t.virtual_ip_id, g.ids.vip);
        assert_eq!(t.holder_instance_id, g.ids.server);
        let server = state
            .instance(&account(), &g.ids.server)
            .expect("the server");
        assert!(
            probe_targets(&state, &account(), server).is_empty(),
            "the holder"
        );
    }

    #[test]
    fn a_server_learns_its_clusters_nodes_a_worker_does_not() {
        let g = keyed();
        let state = g.state();
        let server = state
            .instance(&account(), &g.ids.server)
            .expect("the server");
        let nodes = cluster_nodes(&state, &account(), server);
        assert_eq!(nodes.len(), 2, "{nodes:?}");
        let roles: Vec<(&str, &str)> = nodes
            .iter()
            .map(|n| (n.instance_id.as_str(), n.role.as_str()))
            .collect();
        assert!(
            roles.contains(&(g.ids.server.as_str(), "server")),
            "{roles:?}"
        );
        assert!(
            roles.contains(&(g.ids.worker.as_str(), "agent")),
            "{roles:?}"
        );
        assert!(nodes
            .iter()
            .all(|n| n.overlay_ip.is_some() && !n.name.is_empty()));
        assert!(
            nodes.iter().all(|n| !n.registered_at.is_empty()),
            "{nodes:?}"
        );
        let worker = state
            .instance(&account(), &g.ids.worker)
            .expect("the worker");
        assert!(cluster_nodes(&state, &account(), worker).is_empty());
    }

    #[test]
    fn a_probe_reaching_the_new_holder_is_recorded_once_per_generation() {
        let mut g = keyed();
        let (vip, server, worker) = (
            g.ids.vip.clone(),
            g.ids.server_peer.clone(),
            g.ids.worker_peer.clone(),
        );
        g.and(VirtualIpPromoted {
            virtual_ip_id: vip.clone(),
            from_peer_id: Some(server),
            to_peer_id: worker.clone(),
            generation: 2,
            reason: "test".into(),
            to_instance_id: None,
            approval_id: None,
        });
        let state = g.state();
        let mut sent = HashSet::new();
        let with_vip = |mut p: VipProbe| {
            p.virtual_ip_id = vip.clone();
            p
        };
        // The old holder answering, or the new one at the old generation:
        // not the data-path check of generation 2.
        let stale = [
            with_vip(probe(&g.ids.server, 1)),
            with_vip(probe(&g.ids.worker, 1)),
        ];
        assert!(reachable_events(&state, &account(), &g.ids.server, &stale, &mut sent).is_empty());
        // The holder probing itself does not count either.
        let own = [with_vip(probe(&g.ids.worker, 2))];
        assert!(reachable_events(&state, &account(), &g.ids.worker, &own, &mut sent).is_empty());
        // The server's probe reached the new holder at generation 2.
        let events = reachable_events(&state, &account(), &g.ids.server, &own, &mut sent);
        let [e] = &events[..] else {
            panic!("{events:?}")
        };
        let EventPayload::VirtualIpReachable(p) = &e.payload else {
            panic!("{e:?}")
        };
        assert_eq!(
            (p.generation, p.holder_peer_id.as_str()),
            (2, worker.as_str())
        );
        assert_eq!(p.probed_by_peer_id, g.ids.server_peer);
        assert_eq!(e.id, reachable_event_id(&vip, 2));
        // Sent once; and once folded, never again (another intake).
        assert!(reachable_events(&state, &account(), &g.ids.server, &own, &mut sent).is_empty());
        g.and(e.payload.clone());
        let folded = g.state();
        let mut fresh = HashSet::new();
        assert!(reachable_events(&folded, &account(), &g.ids.server, &own, &mut fresh).is_empty());
    }
}
