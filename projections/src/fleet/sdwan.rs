//! SD-WAN networks, peers and virtual IPs.

use super::AccountState;
use chrono::{DateTime, Utc};
use ipnet::{IpNet, Ipv6Net};
use powernode_events::payloads::sdwan::{
    FailoverCandidate, FailoverProposed, NetworkCreated, PeerAttached, PodSubnetPrefixSet,
    RoutingMode, SilenceReason, VipHolderRecovered, VipHolderSilent, VipPurpose,
    VirtualIpAllocated, VirtualIpApplied, VirtualIpCandidateAdded, VirtualIpPromoted,
    VirtualIpReleased,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv6Addr;

/// Promotions of one VIP remembered for flap damping.
pub const PROMOTIONS_KEPT: usize = 16;

/// An SD-WAN network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Sequence of the last event that changed this network's data plane
    /// (peers, keys, VIP holders, grants, pod subnets): the revision of
    /// every peer's desired WireGuard config.
    #[serde(default)]
    pub config_seq: u64,
    /// Pod subnet index of each instance (the n-th subnet of
    /// `pod_subnet_prefix`), handed out in fold order, never reused.
    #[serde(default)]
    pub pod_subnets: BTreeMap<String, u32>,
}

/// An instance attached to a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// Whether a virtual IP is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VipStatus {
    /// Allocated and held.
    Allocated,
    /// Given back to its network.
    Released,
}

/// A virtual IP on a network, e.g. a cluster's API endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualIp {
    /// Virtual IP id.
    pub id: String,
    /// Network it belongs to.
    pub network_id: String,
    /// The address.
    pub vip: Ipv6Addr,
    /// What it is for.
    pub purpose: VipPurpose,
    /// The cluster whose endpoint it is.
    pub cluster_id: String,
    /// The peer holding it now.
    pub holder_peer_id: String,
    /// Fencing generation of the current holder (1 at allocation, raised by
    /// every promotion).
    pub generation: u64,
    /// Peers added as failover candidates, in the order they were added.
    /// May include the current holder after a promotion; see
    /// [`VirtualIp::failover_candidates`].
    pub failover_candidate_peer_ids: Vec<String>,
    /// Allocated or released.
    pub status: VipStatus,
    /// True while the sensor reports the current holder silent.
    pub holder_silent: bool,
    /// When the current silence episode began (the holder's last heartbeat).
    #[serde(default)]
    pub silent_since: Option<String>,
    /// Silence episodes so far (every `vip_holder_silent` starts one).
    #[serde(default)]
    pub silence_episodes: u64,
    /// Why it was released, once released.
    pub release_reason: Option<String>,
    /// Sequence of the allocating event.
    pub allocated_seq: u64,
    /// The generation each member's agent reports holding the address at
    /// (by peer id); a member that holds nothing is absent. Two entries at
    /// once is a split the fencing resolves.
    #[serde(default)]
    pub applied: BTreeMap<String, u64>,
    /// The latest promotions, oldest first, at most [`PROMOTIONS_KEPT`].
    #[serde(default)]
    pub promotions: Vec<Promotion>,
    /// The proposal waiting for approval, if any.
    #[serde(default)]
    pub pending_proposal: Option<Proposal>,
    /// Why the current silence episode began (heartbeats or data path).
    #[serde(default)]
    pub silence_reason: Option<SilenceReason>,
    /// The newest data-path check that reached a holder.
    #[serde(default)]
    pub reachable: Option<super::dataplane::Reachability>,
    /// Sequence of the event that last changed [`VirtualIp::route_holder`]
    /// (the data plane routes the VIP to a new peer from the config
    /// revision at or after it).
    #[serde(default)]
    pub route_changed_seq: u64,
}

/// One promotion of a VIP (for flap damping and history).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// A failover proposal waiting for an operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// The approval it waits for.
    pub approval_id: String,
    /// The holder it would replace.
    pub holder_peer_id: String,
    /// The generation it would replace.
    pub generation: u64,
    /// The candidate it would promote.
    pub candidate_peer_id: String,
    /// Every candidate, best first.
    pub candidates: Vec<FailoverCandidate>,
    /// Sequence of the proposal.
    pub proposed_seq: u64,
}

impl Eq for Proposal {}

impl VirtualIp {
    /// Failover candidates other than the current holder.
    pub fn failover_candidates(&self) -> impl Iterator<Item = &str> {
        self.failover_candidate_peer_ids
            .iter()
            .map(String::as_str)
            .filter(move |p| *p != self.holder_peer_id)
    }

    /// The peer the data plane routes the VIP to: the holder once its agent
    /// reports holding the newest generation; until then the peer that
    /// reports the highest older generation (make before break: a drained
    /// holder keeps answering until its successor holds the address), or
    /// the holder when nobody reports holding it.
    pub fn route_holder(&self) -> &str {
        if self.applied.get(&self.holder_peer_id) == Some(&self.generation) {
            return &self.holder_peer_id;
        }
        self.applied
            .iter()
            .max_by_key(|(peer, generation)| (**generation, std::cmp::Reverse(peer.as_str())))
            .map_or(self.holder_peer_id.as_str(), |(peer, _)| peer.as_str())
    }

    /// `https://[vip]:6443`, the k3s API endpoint this address serves.
    pub fn api_endpoint(&self) -> String {
        format!("https://[{}]:6443", self.vip)
    }
}

/// `system.sdwan.network.created` (first creation wins).
pub(super) fn network_created(account: &mut AccountState, seq: u64, p: &NetworkCreated) {
    account
        .networks
        .entry(p.network_id.clone())
        .or_insert_with(|| Network {
            id: p.network_id.clone(),
            name: p.name.clone(),
            handle: p.handle.clone(),
            overlay_prefix: p.overlay_prefix,
            vip_range: p.vip_range,
            pod_subnet_prefix: p.pod_subnet_prefix,
            routing_mode: p.routing_mode,
            created_seq: seq,
            config_seq: seq,
            pod_subnets: BTreeMap::new(),
        });
}

/// `system.sdwan.network.pod_subnet_prefix_set`.
pub(super) fn pod_subnet_prefix_set(account: &mut AccountState, p: &PodSubnetPrefixSet) {
    if let Some(network) = account.networks.get_mut(&p.network_id) {
        network.pod_subnet_prefix = Some(p.pod_subnet_prefix);
    }
}

/// `system.sdwan.peer.attached` (first attachment of a peer id wins).
pub(super) fn peer_attached(account: &mut AccountState, seq: u64, p: &PeerAttached) {
    if !account.peers.contains_key(&p.peer_id) {
        account
            .instance_peers
            .entry(p.instance_id.clone())
            .or_default()
            .push(p.peer_id.clone());
    }
    account
        .peers
        .entry(p.peer_id.clone())
        .or_insert_with(|| Peer {
            id: p.peer_id.clone(),
            network_id: p.network_id.clone(),
            instance_id: p.instance_id.clone(),
            overlay_ip: p.overlay_ip,
            lan_subnets: p.lan_subnets.clone(),
            attached_seq: seq,
        });
}

/// `system.sdwan.virtual_ip.allocated`: generation 1, held by the primary.
pub(super) fn vip_allocated(account: &mut AccountState, seq: u64, p: &VirtualIpAllocated) {
    if !account.virtual_ips.contains_key(&p.virtual_ip_id) {
        account
            .cluster_vips
            .insert(p.cluster_id.clone(), p.virtual_ip_id.clone());
    }
    account
        .virtual_ips
        .entry(p.virtual_ip_id.clone())
        .or_insert_with(|| VirtualIp {
            id: p.virtual_ip_id.clone(),
            network_id: p.network_id.clone(),
            vip: p.vip,
            purpose: p.purpose,
            cluster_id: p.cluster_id.clone(),
            holder_peer_id: p.primary_holder_peer_id.clone(),
            generation: 1,
            failover_candidate_peer_ids: Vec::new(),
            status: VipStatus::Allocated,
            holder_silent: false,
            silent_since: None,
            silence_episodes: 0,
            release_reason: None,
            allocated_seq: seq,
            applied: BTreeMap::new(),
            promotions: Vec::new(),
            pending_proposal: None,
            silence_reason: None,
            reachable: None,
            route_changed_seq: seq,
        });
}

/// `system.sdwan.virtual_ip.candidate_added` (no duplicates).
pub(super) fn vip_candidate_added(account: &mut AccountState, p: &VirtualIpCandidateAdded) {
    if let Some(vip) = account.virtual_ips.get_mut(&p.virtual_ip_id) {
        if !vip.failover_candidate_peer_ids.contains(&p.peer_id) {
            vip.failover_candidate_peer_ids.push(p.peer_id.clone());
        }
    }
}

/// `system.sdwan.virtual_ip.promoted`: the newest generation wins; an older
/// or equal generation, or a promotion of a released VIP, changes nothing.
pub(super) fn vip_promoted(account: &mut AccountState, at: DateTime<Utc>, p: &VirtualIpPromoted) {
    if let Some(vip) = account.virtual_ips.get_mut(&p.virtual_ip_id) {
        if vip.status == VipStatus::Allocated && p.generation > vip.generation {
            // The holder it replaces stays a member: a candidate for the
            // next failover once it is ready and heard again.
            if let Some(from) = &p.from_peer_id {
                if !vip.failover_candidate_peer_ids.contains(from) {
                    vip.failover_candidate_peer_ids.push(from.clone());
                }
            }
            vip.holder_peer_id = p.to_peer_id.clone();
            vip.generation = p.generation;
            vip.holder_silent = false;
            vip.silence_reason = None;
            vip.silent_since = None;
            vip.pending_proposal = None;
            vip.promotions.push(Promotion {
                at,
                generation: p.generation,
                from_peer_id: p.from_peer_id.clone(),
                to_peer_id: p.to_peer_id.clone(),
                reason: p.reason.clone(),
            });
            if vip.promotions.len() > PROMOTIONS_KEPT {
                vip.promotions.remove(0);
            }
        }
    }
}

/// `system.sdwan.virtual_ip.released` (and the release a cluster
/// decommission reports): the first release reason is kept.
pub(super) fn vip_released(account: &mut AccountState, virtual_ip_id: &str, reason: &str) {
    if let Some(vip) = account.virtual_ips.get_mut(virtual_ip_id) {
        if vip.status != VipStatus::Released {
            vip.status = VipStatus::Released;
            vip.release_reason = Some(reason.to_string());
            vip.holder_silent = false;
            vip.silence_reason = None;
        }
    }
}

/// `system.sdwan.virtual_ip.released`.
pub(super) fn vip_released_event(account: &mut AccountState, p: &VirtualIpReleased) {
    vip_released(account, &p.virtual_ip_id, &p.reason);
}

/// `sdwan.vip_holder_silent`: only about the current holder; a repeat
/// within one episode changes nothing.
pub(super) fn vip_holder_silent(account: &mut AccountState, p: &VipHolderSilent) {
    if let Some(vip) = account.virtual_ips.get_mut(&p.virtual_ip_id) {
        if vip.status == VipStatus::Allocated
            && vip.holder_peer_id == p.holder_peer_id
            && !vip.holder_silent
        {
            vip.holder_silent = true;
            vip.silence_reason = Some(p.reason);
            vip.silent_since = Some(p.last_seen_at.clone());
            vip.silence_episodes += 1;
        }
    }
}

/// `sdwan.vip_holder_recovered`: only about the current holder. The
/// proposal made for the silence is moot.
pub(super) fn vip_holder_recovered(account: &mut AccountState, p: &VipHolderRecovered) {
    if let Some(vip) = account.virtual_ips.get_mut(&p.virtual_ip_id) {
        if vip.holder_peer_id == p.holder_peer_id {
            vip.holder_silent = false;
            vip.silence_reason = None;
            vip.silent_since = None;
        }
    }
}

/// `system.sdwan.virtual_ip.applied`: what a member's agent holds.
pub(super) fn vip_applied(account: &mut AccountState, seq: u64, p: &VirtualIpApplied) {
    let before = account
        .virtual_ips
        .get(&p.virtual_ip_id)
        .map(|v| v.route_holder().to_string());
    vip_applied_inner(account, p);
    route_moved(account, &p.virtual_ip_id, before, seq);
}

/// Records `seq` as the VIP's route change (and the network's data-plane
/// change) when its [`VirtualIp::route_holder`] is no longer `before`.
pub(super) fn route_moved(
    account: &mut AccountState,
    virtual_ip_id: &str,
    before: Option<String>,
    seq: u64,
) {
    let Some(vip) = account.virtual_ips.get_mut(virtual_ip_id) else {
        return;
    };
    if before.as_deref() != Some(vip.route_holder()) {
        vip.route_changed_seq = seq;
        let network = vip.network_id.clone();
        super::dataplane::touch(account, &network, seq);
    }
}

fn vip_applied_inner(account: &mut AccountState, p: &VirtualIpApplied) {
    if let Some(vip) = account.virtual_ips.get_mut(&p.virtual_ip_id) {
        if p.held {
            vip.applied.insert(p.peer_id.clone(), p.generation);
            account
                .peer_holdings
                .entry(p.peer_id.clone())
                .or_default()
                .insert(p.virtual_ip_id.clone());
        } else if vip
            .applied
            .get(&p.peer_id)
            .is_some_and(|g| *g <= p.generation)
        {
            vip.applied.remove(&p.peer_id);
            if let Some(set) = account.peer_holdings.get_mut(&p.peer_id) {
                set.remove(&p.virtual_ip_id);
                if set.is_empty() {
                    account.peer_holdings.remove(&p.peer_id);
                }
            }
        }
    }
}

/// `system.sdwan.failover.proposed`: the proposal waits for its approval.
pub(super) fn failover_proposed(account: &mut AccountState, seq: u64, p: &FailoverProposed) {
    if let Some(vip) = account.virtual_ips.get_mut(&p.virtual_ip_id) {
        if vip.status == VipStatus::Allocated && vip.generation == p.generation {
            vip.pending_proposal = Some(Proposal {
                approval_id: p.approval_id.clone(),
                holder_peer_id: p.current_holder_peer_id.clone(),
                generation: p.generation,
                candidate_peer_id: p.candidate_peer_id.clone(),
                candidates: p.candidates.clone(),
                proposed_seq: seq,
            });
        }
    }
}

/// The proposal waiting on `approval_id` is no longer waiting.
pub(super) fn proposal_closed(account: &mut AccountState, approval_id: &str) {
    account.virtual_ips.update_where(
        |vip| {
            vip.pending_proposal
                .as_ref()
                .is_some_and(|p| p.approval_id == approval_id)
        },
        |vip| vip.pending_proposal = None,
    );
}
