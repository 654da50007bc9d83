//! Each peer's desired WireGuard configuration, folded from the log.
//!
//! A peer takes part in the data plane once its agent has registered a
//! WireGuard key. What is routed to a peer (its `AllowedIPs` on every other
//! peer): its /128, each VIP it is the route holder of (the holder at the
//! newest generation once its agent holds the address; see
//! [`super::VirtualIp::route_holder`]), its node's
//! pod subnet (flannel host-gw on a network with `pod_subnet_prefix`), its
//! LAN subnets, and, for the network's gateway, the /128 of every active
//! access grant. `ibgp` is a full mesh; `hub` sends every spoke through the
//! gateway. The revision is the network's `config_seq`.

use super::{AccountState, ClusterStatus, FleetState, InstanceStatus, Network, Peer, VipStatus};
use ipnet::IpNet;
use powernode_events::payloads::sdwan::RoutingMode;
use powernode_events::wireguard::{
    interface_name, parse_endpoint, WireguardConfig, WireguardPeer, PERSISTENT_KEEPALIVE_SECS,
};
use powernode_events::AccountId;
use std::net::IpAddr;

impl FleetState {
    /// The instance (and its account) that registered WireGuard `public_key`.
    pub fn wireguard_key_owner(&self, public_key: &str) -> Option<(&AccountId, &str)> {
        self.wireguard_key_owners
            .get(public_key)
            .map(|(a, i)| (a, i.as_str()))
    }

    /// The desired config of every network `instance_id` is a peer of,
    /// where it has registered a key; in network-id order.
    pub fn wireguard_configs_for_instance(
        &self,
        account: &AccountId,
        instance_id: &str,
    ) -> Vec<WireguardConfig> {
        let mut out: Vec<WireguardConfig> = self
            .instance_peers(account, instance_id)
            .into_iter()
            .filter_map(|p| self.wireguard_config(account, &p.id))
            .collect();
        out.sort_by(|a, b| a.network_id.cmp(&b.network_id));
        out
    }

    /// The desired config of `peer_id`; `None` for an unknown peer, or one
    /// whose agent has registered no key (or whose instance is terminated).
    pub fn wireguard_config(&self, account: &AccountId, peer_id: &str) -> Option<WireguardConfig> {
        let a = self.account(account)?;
        let me = a.peers.get(peer_id)?;
        let network = a.networks.get(&me.network_id)?;
        let my_key = eligible(a, me)?;
        let listen_port = parse_endpoint(&my_key.endpoint).ok()?.port();
        let gateway = gateway_of(a, network);
        let is_gateway = gateway.is_some_and(|g| g.id == me.id);
        let mut peers = Vec::new();
        let hub_spoke = network.routing_mode == RoutingMode::Hub && !is_gateway;
        for other in members(a, network).filter(|o| o.id != me.id) {
            let Some(key) = eligible(a, other) else {
                continue;
            };
            let is_other_gateway = gateway.is_some_and(|g| g.id == other.id);
            if hub_spoke && !is_other_gateway {
                continue;
            }
            let allowed_ips = if hub_spoke {
                everything_behind_hub(a, network, me)
            } else {
                let mut ips = routes_of(a, network, other);
                if is_other_gateway {
                    ips.extend(grant_routes(a, network, &other.id));
                }
                ips
            };
            peers.push(WireguardPeer {
                id: other.id.clone(),
                public_key: key.public_key.clone(),
                endpoint: Some(key.endpoint.clone()),
                persistent_keepalive: Some(PERSISTENT_KEEPALIVE_SECS),
                allowed_ips: sorted(allowed_ips),
            });
        }
        for grant in a.grants.values() {
            if grant.network_id == network.id
                && grant.ended.is_none()
                && grant.gateway_peer_id == me.id
            {
                peers.push(WireguardPeer {
                    id: grant.id.clone(),
                    public_key: grant.public_key.clone(),
                    endpoint: None,
                    persistent_keepalive: None,
                    allowed_ips: vec![host(grant.address.into())],
                });
            }
        }
        peers.sort_by(|x, y| x.id.cmp(&y.id));
        Some(WireguardConfig {
            network_id: network.id.clone(),
            interface: interface_name(&network.handle),
            address: me.overlay_ip,
            listen_port,
            revision: network.config_seq,
            forwarding: is_gateway,
            peers,
        })
    }

    /// The network's gateway peer: where access grants (and, under `hub`
    /// routing, every spoke) connect. See [`gateway_of`].
    pub fn wireguard_gateway(&self, account: &AccountId, network_id: &str) -> Option<&Peer> {
        let a = self.account(account)?;
        gateway_of(a, a.networks.get(network_id)?)
    }

    /// The pod subnet the platform gave `instance_id` on `network_id`.
    pub fn pod_subnet(
        &self,
        account: &AccountId,
        network_id: &str,
        instance_id: &str,
    ) -> Option<IpNet> {
        let a = self.account(account)?;
        let n = a.networks.get(network_id)?;
        pod_subnet(n, *n.pod_subnets.get(instance_id)?)
    }
}

/// The network's peers, oldest attachment first.
fn members<'a>(a: &'a AccountState, network: &'a Network) -> impl Iterator<Item = &'a Peer> {
    let mut v: Vec<&Peer> = a
        .peers
        .values()
        .filter(|p| p.network_id == network.id)
        .collect();
    v.sort_by_key(|p| (p.attached_seq, p.id.clone()));
    v.into_iter()
}

/// The peer's registered key, if it takes part in the data plane.
fn eligible<'a>(a: &'a AccountState, peer: &Peer) -> Option<&'a super::WireguardKey> {
    let instance = a.instances.get(&peer.instance_id)?;
    if instance.status == InstanceStatus::Terminated {
        return None;
    }
    a.wireguard_keys.get(&peer.instance_id)
}

/// The gateway: the oldest data-plane peer that is neither a VIP holder nor
/// a failover candidate (a worker or an edge box keeps a grant's tunnel up
/// while the control plane fails over), else the oldest data-plane peer.
pub(super) fn gateway_of<'a>(a: &'a AccountState, network: &'a Network) -> Option<&'a Peer> {
    let in_vip_duty = |p: &Peer| {
        a.virtual_ips.values().any(|v| {
            v.status == VipStatus::Allocated
                && (v.holder_peer_id == p.id || v.failover_candidate_peer_ids.contains(&p.id))
        })
    };
    let mut live = members(a, network).filter(|p| eligible(a, p).is_some());
    let first = live.next()?;
    std::iter::once(first)
        .chain(live)
        .find(|p| !in_vip_duty(p))
        .or(Some(first))
}

/// What is routed to `peer` on the others: its /128, its VIPs, its pod
/// subnet, its LAN subnets.
fn routes_of(a: &AccountState, network: &Network, peer: &Peer) -> Vec<IpNet> {
    let mut ips = vec![host(peer.overlay_ip.into())];
    for v in a.virtual_ips.values() {
        if v.network_id == network.id
            && v.status == VipStatus::Allocated
            && v.route_holder() == peer.id
        {
            ips.push(host(v.vip.into()));
        }
    }
    if live_flannel_node(a, &peer.instance_id) {
        if let Some(subnet) = network
            .pod_subnets
            .get(&peer.instance_id)
            .and_then(|i| pod_subnet(network, *i))
        {
            ips.push(subnet);
        }
    }
    ips.extend(peer.lan_subnets.iter().copied());
    ips
}

/// What a hub spoke routes to its hub: the whole overlay, the pod prefix
/// and every other peer's LAN subnets.
fn everything_behind_hub(a: &AccountState, network: &Network, me: &Peer) -> Vec<IpNet> {
    let mut ips = vec![IpNet::V6(network.overlay_prefix)];
    ips.extend(network.pod_subnet_prefix);
    for p in members(a, network).filter(|p| p.id != me.id) {
        ips.extend(p.lan_subnets.iter().copied());
    }
    ips
}

/// The /128s of the active grants that end at `gateway_peer_id`.
fn grant_routes(a: &AccountState, network: &Network, gateway_peer_id: &str) -> Vec<IpNet> {
    a.grants
        .values()
        .filter(|g| {
            g.network_id == network.id && g.ended.is_none() && g.gateway_peer_id == gateway_peer_id
        })
        .map(|g| host(g.address.into()))
        .collect()
}

/// Whether the instance is a node of a live cluster with a pod CIDR.
fn live_flannel_node(a: &AccountState, instance_id: &str) -> bool {
    a.k8s_nodes.iter().any(|(cluster_id, rows)| {
        rows.contains_key(instance_id)
            && a.clusters
                .get(cluster_id)
                .is_some_and(|c| c.pod_cidr.is_some() && c.status != ClusterStatus::Decommissioned)
    })
}

/// The `index`-th node subnet of the network's pod prefix: /24s of an IPv4
/// prefix, /64s of an IPv6 one.
pub fn pod_subnet(network: &Network, index: u32) -> Option<IpNet> {
    let prefix = network.pod_subnet_prefix?;
    let len = match prefix {
        IpNet::V4(_) => 24,
        IpNet::V6(_) => 64,
    };
    prefix.subnets(len).ok()?.nth(index as usize)
}

fn host(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}

fn sorted(mut v: Vec<IpNet>) -> Vec<IpNet> {
    v.sort();
    v.dedup();
    v
}
