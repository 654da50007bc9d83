//! The sdwan service's decisions: a VIP for every new cluster's API
//! endpoint, failover candidates as control-plane servers join, the
//! VIP's release when its cluster is decommissioned, and a nudge to every
//! agent of a network whose data plane changed ([`nudge`]).

pub mod nudge;

use super::emit;
use chrono::{DateTime, Utc};
use powernode_events::ids::cluster_id_for_bootstrap;
use powernode_events::payloads::k3s::{ClusterDecommissioned, NodeRegistered, NodeRole};
use powernode_events::payloads::sdwan::{
    VipPurpose, VirtualIpAllocated, VirtualIpAllocationFailed, VirtualIpCandidateAdded,
    VirtualIpReleased,
};
use powernode_events::{AccountId, Envelope, EventPayload};
use powernode_projections::fleet::{Peer, VipStatus};
use powernode_projections::FleetState;
use powernode_runtime::{Decisions, Outbox, ReactError, Reactor};
use std::collections::BTreeMap;
use std::net::Ipv6Addr;

pub use nudge::Nudge;

/// The sdwan reactor.
#[derive(Default)]
pub struct Sdwan {
    /// VIPs allocated by this reactor that the projection has not folded
    /// yet (decisions are appended after the batch): virtual IP id →
    /// (network id, address). Pruned as the projection catches up.
    in_flight: BTreeMap<String, (String, Ipv6Addr)>,
    /// Where nudges go (none: the log is not on NATS, agents learn on
    /// their next heartbeat).
    nats: Option<async_nats::Client>,
}

impl Sdwan {
    /// The reactor, nudging agents over `nats` when given.
    pub fn new(nats: Option<async_nats::Client>) -> Self {
        Self {
            in_flight: BTreeMap::new(),
            nats,
        }
    }
}

#[async_trait::async_trait]
impl Reactor<FleetState> for Sdwan {
    type Effect = Nudge;

    fn decide(
        &mut self,
        state: &FleetState,
        seq: u64,
        event: &Envelope,
        now: DateTime<Utc>,
        out: &mut Decisions<Nudge>,
    ) {
        if let Some(n) = nudge::config_nudge(state, seq, event, now) {
            out.effect(n);
        }
        self.in_flight.retain(|id, _| {
            state
                .account(&event.account_id)
                .is_none_or(|a| !a.virtual_ips.contains_key(id))
        });
        let decision = match &event.payload {
            EventPayload::HandshakeBootstrap(p) => {
                let d = allocate(state, event, &p.instance_id, &self.in_flight);
                if let Some(EventPayload::VirtualIpAllocated(v)) = &d {
                    self.in_flight
                        .insert(v.virtual_ip_id.clone(), (v.network_id.clone(), v.vip));
                }
                d
            }
            EventPayload::NodeRegistered(p) => add_candidate(state, &event.account_id, p),
            EventPayload::PeerAttached(p) => {
                late_candidate(state, &event.account_id, &p.instance_id)
            }
            EventPayload::ClusterDecommissioned(p) => release(state, &event.account_id, p),
            EventPayload::AccountCreated(_)
            | EventPayload::OperatorTokenIssued(_)
            | EventPayload::OperatorTokenRevoked(_)
            | EventPayload::TemplateCreated(_)
            | EventPayload::NodeCreated(_)
            | EventPayload::InstanceProvisioned(_)
            | EventPayload::AgentEnrolled(_)
            | EventPayload::InstanceDrained(_)
            | EventPayload::InstanceTerminated(_)
            | EventPayload::AgentSubmissionRejected(_)
            | EventPayload::NetworkCreated(_)
            | EventPayload::PodSubnetPrefixSet(_)
            | EventPayload::VirtualIpAllocated(_)
            | EventPayload::VirtualIpAllocationFailed(_)
            | EventPayload::VirtualIpCandidateAdded(_)
            | EventPayload::VirtualIpPromoted(_)
            | EventPayload::VirtualIpReleased(_)
            | EventPayload::VipHolderSilent(_)
            | EventPayload::VipHolderRecovered(_)
            | EventPayload::FailoverProposed(_)
            | EventPayload::FailoverNoCandidate(_)
            | EventPayload::FailoverSuppressed(_)
            | EventPayload::VirtualIpApplied(_)
            | EventPayload::VirtualIpReachable(_)
            | EventPayload::WireguardKeyRegistered(_)
            | EventPayload::AccessGrantCreated(_)
            | EventPayload::AccessGrantRevoked(_)
            | EventPayload::ModuleAssigned(_)
            | EventPayload::RuntimeInstalling(_)
            | EventPayload::HandshakeJoinRequest(_)
            | EventPayload::JoinTokenIssued(_)
            | EventPayload::JoinRejected(_)
            | EventPayload::HandshakeReady(_)
            | EventPayload::BootstrapRejected(_)
            | EventPayload::JoinTokenRotated(_)
            | EventPayload::ClusterBootstrapped(_)
            | EventPayload::ClusterActivated(_)
            | EventPayload::PodSubnetPrefixIgnored(_)
            | EventPayload::KubeconfigRetrieved(_)
            | EventPayload::McpToolCalled(_)
            | EventPayload::ModuleVersionCreated(_)
            | EventPayload::SkillExecutionStarted(_)
            | EventPayload::SkillStepStarted(_)
            | EventPayload::SkillStepSucceeded(_)
            | EventPayload::SkillStepFailed(_)
            | EventPayload::SkillExecutionPaused(_)
            | EventPayload::SkillExecutionResumed(_)
            | EventPayload::SkillExecutionCompleted(_)
            | EventPayload::SkillExecutionAborted(_)
            | EventPayload::ModuleUpgraded(_)
            | EventPayload::ModuleUpgradeFailed(_)
            | EventPayload::AgentOutdated(_)
            | EventPayload::ApprovalRequested(_)
            | EventPayload::ApprovalGranted(_)
            | EventPayload::ApprovalRejected(_)
            | EventPayload::ApprovalExpired(_)
            | EventPayload::ApprovalSuperseded(_)
            | EventPayload::RecordRejected(_)
            | EventPayload::LogSealed(_)
            | EventPayload::AgentSubmissionsRejectedSummary(_) => None,
        };
        if let Some(payload) = decision {
            emit(out, event, now, "sdwan", payload);
        }
    }

    /// Sends the nudges (best effort: an agent not nudged learns of the
    /// change on its next heartbeat).
    async fn execute(
        &mut self,
        _seq: u64,
        effects: &mut Vec<Nudge>,
        _out: &mut Outbox,
    ) -> Result<(), ReactError> {
        for n in effects.drain(..) {
            let targets: Vec<&str> = n.instances.iter().map(String::as_str).collect();
            super::failover::nudge(self.nats.as_ref(), &targets, n.seq).await;
        }
        Ok(())
    }
}

/// The instance's first peer (by attach order).
pub(crate) fn first_peer<'a>(
    state: &'a FleetState,
    account: &AccountId,
    instance_id: &str,
) -> Option<&'a Peer> {
    state
        .instance_peers(account, instance_id)
        .into_iter()
        .min_by_key(|p| p.attached_seq)
}

/// A VIP from the bootstrap server's network, held first by its peer; or,
/// when none can be had, the reason and the endpoint used instead.
fn allocate(
    state: &FleetState,
    event: &Envelope,
    instance_id: &str,
    in_flight: &BTreeMap<String, (String, Ipv6Addr)>,
) -> Option<EventPayload> {
    let account = &event.account_id;
    let cluster_id = cluster_id_for_bootstrap(event.id);
    if state.cluster_virtual_ip(account, &cluster_id).is_some()
        || in_flight.contains_key(&vip_id(&cluster_id))
        || state.cluster(account, &cluster_id).is_some()
    {
        return None;
    }
    let instance = state.instance(account, instance_id)?;
    let Some(peer) = first_peer(state, account, instance_id) else {
        let hostname = state
            .account(account)
            .and_then(|a| a.nodes.get(&instance.node_id))
            .map_or(instance_id, |n| n.hostname.as_str());
        return Some(
            VirtualIpAllocationFailed {
                cluster_id,
                reason: format!(
                    "instance {instance_id} has no SD-WAN peer, so there is no network to take a VIP from; attach one with {}",
                    powernode_actions::ActionName::AttachPeer
                ),
                fallback_api_endpoint: format!("https://{hostname}:6443"),
            }
            .into(),
        );
    };
    let network = state.network(account, &peer.network_id)?;
    let taken: Vec<Ipv6Addr> = state
        .account(account)?
        .virtual_ips
        .values()
        .filter(|v| v.network_id == network.id && v.status == VipStatus::Allocated)
        .map(|v| v.vip)
        .chain(
            in_flight
                .values()
                .filter(|(net, _)| *net == network.id)
                .map(|(_, addr)| *addr),
        )
        .collect();
    let base = u128::from(network.vip_range.network());
    let size = 1u128 << (128 - u32::from(network.vip_range.prefix_len()));
    let free = (0..size)
        .map(|i| Ipv6Addr::from(base + i))
        .find(|a| !taken.contains(a));
    Some(match free {
        Some(vip) => VirtualIpAllocated {
            virtual_ip_id: vip_id(&cluster_id),
            network_id: network.id.clone(),
            vip,
            purpose: VipPurpose::K3sApiEndpoint,
            cluster_id,
            primary_holder_peer_id: peer.id.clone(),
        }
        .into(),
        None => VirtualIpAllocationFailed {
            cluster_id,
            reason: format!(
                "the VIP range {} of network {} is exhausted ({} in use)",
                network.vip_range,
                network.id,
                taken.len()
            ),
            fallback_api_endpoint: format!("https://[{}]:6443", peer.overlay_ip),
        }
        .into(),
    })
}

/// The id of a cluster's API-endpoint VIP.
fn vip_id(cluster_id: &str) -> String {
    format!("vip-{}", cluster_id.trim_start_matches("cluster-"))
}

/// A control-plane server that joined becomes a failover candidate of its
/// cluster's VIP (through its peer on the VIP's network).
fn add_candidate(
    state: &FleetState,
    account: &AccountId,
    p: &NodeRegistered,
) -> Option<EventPayload> {
    if p.role != NodeRole::ControlPlane {
        return None;
    }
    let vip = state
        .cluster_virtual_ip(account, &p.cluster_id)
        .filter(|v| v.status == VipStatus::Allocated)?;
    let peer = state
        .instance_peers(account, &p.instance_id)
        .into_iter()
        .find(|peer| peer.network_id == vip.network_id)?;
    if peer.id == vip.holder_peer_id || vip.failover_candidate_peer_ids.contains(&peer.id) {
        return None;
    }
    Some(
        VirtualIpCandidateAdded {
            virtual_ip_id: vip.id.clone(),
            peer_id: peer.id.clone(),
        }
        .into(),
    )
}

/// A control-plane server attached to its cluster's VIP network only after
/// it joined becomes a failover candidate now (the join found no peer).
fn late_candidate(
    state: &FleetState,
    account: &AccountId,
    instance_id: &str,
) -> Option<EventPayload> {
    let cluster_id = state.instance(account, instance_id)?.cluster_id.clone()?;
    let control_plane = state
        .cluster_nodes(account, &cluster_id)
        .iter()
        .any(|n| n.instance_id == instance_id && n.role == NodeRole::ControlPlane);
    if !control_plane {
        return None;
    }
    add_candidate(
        state,
        account,
        &NodeRegistered {
            cluster_id,
            instance_id: instance_id.to_string(),
            role: NodeRole::ControlPlane,
        },
    )
}

/// The decommissioned cluster's VIP goes back to its network.
fn release(
    state: &FleetState,
    account: &AccountId,
    p: &ClusterDecommissioned,
) -> Option<EventPayload> {
    let id = p.released_virtual_ip_id.as_ref()?;
    state.virtual_ip(account, id)?;
    Some(
        VirtualIpReleased {
            virtual_ip_id: id.clone(),
            reason: format!("cluster {} decommissioned", p.cluster_id),
        }
        .into(),
    )
}

#[cfg(test)]
mod tests;
