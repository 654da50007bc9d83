//! Virtual IPs: `system_sdwan_get_virtual_ip` (with the data-path check).

use chrono::{DateTime, Utc};
use powernode_events::payloads::sdwan::{SilenceReason, VipPurpose};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv6Addr;

/// Arguments of `system_sdwan_get_virtual_ip`: one of `id`, `cluster_id`
/// or `name` (the VIP's purpose, `k3s_api_endpoint`; with several live VIPs
/// of that purpose the answer is `ambiguous` and lists them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetVirtualIpArgs {
    /// Virtual IP id.
    #[serde(default)]
    pub id: Option<String>,
    /// The cluster whose endpoint it is.
    #[serde(default)]
    pub cluster_id: Option<String>,
    /// Its purpose.
    #[serde(default)]
    pub name: Option<String>,
}

/// Answer of `system_sdwan_get_virtual_ip`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GetVirtualIpAnswer {
    /// The virtual IP.
    pub virtual_ip: VirtualIpView,
}

/// Whether a virtual IP is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VipStatus {
    /// Allocated and held.
    Allocated,
    /// Given back to its network.
    Released,
}

/// A virtual IP as operators see it: `holders` are instance ids, with the
/// peer-level detail beside them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VirtualIpView {
    /// Virtual IP id.
    pub id: String,
    /// Its purpose (the name `system_sdwan_get_virtual_ip` takes).
    pub name: VipPurpose,
    /// The address.
    pub vip: Ipv6Addr,
    /// What it is for.
    pub purpose: VipPurpose,
    /// Network it belongs to.
    pub network_id: String,
    /// The cluster whose endpoint it is.
    pub cluster_id: String,
    /// `https://[vip]:6443`.
    pub api_endpoint: String,
    /// Allocated or released.
    pub status: VipStatus,
    /// Fencing generation of the current holder.
    pub generation: u64,
    /// The instance holding it (none once released).
    pub holders: Vec<String>,
    /// The peer holding it.
    pub holder_peer_id: String,
    /// True while the holder is reported silent.
    pub holder_silent: bool,
    /// Failover candidates' peers (the holder excluded).
    pub failover_holder_peer_ids: Vec<String>,
    /// Failover candidates with their instances.
    pub failover_candidates: Vec<FailoverPeer>,
    /// The generation each member's agent reports holding it at (by peer
    /// id): more than one entry is a split the fencing is resolving.
    pub applied_generations: BTreeMap<String, u64>,
    /// Two agents at one generation: a true split (fencing never lets it happen).
    pub split: bool,
    /// Peers still reporting an older generation (not heard releasing yet).
    pub stale_holders: Vec<String>,
    /// When the current silence began.
    pub silent_since: Option<String>,
    /// The approval a failover proposal waits for.
    pub pending_approval: Option<String>,
    /// The latest promotion.
    pub last_promotion: Option<Promotion>,
    /// Why it was released, once released.
    pub release_reason: Option<String>,
    /// Why the holder counts as silent (its heartbeats, or its VIP's data
    /// path), while it does.
    #[serde(default)]
    pub silence_reason: Option<SilenceReason>,
    /// The data-path check: the newest probe through the VIP that reached
    /// its holder (none until one did).
    #[serde(default)]
    pub reachable: Option<Reachability>,
    /// Whether the data-path check reached the current holder at the
    /// current generation (the promotion is complete on the data path).
    #[serde(default)]
    pub reachable_now: bool,
}

/// A probe through a virtual IP that reached its holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Reachability {
    /// The generation that answered.
    pub generation: u64,
    /// The peer that answered.
    pub holder_peer_id: String,
    /// The peer whose agent probed.
    pub probed_by_peer_id: String,
    /// When (RFC 3339, the prober's clock).
    pub probed_at: String,
}

/// A failover candidate of a virtual IP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FailoverPeer {
    /// Its SD-WAN peer.
    pub peer_id: String,
    /// Its instance.
    pub instance_id: Option<String>,
}

/// One promotion of a virtual IP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Promotion {
    /// When (the event's time).
    pub at: DateTime<Utc>,
    /// The generation it started.
    pub generation: u64,
    /// The holder before.
    pub from_peer_id: Option<String>,
    /// The holder after.
    pub to_peer_id: String,
    /// Why (`approved_failover`, `auto_failover`, `drain`, `forced`).
    pub reason: String,
}
