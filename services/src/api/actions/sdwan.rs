//! SD-WAN networks and peers: overlay /64 and VIP range allocation, peer
//! /128s, and the `pod_subnet_prefix` overlap rules.

use super::{check_name, new_id, ActionContext};
use crate::api::auth::KUBERNETES_PROVISION;
use crate::api::error::ApiError;
use crate::log::{Expect, LogError};
use axum::http::StatusCode;
use ipnet::{IpNet, Ipv6Net};
use powernode_events::payloads::sdwan::{NetworkCreated, PeerAttached, RoutingMode};
use powernode_events::{AccountId, AggregateRef, AggregateType, Envelope};
use powernode_projections::FleetState;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::net::Ipv6Addr;

/// VIPs come from `<overlay>::100/120`.
const VIP_RANGE_HOST: u128 = 0x100;
const VIP_RANGE_LEN: u8 = 120;
/// Attempts when a concurrent attach to the same network went first.
const ATTACH_ATTEMPTS: usize = 50;

fn overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn parse_prefix(field: &str, s: &str) -> Result<IpNet, ApiError> {
    let net: IpNet = s.parse().map_err(|e| {
        ApiError::bad_request(
            "invalid_arguments",
            format!("{field}: {s:?} is not a CIDR prefix ({e})"),
        )
    })?;
    if net.trunc() != net {
        return Err(ApiError::bad_request(
            "invalid_arguments",
            format!(
                "{field}: {s} has host bits set; did you mean {}?",
                net.trunc()
            ),
        ));
    }
    Ok(net)
}

fn overlap_error(prefix: &IpNet, other: &IpNet, what: String) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "prefix_overlap",
        format!("{prefix} overlaps {what} {other}"),
    )
}

/// Every prefix in the account a new `pod_subnet_prefix` or LAN subnet must
/// stay clear of, with a description for the error message.
fn taken_prefixes(fleet: &FleetState, account: &AccountId) -> Vec<(IpNet, String)> {
    let mut out = Vec::new();
    let Some(acc) = fleet.account(account) else {
        return out;
    };
    for n in acc.networks.values() {
        out.push((
            IpNet::V6(n.overlay_prefix),
            format!("the overlay of network {}", n.id),
        ));
        out.push((
            IpNet::V6(n.vip_range),
            format!("the VIP range of network {}", n.id),
        ));
        if let Some(p) = n.pod_subnet_prefix {
            out.push((p, format!("the pod_subnet_prefix of network {}", n.id)));
        }
    }
    for p in acc.peers.values() {
        for lan in &p.lan_subnets {
            out.push((*lan, format!("a LAN subnet of peer {}", p.id)));
        }
    }
    out
}

/// The account's ULA /48 (from a hash of the account id) and the first free /64 in it.
fn allocate_overlay(fleet: &FleetState, account: &AccountId) -> Result<Ipv6Net, ApiError> {
    let h = Sha256::digest(account.as_str().as_bytes());
    let global = u128::from_be_bytes([
        0xfd, h[0], h[1], h[2], h[3], h[4], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    let used: Vec<Ipv6Net> = fleet
        .account(account)
        .map(|a| a.networks.values().map(|n| n.overlay_prefix).collect())
        .unwrap_or_default();
    (1u128..=0xffff)
        .map(|subnet| {
            Ipv6Net::new(Ipv6Addr::from(global | (subnet << 64)), 64)
                .expect("64 is a valid prefix length")
        })
        .find(|net| !used.contains(net))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "exhausted",
                "the account has no free overlay /64 left",
            )
        })
}

/// `system_sdwan_create_network({name, pod_subnet_prefix?, routing_mode?})`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateNetwork {
    name: String,
    #[serde(default)]
    pod_subnet_prefix: Option<String>,
    #[serde(default)]
    routing_mode: Option<RoutingMode>,
}

pub async fn create_network(ctx: &ActionContext<'_>, a: CreateNetwork) -> Result<Value, ApiError> {
    ctx.operator.require(KUBERNETES_PROVISION)?;
    check_name("name", &a.name)?;
    let pod = a
        .pod_subnet_prefix
        .as_deref()
        .map(|p| parse_prefix("pod_subnet_prefix", p))
        .transpose()?;
    let id = new_id("net");
    let event = {
        let fleet = ctx.fleet().await;
        let account = &ctx.operator.account;
        let overlay = allocate_overlay(&fleet, account)?;
        let vip_base = u128::from(overlay.network()) | VIP_RANGE_HOST;
        let vip_range = Ipv6Net::new(Ipv6Addr::from(vip_base), VIP_RANGE_LEN)
            .expect("120 is a valid prefix length");
        if let Some(pod) = &pod {
            let own = [
                (IpNet::V6(overlay), "this network's overlay".to_string()),
                (IpNet::V6(vip_range), "this network's VIP range".to_string()),
            ];
            for (other, what) in own.into_iter().chain(taken_prefixes(&fleet, account)) {
                if overlap(pod, &other) {
                    return Err(overlap_error(pod, &other, what));
                }
            }
        }
        let subnet = (u128::from(overlay.network()) >> 64) & 0xffff;
        Envelope::new(
            account.clone(),
            ctx.actor(),
            NetworkCreated {
                network_id: id.clone(),
                name: a.name,
                handle: format!("n{subnet:x}"),
                overlay_prefix: overlay,
                vip_range,
                pod_subnet_prefix: pod,
                routing_mode: a.routing_mode.unwrap_or(RoutingMode::Ibgp),
            },
        )
    };
    ctx.append(&[event]).await?;
    let fleet = ctx.fleet().await;
    Ok(json!({ "network": fleet.network(&ctx.operator.account, &id) }))
}

/// The id of an instance's peer on a network (and of the attaching event).
fn peer_uuid(network_id: &str, instance_id: &str) -> uuid::Uuid {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("powernode/peer/{network_id}/{instance_id}").as_bytes(),
    )
}

/// A /64 host id for the instance: 64 bits of a hash of (network,
/// instance) with the top bit set, so it never falls among the reserved low
/// ids or the VIP range `::100/120`; re-hashed in the (2^-63) case it is
/// taken.
fn peer_host(network_id: &str, instance_id: &str, used: &[u128]) -> u128 {
    (0u32..)
        .map(|salt| {
            let h = Sha256::digest(format!("{network_id}/{instance_id}/{salt}").as_bytes());
            let id = u64::from_be_bytes(h[..8].try_into().expect("8 bytes")) | (1 << 63);
            u128::from(id)
        })
        .find(|h| !used.contains(h))
        .expect("a free host id exists")
}

/// `system_sdwan_attach_peer({network_id, node_instance_id, lan_subnets?})`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachPeer {
    network_id: String,
    node_instance_id: String,
    #[serde(default)]
    lan_subnets: Vec<String>,
}

pub async fn attach_peer(ctx: &ActionContext<'_>, a: AttachPeer) -> Result<Value, ApiError> {
    ctx.operator.require(KUBERNETES_PROVISION)?;
    let lans = a
        .lan_subnets
        .iter()
        .map(|s| parse_prefix("lan_subnets", s))
        .collect::<Result<Vec<_>, _>>()?;
    let account = ctx.operator.account.clone();
    let aggregate = AggregateRef::new(AggregateType::Network, a.network_id.clone());
    for _ in 0..ATTACH_ATTEMPTS {
        let guard = ctx.log().aggregate_last_seq(&account, &aggregate).await?;
        // Decide on a projection that has seen everything up to the guard.
        ctx.wait_for(guard.unwrap_or(0)).await?;
        let event = {
            let fleet = ctx.fleet().await;
            let network = fleet
                .network(&account, &a.network_id)
                .ok_or_else(|| ApiError::not_found("network", &a.network_id))?;
            match fleet.instance(&account, &a.node_instance_id) {
                Some(i) if i.status != powernode_projections::fleet::InstanceStatus::Terminated => {
                }
                _ => return Err(ApiError::not_found("instance", &a.node_instance_id)),
            }
            let acc = fleet
                .account(&account)
                .expect("the network's account exists");
            let peers: Vec<_> = acc
                .peers
                .values()
                .filter(|p| p.network_id == a.network_id)
                .collect();
            if let Some(p) = peers.iter().find(|p| p.instance_id == a.node_instance_id) {
                return Ok(json!({ "peer": p }));
            }
            for lan in &lans {
                for n in acc.networks.values() {
                    if let Some(pod) = n.pod_subnet_prefix.filter(|pod| overlap(lan, pod)) {
                        return Err(overlap_error(
                            lan,
                            &pod,
                            format!("the pod_subnet_prefix of network {}", n.id),
                        ));
                    }
                }
            }
            let base = u128::from(network.overlay_prefix.network());
            let used: Vec<u128> = peers
                .iter()
                .map(|p| u128::from(p.overlay_ip) - base)
                .collect();
            let host = peer_host(&a.network_id, &a.node_instance_id, &used);
            let mut event = Envelope::new(
                account.clone(),
                ctx.actor(),
                PeerAttached {
                    network_id: a.network_id.clone(),
                    peer_id: format!(
                        "peer-{}",
                        peer_uuid(&a.network_id, &a.node_instance_id).simple()
                    ),
                    instance_id: a.node_instance_id.clone(),
                    overlay_ip: Ipv6Addr::from(base | host),
                    lan_subnets: lans.clone(),
                },
            );
            // The same instance attached twice at once is one event.
            event.id = peer_uuid(&a.network_id, &a.node_instance_id);
            event
        };
        // The address is derived from the instance, so concurrent attaches of
        // different instances do not contend; only LAN subnets (checked
        // against the network's other peers) need the network's guard.
        let expect = match (lans.is_empty(), guard) {
            (true, _) => Expect::Any,
            (false, g) => g.map_or(Expect::NoEvents, Expect::LastSeq),
        };
        match ctx.append_guarded(&event, expect).await {
            Ok(_) => {
                let fleet = ctx.fleet().await;
                let peer = fleet.account(&account).and_then(|acc| {
                    acc.peers
                        .values()
                        .find(|p| {
                            p.network_id == a.network_id && p.instance_id == a.node_instance_id
                        })
                        .cloned()
                });
                return Ok(json!({ "peer": peer }));
            }
            Err(ApiError {
                code: "conflict", ..
            }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(LogError::Unavailable(format!("network {} is busy; retry", a.network_id)).into())
}

/// `system_sdwan_update_network({network_id, pod_subnet_prefix})`: opts a
/// network into routing flannel pod traffic over the overlay. The prefix
/// may be set on a network that already has clusters (migration), but once
/// a live cluster references the network it never changes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateNetwork {
    network_id: String,
    pod_subnet_prefix: String,
}

pub async fn update_network(ctx: &ActionContext<'_>, a: UpdateNetwork) -> Result<Value, ApiError> {
    ctx.operator.require(KUBERNETES_PROVISION)?;
    let pod = parse_prefix("pod_subnet_prefix", &a.pod_subnet_prefix)?;
    let account = ctx.operator.account.clone();
    let aggregate = AggregateRef::new(AggregateType::Network, a.network_id.clone());
    let guard = ctx.log().aggregate_last_seq(&account, &aggregate).await?;
    ctx.wait_for(guard.unwrap_or(0)).await?;
    let event = {
        let fleet = ctx.fleet().await;
        let network = fleet
            .network(&account, &a.network_id)
            .ok_or_else(|| ApiError::not_found("network", &a.network_id))?;
        if network.pod_subnet_prefix == Some(pod) {
            return Ok(json!({ "network": network, "changed": false }));
        }
        if let Some(current) = network.pod_subnet_prefix {
            let referencing: Vec<&str> = fleet
                .clusters(&account, false)
                .into_iter()
                .filter(|c| c.network_id.as_deref() == Some(a.network_id.as_str()))
                .map(|c| c.id.as_str())
                .collect();
            if !referencing.is_empty() {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "pod_subnet_prefix_immutable",
                    format!(
                        "network {} has pod_subnet_prefix {current}, referenced by cluster(s) {}; a k3s pod CIDR cannot change after bootstrap — decommission and rebuild the cluster(s) to move to {pod}",
                        a.network_id,
                        referencing.join(", ")
                    ),
                ));
            }
        }
        let own = [
            (
                IpNet::V6(network.overlay_prefix),
                "this network's overlay".to_string(),
            ),
            (
                IpNet::V6(network.vip_range),
                "this network's VIP range".to_string(),
            ),
        ];
        let others = taken_prefixes(&fleet, &account)
            .into_iter()
            .filter(|(p, _)| {
                Some(*p) != network.pod_subnet_prefix
                    && *p != IpNet::V6(network.overlay_prefix)
                    && *p != IpNet::V6(network.vip_range)
            });
        for (other, what) in own.into_iter().chain(others) {
            if overlap(&pod, &other) {
                return Err(overlap_error(&pod, &other, what));
            }
        }
        Envelope::new(
            account.clone(),
            ctx.actor(),
            powernode_events::payloads::sdwan::PodSubnetPrefixSet {
                network_id: a.network_id.clone(),
                pod_subnet_prefix: pod,
            },
        )
    };
    let expect = guard.map_or(Expect::NoEvents, Expect::LastSeq);
    match ctx.append_guarded(&event, expect).await {
        Ok(_) => {}
        Err(ApiError {
            code: "conflict", ..
        }) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("network {} changed meanwhile; retry", a.network_id),
            ))
        }
        Err(e) => return Err(e),
    }
    let fleet = ctx.fleet().await;
    Ok(json!({ "network": fleet.network(&account, &a.network_id), "changed": true }))
}
