//! The data plane's facts: WireGuard identities, access grants, the
//! data-path check, per-node pod subnets, and each network's config
//! revision (the sequence of the last event that changed what its peers'
//! tunnels must look like).

use super::{AccountState, VipStatus};
use chrono::{DateTime, Utc};
use powernode_events::payloads::sdwan::{
    AccessGrantCreated, AccessGrantEnd, AccessGrantRevoked, VirtualIpReachable,
    WireguardKeyRegistered,
};
use serde::{Deserialize, Serialize};
use std::net::Ipv6Addr;

/// An agent's registered WireGuard identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireguardKey {
    /// Base64 x25519 public key.
    pub public_key: String,
    /// Underlay `address:port`.
    pub endpoint: String,
    /// Sequence of the registering event.
    pub registered_seq: u64,
}

/// An operator's access grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessGrant {
    /// Grant id.
    pub id: String,
    /// Network id.
    pub network_id: String,
    /// Human name.
    pub name: String,
    /// Base64 x25519 public key.
    pub public_key: String,
    /// The grant's overlay /128.
    pub address: Ipv6Addr,
    /// The peer its tunnel ends at.
    pub gateway_peer_id: String,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// `None` while active; why it ended otherwise.
    pub ended: Option<AccessGrantEnd>,
    /// Sequence of the creating event.
    pub created_seq: u64,
}

impl AccessGrant {
    /// Active: not revoked, not expired by the log, and (given `now`) not
    /// past its expiry.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.ended.is_none() && self.expires_at.is_none_or(|t| t > now)
    }
}

/// The last data-path check that reached a VIP's holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reachability {
    /// The generation that answered.
    pub generation: u64,
    /// The peer that answered.
    pub holder_peer_id: String,
    /// The peer that probed.
    pub probed_by_peer_id: String,
    /// When (RFC 3339, the prober's clock).
    pub probed_at: String,
    /// Sequence of the `reachable` event.
    pub seq: u64,
}

/// Marks `network_id`'s data plane changed at `seq`.
pub(super) fn touch(account: &mut AccountState, network_id: &str, seq: u64) {
    if let Some(n) = account.networks.get_mut(network_id) {
        n.config_seq = n.config_seq.max(seq);
    }
}

/// The networks `instance_id` is a peer of.
fn networks_of(account: &AccountState, instance_id: &str) -> Vec<String> {
    account
        .instance_peers
        .get(instance_id)
        .into_iter()
        .flatten()
        .filter_map(|p| account.peers.get(p).map(|p| p.network_id.clone()))
        .collect()
}

/// Marks every network `instance_id` is a peer of changed at `seq`.
pub(super) fn touch_instance(account: &mut AccountState, instance_id: &str, seq: u64) {
    for n in networks_of(account, instance_id) {
        touch(account, &n, seq);
    }
}

/// `system.sdwan.wireguard_key.registered`: the newest registration wins.
/// Returns the key it replaced, if any (for the fleet-wide key index).
pub(super) fn key_registered(
    account: &mut AccountState,
    seq: u64,
    p: &WireguardKeyRegistered,
) -> Option<String> {
    if !account.instances.contains_key(&p.instance_id) {
        return None;
    }
    let old = account.wireguard_keys.insert(
        p.instance_id.clone(),
        WireguardKey {
            public_key: p.public_key.clone(),
            endpoint: p.endpoint.clone(),
            registered_seq: seq,
        },
    );
    touch_instance(account, &p.instance_id, seq);
    old.map(|k| k.public_key)
}

/// `system.sdwan.access_grant.created` (first creation wins).
pub(super) fn grant_created(account: &mut AccountState, seq: u64, p: &AccessGrantCreated) {
    if account.grants.contains_key(&p.grant_id) || !account.networks.contains_key(&p.network_id) {
        return;
    }
    account.grants.insert(
        p.grant_id.clone(),
        AccessGrant {
            id: p.grant_id.clone(),
            network_id: p.network_id.clone(),
            name: p.name.clone(),
            public_key: p.public_key.clone(),
            address: p.address,
            gateway_peer_id: p.gateway_peer_id.clone(),
            expires_at: p
                .expires_at
                .as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc)),
            ended: None,
            created_seq: seq,
        },
    );
    touch(account, &p.network_id, seq);
}

/// `system.sdwan.access_grant.revoked`: the first end is kept.
pub(super) fn grant_revoked(account: &mut AccountState, seq: u64, p: &AccessGrantRevoked) {
    if let Some(g) = account.grants.get_mut(&p.grant_id) {
        if g.ended.is_none() {
            g.ended = Some(p.reason);
            let network = g.network_id.clone();
            touch(account, &network, seq);
        }
    }
}

/// `system.sdwan.virtual_ip.reachable`: the newest generation's check is kept.
pub(super) fn vip_reachable(account: &mut AccountState, seq: u64, p: &VirtualIpReachable) {
    if let Some(vip) = account.virtual_ips.get_mut(&p.virtual_ip_id) {
        if vip.status == VipStatus::Allocated
            && vip
                .reachable
                .as_ref()
                .is_none_or(|r| r.generation <= p.generation)
        {
            vip.reachable = Some(Reachability {
                generation: p.generation,
                holder_peer_id: p.holder_peer_id.clone(),
                probed_by_peer_id: p.probed_by_peer_id.clone(),
                probed_at: p.probed_at.clone(),
                seq,
            });
        }
    }
}

/// Gives `instance_id` a pod subnet index on every network it is a peer of
/// that has a `pod_subnet_prefix`, if it has a live flannel Kubernetes node
/// row and none yet. Indices are handed out in fold order and never reused,
/// so a node's pod subnet never moves.
pub(super) fn assign_pod_subnet(account: &mut AccountState, instance_id: &str, seq: u64) {
    // The instance's own cluster (a node is in one cluster at a time).
    let flannel_node = account
        .instances
        .get(instance_id)
        .and_then(|i| i.cluster_id.as_deref())
        .is_some_and(|cluster_id| {
            account
                .k8s_nodes
                .get(cluster_id)
                .is_some_and(|rows| rows.contains_key(instance_id))
                && account.clusters.get(cluster_id).is_some_and(|c| {
                    c.pod_cidr.is_some() && c.status != super::ClusterStatus::Decommissioned
                })
        });
    if !flannel_node {
        return;
    }
    for network_id in networks_of(account, instance_id) {
        let Some(n) = account.networks.get_mut(&network_id) else {
            continue;
        };
        if n.pod_subnet_prefix.is_none() || n.pod_subnets.contains_key(instance_id) {
            continue;
        }
        let next = n.pod_subnets.values().max().map_or(0, |m| m + 1);
        n.pod_subnets.insert(instance_id.to_string(), next);
        n.config_seq = n.config_seq.max(seq);
    }
}
