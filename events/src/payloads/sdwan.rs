//! SD-WAN networks, peers and virtual IPs.

use ipnet::{IpNet, Ipv6Net};
use std::net::Ipv6Addr;

payload! {
    /// How peers of a network route to each other.
    pub enum RoutingMode {
        /// Hub and spoke through the platform's relays.
        Hub,
        /// Direct peer-to-peer (recommended for more than two hosts).
        Ibgp,
    }
}

payload! {
    /// An SD-WAN network was created.
    pub struct NetworkCreated {
        /// Network id.
        pub network_id: String,
        /// Human name.
        pub name: String,
        /// Short handle used in interface names (`wg-sdwan-<handle>`).
        pub handle: String,
        /// The overlay /64 peers get their /128 from.
        #[serde(with = "crate::payloads::text")]
        #[cfg_attr(feature = "schema", schemars(with = "Ipv6Net"))]
        pub overlay_prefix: Ipv6Net,
        /// The range virtual IPs are allocated from (inside the overlay).
        #[serde(with = "crate::payloads::text")]
        #[cfg_attr(feature = "schema", schemars(with = "Ipv6Net"))]
        pub vip_range: Ipv6Net,
        /// Pod CIDR for flannel clusters routed over the overlay, if opted in.
        #[serde(default, with = "crate::payloads::text::option")]
        #[cfg_attr(feature = "schema", schemars(with = "Option<IpNet>"))]
        pub pod_subnet_prefix: Option<IpNet>,
        /// Routing mode.
        pub routing_mode: RoutingMode,
    }
}

payload! {
    /// `pod_subnet_prefix` was set on an existing network (opt-in migration).
    pub struct PodSubnetPrefixSet {
        /// Network id.
        pub network_id: String,
        /// The prefix.
        #[serde(with = "crate::payloads::text")]
        #[cfg_attr(feature = "schema", schemars(with = "IpNet"))]
        pub pod_subnet_prefix: IpNet,
    }
}

payload! {
    /// An instance joined a network as a peer.
    pub struct PeerAttached {
        /// Network id.
        pub network_id: String,
        /// Peer id.
        pub peer_id: String,
        /// The instance behind the peer.
        pub instance_id: String,
        /// The peer's overlay /128.
        #[serde(with = "crate::payloads::text")]
        #[cfg_attr(feature = "schema", schemars(with = "Ipv6Addr"))]
        pub overlay_ip: Ipv6Addr,
        /// LAN subnets the peer routes.
        #[serde(with = "crate::payloads::text::list")]
        #[cfg_attr(feature = "schema", schemars(with = "Vec<IpNet>"))]
        pub lan_subnets: Vec<IpNet>,
    }
}

payload! {
    /// What a virtual IP is for.
    pub enum VipPurpose {
        /// The API endpoint of a K3s cluster.
        K3sApiEndpoint,
    }
}

payload! {
    /// A virtual IP was allocated (schema v2: `purpose` added).
    pub struct VirtualIpAllocated {
        /// Virtual IP id.
        pub virtual_ip_id: String,
        /// Network it belongs to.
        pub network_id: String,
        /// The address.
        #[serde(with = "crate::payloads::text")]
        #[cfg_attr(feature = "schema", schemars(with = "Ipv6Addr"))]
        pub vip: Ipv6Addr,
        /// What it is for.
        pub purpose: VipPurpose,
        /// The cluster whose endpoint it is.
        pub cluster_id: String,
        /// The peer holding it first (the bootstrap server).
        pub primary_holder_peer_id: String,
    }
}

payload! {
    /// No virtual IP could be allocated; the endpoint falls back to an instance /128.
    pub struct VirtualIpAllocationFailed {
        /// The cluster that wanted one.
        pub cluster_id: String,
        /// Why none could be had.
        pub reason: String,
        /// The endpoint used instead, e.g. `https://[fd00::5]:6443`.
        pub fallback_api_endpoint: String,
    }
}

payload! {
    /// A peer became a failover candidate for a virtual IP.
    pub struct VirtualIpCandidateAdded {
        /// Virtual IP id.
        pub virtual_ip_id: String,
        /// The candidate peer.
        pub peer_id: String,
    }
}

payload! {
    /// A virtual IP moved to a new holder under a new fencing generation.
    pub struct VirtualIpPromoted {
        /// Virtual IP id.
        pub virtual_ip_id: String,
        /// The previous holder.
        pub from_peer_id: Option<String>,
        /// The new holder.
        pub to_peer_id: String,
        /// Fencing generation, one higher than the last.
        pub generation: u64,
        /// Why (`approved_failover`, `auto_failover`, `drain`, `forced`).
        pub reason: String,
        /// The new holder's instance.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub to_instance_id: Option<String>,
        /// The approval that allowed it, for an approved failover.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub approval_id: Option<String>,
    }
}

payload! {
    /// A virtual IP was released back to its network.
    pub struct VirtualIpReleased {
        /// Virtual IP id.
        pub virtual_ip_id: String,
        /// Why.
        pub reason: String,
    }
}

payload! {
    /// The holder of a virtual IP went silent past the threshold.
    pub struct VipHolderSilent {
        /// Virtual IP id.
        pub virtual_ip_id: String,
        /// The silent holder.
        pub holder_peer_id: String,
        /// Last heartbeat seen (RFC 3339).
        pub last_seen_at: String,
        /// Silence threshold in milliseconds.
        pub threshold_ms: u64,
        /// Which sensor noticed.
        pub observer: String,
        /// What fell silent: its heartbeats, or (while it still heartbeats)
        /// its VIP's data path. Absent in events written before data-path
        /// checks existed, which were all heartbeat silences.
        #[serde(default)]
        pub reason: SilenceReason,
    }
}

payload! {
    /// Why a VIP holder counts as silent.
    #[derive(Default)]
    pub enum SilenceReason {
        /// No heartbeat for longer than the threshold.
        #[default]
        Heartbeat,
        /// It heartbeats, but probes through its VIP from the cluster's
        /// other agents fail (a zombie holder).
        DataPath,
    }
}

payload! {
    /// A silent holder was heard again; the silence episode is over.
    pub struct VipHolderRecovered {
        /// Virtual IP id.
        pub virtual_ip_id: String,
        /// The holder.
        pub holder_peer_id: String,
        /// How long it was silent, in milliseconds.
        pub silent_for_ms: u64,
    }
}

payload! {
    /// The failover service proposes promoting a candidate.
    pub struct FailoverProposed {
        /// Virtual IP id.
        pub virtual_ip_id: String,
        /// Current (silent) holder.
        pub current_holder_peer_id: String,
        /// Proposed new holder.
        pub candidate_peer_id: String,
        /// Its score in [0, 1].
        #[serde(deserialize_with = "crate::payloads::float::any_width")]
        pub score: f64,
        /// The approval it waits for.
        pub approval_id: String,
        /// The generation the promotion would replace (the promotion lands
        /// only while the VIP is still at it).
        #[serde(default)]
        pub generation: u64,
        /// Every candidate, best first, with its score and the reasons.
        #[serde(default)]
        pub candidates: Vec<FailoverCandidate>,
    }
}

payload! {
    /// One failover candidate: a ready `k3s-server` member of the cluster.
    pub struct FailoverCandidate {
        /// The candidate's SD-WAN peer.
        pub peer_id: String,
        /// Its instance.
        pub instance_id: String,
        /// Score in [0, 1]; higher is better.
        #[serde(deserialize_with = "crate::payloads::float::any_width")]
        pub score: f64,
        /// What the score is made of, e.g. `ready`, `heartbeat 0.4 s ago`.
        pub reasons: Vec<String>,
    }
}

payload! {
    /// An agent's holding of a virtual IP changed (reported in its
    /// heartbeats; recorded once per change, not per beat).
    pub struct VirtualIpApplied {
        /// Virtual IP id.
        pub virtual_ip_id: String,
        /// The reporting instance.
        pub instance_id: String,
        /// Its SD-WAN peer.
        pub peer_id: String,
        /// The generation it holds (when `held`) or last held.
        pub generation: u64,
        /// True when it now holds the address, false when it released it.
        pub held: bool,
    }
}

payload! {
    /// A silent holder cannot be replaced: no candidate.
    pub struct FailoverNoCandidate {
        /// Virtual IP id.
        pub virtual_ip_id: String,
        /// The silent (or draining) holder.
        pub holder_peer_id: String,
        /// Why there is none, e.g. `single-server cluster`.
        pub reason: String,
    }
}

payload! {
    /// A promotion was held back by flap damping.
    pub struct FailoverSuppressed {
        /// Virtual IP id.
        pub virtual_ip_id: String,
        /// The current holder.
        pub holder_peer_id: String,
        /// The candidate that would have been promoted.
        pub candidate_peer_id: Option<String>,
        /// Why, e.g. `cooldown: last promotion 12 s ago (min 30 s)`.
        pub reason: String,
    }
}

payload! {
    /// An agent registered (or re-registered) its WireGuard identity: the
    /// public half of an x25519 key made on the node, and the underlay
    /// endpoint other peers send to. The private key never leaves the node.
    pub struct WireguardKeyRegistered {
        /// The instance whose agent made the key.
        pub instance_id: String,
        /// Base64 of the 32-byte x25519 public key.
        pub public_key: String,
        /// Underlay `address:port` (IPv6 in brackets), e.g. `10.99.0.2:51820`.
        pub endpoint: String,
    }
}

payload! {
    /// A probe through a virtual IP reached the holder at this generation:
    /// the promotion (or allocation) is complete on the data path.
    pub struct VirtualIpReachable {
        /// Virtual IP id.
        pub virtual_ip_id: String,
        /// The generation the answering holder reported.
        pub generation: u64,
        /// The peer that answered through the VIP.
        pub holder_peer_id: String,
        /// The peer whose agent probed.
        pub probed_by_peer_id: String,
        /// When the probe answered (RFC 3339, the prober's clock).
        pub probed_at: String,
    }
}

payload! {
    /// An operator access grant: a WireGuard peer (key made on the
    /// operator's machine, or by the platform and handed out once) that
    /// reaches the network through a gateway peer.
    pub struct AccessGrantCreated {
        /// Grant id.
        pub grant_id: String,
        /// Network id.
        pub network_id: String,
        /// Human name, e.g. `laptop`.
        pub name: String,
        /// Base64 of the grant's 32-byte x25519 public key.
        pub public_key: String,
        /// The grant's overlay /128.
        #[serde(with = "crate::payloads::text")]
        #[cfg_attr(feature = "schema", schemars(with = "Ipv6Addr"))]
        pub address: Ipv6Addr,
        /// The peer the grant's tunnel ends at; it forwards into the overlay.
        pub gateway_peer_id: String,
        /// When it stops working (RFC 3339), if ever.
        #[serde(default)]
        pub expires_at: Option<String>,
    }
}

payload! {
    /// Why an access grant ended.
    pub enum AccessGrantEnd {
        /// An operator revoked it.
        Revoked,
        /// Its time ran out.
        Expired,
    }
}

payload! {
    /// An access grant ended; its peer is removed everywhere.
    pub struct AccessGrantRevoked {
        /// Grant id.
        pub grant_id: String,
        /// Network id.
        pub network_id: String,
        /// Revoked or expired.
        pub reason: AccessGrantEnd,
    }
}
