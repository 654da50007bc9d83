//! SD-WAN networks and peers: `system_sdwan_create_network`,
//! `system_sdwan_attach_peer`, `system_sdwan_update_network`,
//! `system_sdwan_list_networks`, `system_sdwan_get_peer_config`.

use ipnet::{IpNet, Ipv6Net};
use powernode_events::payloads::sdwan::RoutingMode;
use powernode_events::wireguard::WireguardConfig;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::net::Ipv6Addr;

/// Arguments of `system_sdwan_create_network`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateNetworkArgs {
    /// Human name, 1-128 characters.
    pub name: String,
    /// Pod CIDR of flannel clusters routed over the overlay (a CIDR prefix
    /// clear of every other prefix of the account).
    #[serde(default)]
    pub pod_subnet_prefix: Option<String>,
    /// `ibgp` without.
    #[serde(default)]
    pub routing_mode: Option<RoutingMode>,
}

/// Answer of `system_sdwan_create_network`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CreateNetworkAnswer {
    /// The new network.
    pub network: Option<Network>,
}

/// Arguments of `system_sdwan_attach_peer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachPeerArgs {
    /// Network id.
    pub network_id: String,
    /// The instance to attach.
    pub node_instance_id: String,
    /// LAN subnets the peer routes (CIDR prefixes).
    #[serde(default)]
    pub lan_subnets: Vec<String>,
}

/// Answer of `system_sdwan_attach_peer` (attaching twice answers the same peer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AttachPeerAnswer {
    /// The peer.
    pub peer: Option<Peer>,
}

/// Arguments of `system_sdwan_update_network`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateNetworkArgs {
    /// Network id.
    pub network_id: String,
    /// The pod CIDR to route over the overlay.
    pub pod_subnet_prefix: String,
}

/// Answer of `system_sdwan_update_network`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UpdateNetworkAnswer {
    /// The network as it is now.
    pub network: Option<Network>,
    /// False when it already had that prefix (nothing appended).
    pub changed: bool,
}

/// Arguments of `system_sdwan_list_networks` (none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListNetworksArgs {}

/// Answer of `system_sdwan_list_networks`, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ListNetworksAnswer {
    /// The account's networks.
    pub networks: Vec<NetworkView>,
}

/// A network with how many peers it has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NetworkView {
    /// The network.
    #[serde(flatten)]
    pub network: Network,
    /// Its peers.
    pub peer_count: usize,
}

/// An SD-WAN network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Network {
    /// Network id.
    pub id: String,
    /// Human name.
    pub name: String,
    /// Short handle used in interface names (`wg-sdwan-<handle>`).
    pub handle: String,
    /// The overlay /64.
    pub overlay_prefix: Ipv6Net,
    /// The range virtual IPs come from.
    pub vip_range: Ipv6Net,
    /// Pod CIDR for flannel clusters routed over the overlay, if opted in.
    pub pod_subnet_prefix: Option<IpNet>,
    /// Routing mode.
    pub routing_mode: RoutingMode,
    /// Sequence of the creating event.
    pub created_seq: u64,
    /// The data plane's revision: the sequence of the last event that
    /// changed what the network's tunnels must look like.
    #[serde(default)]
    pub config_seq: u64,
    /// The pod subnet index of each instance (by instance id) on a network
    /// with `pod_subnet_prefix`: its `index`-th /24 (IPv4) or /64 (IPv6).
    #[serde(default)]
    pub pod_subnets: std::collections::BTreeMap<String, u32>,
}

/// An instance attached to a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Peer {
    /// Peer id.
    pub id: String,
    /// Network id.
    pub network_id: String,
    /// The instance behind the peer.
    pub instance_id: String,
    /// Its overlay /128.
    pub overlay_ip: Ipv6Addr,
    /// LAN subnets it routes.
    pub lan_subnets: Vec<IpNet>,
    /// Sequence of the attaching event.
    pub attached_seq: u64,
    /// The WireGuard identity its agent registered (public key and
    /// endpoint; the private key never leaves the node). Absent until the
    /// agent registers one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard: Option<PeerWireguard>,
}

/// A peer's registered WireGuard identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PeerWireguard {
    /// Base64 of its x25519 public key.
    pub public_key: String,
    /// Underlay `address:port`.
    pub endpoint: String,
    /// Sequence of the registering event.
    pub registered_seq: u64,
}

/// Arguments of `system_sdwan_get_peer_config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetPeerConfigArgs {
    /// Peer id.
    pub peer_id: String,
}

/// Answer of `system_sdwan_get_peer_config`: the WireGuard config the
/// platform wants on the peer, and what its agent last reported applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GetPeerConfigAnswer {
    /// Peer id.
    pub peer_id: String,
    /// Network id.
    pub network_id: String,
    /// The instance behind the peer.
    pub instance_id: String,
    /// Its registered WireGuard identity, if any.
    pub wireguard: Option<PeerWireguard>,
    /// The desired config (public keys only); none until the peer's agent
    /// registered a key (or once its instance is terminated).
    pub desired: Option<WireguardConfig>,
    /// The revision the agent last reported applied on the interface, as
    /// heard by this API (none before its first report).
    pub applied_revision: Option<u64>,
    /// Whether the applied revision is the desired one.
    pub in_sync: bool,
}

/// Arguments of `system_sdwan_list_peers`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListPeersArgs {
    /// Only the peers of this network.
    #[serde(default)]
    pub network_id: Option<String>,
}

/// Answer of `system_sdwan_list_peers`, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ListPeersAnswer {
    /// The account's peers.
    pub peers: Vec<PeerView>,
}

/// A peer with its instance's hostname.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PeerView {
    /// The peer.
    #[serde(flatten)]
    pub peer: Peer,
    /// The hostname of its instance's node.
    pub hostname: Option<String>,
}
