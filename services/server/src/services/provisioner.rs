//! The provisioner's decisions: a cluster for every accepted bootstrap
//! (once the sdwan service has answered with a VIP or a fallback), a join
//! token or a reasoned refusal for every join request, and `active` when
//! the bootstrap server reports ready.

use super::emit;
use chrono::{DateTime, Utc};
use ipnet::IpNet;
use powernode_events::payloads::fleet::CniPlugin;
use powernode_events::payloads::k3s::{
    ClusterActivated, ClusterBootstrapped, HandshakeJoinRequest, HandshakeReady, JoinRejected,
    JoinTokenIssued, K3sModule, NodeRegistered, NodeRole, PodSubnetPrefixIgnored,
};
use powernode_events::{AccountId, Envelope, EventPayload};
use powernode_projections::fleet::{ClusterStatus, Instance, InstanceStatus, Network};
use powernode_projections::FleetState;
use powernode_runtime::{Decisions, Reactor};
use std::convert::Infallible;

/// Nodes with at least this much memory are heavyweight (ovn-kubernetes).
pub const HEAVYWEIGHT_MB: u64 = 4096;

/// The provisioner reactor.
pub struct Provisioner;

impl Reactor<FleetState> for Provisioner {
    type Effect = Infallible;

    fn decide(
        &mut self,
        state: &FleetState,
        _seq: u64,
        event: &Envelope,
        now: DateTime<Utc>,
        out: &mut Decisions<Infallible>,
    ) {
        let account = &event.account_id;
        let decisions: Vec<EventPayload> = match &event.payload {
            EventPayload::VirtualIpAllocated(p) => create_cluster(
                state,
                account,
                &p.cluster_id,
                p.vip.to_string().as_str().into(),
            ),
            EventPayload::VirtualIpAllocationFailed(p) => create_cluster(
                state,
                account,
                &p.cluster_id,
                Endpoint::Fallback(&p.fallback_api_endpoint),
            ),
            EventPayload::HandshakeJoinRequest(p) => decide_join(state, account, p),
            EventPayload::HandshakeReady(p) => activate(state, account, p),
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
            | EventPayload::PeerAttached(_)
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
            | EventPayload::HandshakeBootstrap(_)
            | EventPayload::JoinTokenIssued(_)
            | EventPayload::JoinRejected(_)
            | EventPayload::BootstrapRejected(_)
            | EventPayload::JoinTokenRotated(_)
            | EventPayload::ClusterBootstrapped(_)
            | EventPayload::ClusterActivated(_)
            | EventPayload::NodeRegistered(_)
            | EventPayload::ClusterDecommissioned(_)
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
            | EventPayload::AgentSubmissionsRejectedSummary(_) => Vec::new(),
        };
        for payload in decisions {
            emit(out, event, now, "provisioner", payload);
        }
    }
}

/// Where the new cluster's API answers.
enum Endpoint<'a> {
    Vip(&'a str),
    Fallback(&'a str),
}

impl<'a> From<&'a str> for Endpoint<'a> {
    fn from(vip: &'a str) -> Self {
        Self::Vip(vip)
    }
}

/// The CNI an instance gets: the operator's explicit choice, else by RAM.
pub fn cni_for(memory_mb: u64, explicit: Option<CniPlugin>) -> CniPlugin {
    explicit.unwrap_or(if memory_mb >= HEAVYWEIGHT_MB {
        CniPlugin::OvnKubernetes
    } else {
        CniPlugin::Flannel
    })
}

fn create_cluster(
    state: &FleetState,
    account: &AccountId,
    cluster_id: &str,
    endpoint: Endpoint<'_>,
) -> Vec<EventPayload> {
    if state.cluster(account, cluster_id).is_some() {
        return Vec::new();
    }
    let Some(acc) = state.account(account) else {
        return Vec::new();
    };
    let Some(instance) = acc.instances.values().find(|i| {
        i.bootstrap
            .as_ref()
            .is_some_and(|b| b.cluster_id == cluster_id)
    }) else {
        return Vec::new();
    };
    let node = acc.nodes.get(&instance.node_id);
    let vip = state.cluster_virtual_ip(account, cluster_id);
    let Stamp {
        cni,
        network,
        prefix,
        pod_cidr,
        server_flags,
    } = stamp(
        state,
        account,
        &instance.id,
        vip.map(|v| v.network_id.as_str()),
    );
    let api_endpoint = match endpoint {
        Endpoint::Vip(addr) => format!("https://[{addr}]:6443"),
        Endpoint::Fallback(url) => url.to_string(),
    };
    let mut out: Vec<EventPayload> = vec![ClusterBootstrapped {
        cluster_id: cluster_id.to_string(),
        name: node.map_or_else(|| instance.id.clone(), |n| n.hostname.clone()),
        bootstrap_instance_id: instance.id.clone(),
        api_endpoint,
        network_id: network.map(|n| n.id.clone()),
        cni_plugin: cni,
        pod_cidr,
        server_flags,
        join_token_fingerprint: instance
            .bootstrap
            .as_ref()
            .map(|b| b.node_token_fingerprint.clone())
            .unwrap_or_default(),
    }
    .into()];
    if let (CniPlugin::OvnKubernetes, Some(prefix), Some(n)) = (cni, prefix, network) {
        out.push(
            PodSubnetPrefixIgnored {
                cluster_id: cluster_id.to_string(),
                network_id: n.id.clone(),
                pod_subnet_prefix: prefix,
                cni_plugin: cni,
            }
            .into(),
        );
    }
    out
}

/// What the platform stamps on a cluster its bootstrap server creates.
pub struct Stamp<'a> {
    /// CNI: the instance's explicit choice, else by its node's RAM.
    pub cni: CniPlugin,
    /// The SD-WAN network the cluster lives on.
    pub network: Option<&'a Network>,
    /// The network's `pod_subnet_prefix`, whatever the CNI.
    pub prefix: Option<IpNet>,
    /// The pod CIDR the cluster uses (flannel on an opted-in network).
    pub pod_cidr: Option<IpNet>,
    /// k3s server flags: flannel over `wg-sdwan-<handle>` in host-gw mode
    /// with `--cluster-cidr=<prefix>`.
    pub server_flags: Vec<String>,
}

/// The stamp for a cluster bootstrapped by `instance_id` on `network_id`
/// (default: the instance's first peer's network). The intake shows it to
/// a bootstrap server before its first start, so k3s starts with its final
/// pod CIDR.
pub fn stamp<'a>(
    state: &'a FleetState,
    account: &AccountId,
    instance_id: &str,
    network_id: Option<&str>,
) -> Stamp<'a> {
    let instance = state.instance(account, instance_id);
    let memory = instance
        .and_then(|i| state.account(account)?.nodes.get(&i.node_id))
        .map_or(0, |n| n.memory_mb);
    let cni = cni_for(memory, instance.and_then(|i| i.cni_plugin));
    let network = match network_id {
        Some(id) => state.network(account, id),
        None => super::sdwan::first_peer(state, account, instance_id)
            .and_then(|p| state.network(account, &p.network_id)),
    };
    let prefix = network.and_then(|n| n.pod_subnet_prefix);
    let (pod_cidr, server_flags) = match (cni, prefix, network) {
        (CniPlugin::Flannel, Some(prefix), Some(n)) => (
            Some(prefix),
            vec![
                format!("--flannel-iface=wg-sdwan-{}", n.handle),
                "--flannel-backend=host-gw".to_string(),
                format!("--cluster-cidr={prefix}"),
            ],
        ),
        (CniPlugin::OvnKubernetes, _, _)
        | (CniPlugin::Flannel, None, _)
        | (CniPlugin::Flannel, _, None) => (None, Vec::new()),
    };
    Stamp {
        cni,
        network,
        prefix,
        pod_cidr,
        server_flags,
    }
}

/// Why a join is refused, or the cluster it goes to. An instance is a node
/// of one live cluster at a time: asking to join another one is refused
/// (the runbook's way to move a worker is terminate + reprovision), while
/// asking again for its own cluster (a rotated token) is fine.
pub fn join_target<'a>(
    state: &'a FleetState,
    account: &AccountId,
    instance: Option<&Instance>,
    target: Option<&str>,
) -> Result<&'a powernode_projections::fleet::Cluster, String> {
    let Some(instance) = instance else {
        return Err("unknown_instance: the instance is not in this account".into());
    };
    if instance.status == InstanceStatus::Terminated {
        return Err("instance_terminated: a terminated instance cannot join".into());
    }
    let cluster = match target.filter(|t| !t.is_empty()) {
        None => state.most_recent_active_cluster(account).ok_or_else(|| {
            "no_active_cluster: target_cluster_id is empty and the account has no active cluster"
                .to_string()
        })?,
        Some(target) => match state.find_cluster(target) {
            None => return Err(format!("cluster_not_found: no cluster {target}")),
            Some((owner, _)) if owner != account => {
                return Err(format!(
                    "wrong_account: cluster {target} is not in this instance's account"
                ))
            }
            Some((_, c)) => match c.status {
                ClusterStatus::Active => c,
                ClusterStatus::Bootstrapping => {
                    return Err(format!(
                        "cluster_not_active: cluster {target} is still bootstrapping"
                    ))
                }
                ClusterStatus::Decommissioned => {
                    return Err(format!(
                        "cluster_decommissioned: cluster {target} was decommissioned"
                    ))
                }
            },
        },
    };
    let live = |id: &str| {
        state
            .cluster(account, id)
            .is_some_and(|c| c.status != ClusterStatus::Decommissioned)
    };
    if let Some(current) = instance
        .cluster_id
        .as_deref()
        .filter(|id| *id != cluster.id && live(id))
    {
        return Err(format!(
            "already_in_cluster: instance {} is a node of cluster {current}, not {}; to move it, terminate and reprovision it (or decommission {current})",
            instance.id, cluster.id
        ));
    }
    Ok(cluster)
}

fn decide_join(
    state: &FleetState,
    account: &AccountId,
    p: &HandshakeJoinRequest,
) -> Vec<EventPayload> {
    let instance = state.instance(account, &p.instance_id);
    match join_target(state, account, instance, p.target_cluster_id.as_deref()) {
        Ok(cluster) => vec![
            JoinTokenIssued {
                instance_id: p.instance_id.clone(),
                cluster_id: cluster.id.clone(),
                api_endpoint: cluster.api_endpoint.clone(),
                token_fingerprint: cluster.join_token_fingerprint.clone(),
            }
            .into(),
            NodeRegistered {
                cluster_id: cluster.id.clone(),
                instance_id: p.instance_id.clone(),
                role: match p.module_name {
                    K3sModule::K3sServer => NodeRole::ControlPlane,
                    K3sModule::K3sAgent => NodeRole::Worker,
                },
            }
            .into(),
        ],
        Err(reason) => vec![JoinRejected {
            instance_id: p.instance_id.clone(),
            target_cluster_id: p.target_cluster_id.clone(),
            reason,
        }
        .into()],
    }
}

fn activate(state: &FleetState, account: &AccountId, p: &HandshakeReady) -> Vec<EventPayload> {
    let Some(c) = state.cluster(account, &p.cluster_id) else {
        return Vec::new();
    };
    if c.status != ClusterStatus::Bootstrapping || c.bootstrap_instance_id != p.instance_id {
        return Vec::new();
    }
    vec![ClusterActivated {
        cluster_id: c.id.clone(),
    }
    .into()]
}

#[cfg(test)]
mod tests;
