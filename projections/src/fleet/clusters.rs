//! K3s clusters and their Kubernetes node rows.

use super::instances::{record_phase, K3sPhase};
use super::sdwan::vip_released;
use super::AccountState;
use chrono::{DateTime, Utc};
use ipnet::IpNet;
use powernode_events::payloads::fleet::CniPlugin;
use powernode_events::payloads::k3s::{
    ClusterActivated, ClusterBootstrapped, ClusterDecommissioned, HandshakeReady, JoinTokenRotated,
    NodeRegistered, NodeRole,
};
use serde::{Deserialize, Serialize};

/// The only cluster flavor powernode runs.
pub const FLAVOR_K3S: &str = "k3s";

/// Lifecycle of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterStatus {
    /// Created by its bootstrap server, not yet ready.
    Bootstrapping,
    /// Ready; workers and servers may join.
    Active,
    /// Decommissioned; its node rows are gone.
    Decommissioned,
}

/// A K3s cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    /// Cluster id.
    pub id: String,
    /// Cluster name.
    pub name: String,
    /// Always `k3s`.
    pub flavor: String,
    /// Lifecycle status.
    pub status: ClusterStatus,
    /// `https://[vip]:6443`, or the bootstrap instance /128 when no VIP could be had.
    pub api_endpoint: String,
    /// SD-WAN network of the bootstrap server, if any.
    pub network_id: Option<String>,
    /// CNI profile.
    pub cni_plugin: CniPlugin,
    /// Pod CIDR stamped from the network's `pod_subnet_prefix` (flannel only).
    pub pod_cidr: Option<IpNet>,
    /// Extra k3s server flags.
    pub server_flags: Vec<String>,
    /// `sha256:<hex>` of the current join token (bootstrap report, then rotations).
    pub join_token_fingerprint: String,
    /// The instance that bootstrapped it.
    pub bootstrap_instance_id: String,
    /// k3s version last reported by the bootstrap instance.
    pub k3s_version: Option<String>,
    /// Sequence of `system.k3s.cluster.bootstrapped` (creation order).
    pub created_seq: u64,
    /// Sequence of `system.k3s.cluster.activated`.
    pub activated_seq: Option<u64>,
    /// Sequence of `system.k3s.cluster.decommissioned`.
    pub decommissioned_seq: Option<u64>,
}

/// Whether a Kubernetes node has joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum K8sNodeStatus {
    /// Registered, not reported ready yet.
    Joining,
    /// Reported ready by its agent.
    Ready,
}

/// A Kubernetes node row: one instance's membership in one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct K8sNode {
    /// Cluster id.
    pub cluster_id: String,
    /// Instance id.
    pub instance_id: String,
    /// `control-plane` or `worker`.
    pub role: NodeRole,
    /// Joining or ready.
    pub status: K8sNodeStatus,
    /// k3s version reported with `ready`.
    pub version: Option<String>,
    /// Kubernetes node name reported with `ready`.
    pub node_name: Option<String>,
    /// Sequence of the event that added the row.
    pub registered_seq: u64,
    /// When the event that added the row occurred (absent in snapshots
    /// taken before it was kept).
    #[serde(default)]
    pub registered_at: Option<DateTime<Utc>>,
}

/// `system.k3s.cluster.bootstrapped`: creates the cluster (bootstrapping)
/// and the bootstrap server's control-plane row. A second bootstrap of the
/// same id changes nothing.
pub(super) fn cluster_bootstrapped(account: &mut AccountState, seq: u64, p: &ClusterBootstrapped) {
    if account.clusters.contains_key(&p.cluster_id) {
        return;
    }
    let bootstrap = account.instances.get_mut(&p.bootstrap_instance_id);
    let k3s_version = bootstrap.as_ref().and_then(|i| i.k3s_version.clone());
    if let Some(instance) = bootstrap {
        instance.cluster_id = Some(p.cluster_id.clone());
    }
    account.clusters.insert(
        p.cluster_id.clone(),
        Cluster {
            id: p.cluster_id.clone(),
            name: p.name.clone(),
            flavor: FLAVOR_K3S.to_string(),
            status: ClusterStatus::Bootstrapping,
            api_endpoint: p.api_endpoint.clone(),
            network_id: p.network_id.clone(),
            cni_plugin: p.cni_plugin,
            pod_cidr: p.pod_cidr,
            server_flags: p.server_flags.clone(),
            join_token_fingerprint: p.join_token_fingerprint.clone(),
            bootstrap_instance_id: p.bootstrap_instance_id.clone(),
            k3s_version,
            created_seq: seq,
            activated_seq: None,
            decommissioned_seq: None,
        },
    );
    add_node_row(
        account,
        seq,
        &p.cluster_id,
        &p.bootstrap_instance_id,
        NodeRole::ControlPlane,
    );
}

/// `system.k3s.cluster.activated`: bootstrapping → active.
pub(super) fn cluster_activated(account: &mut AccountState, seq: u64, p: &ClusterActivated) {
    if let Some(cluster) = account.clusters.get_mut(&p.cluster_id) {
        if cluster.status == ClusterStatus::Bootstrapping {
            cluster.status = ClusterStatus::Active;
            cluster.activated_seq = Some(seq);
        }
    }
}

/// `system.k3s.node.registered`: adds (or re-roles) the node row of a live
/// cluster. An instance that already reported ready in this cluster starts
/// out ready.
pub(super) fn node_registered(account: &mut AccountState, seq: u64, p: &NodeRegistered) {
    let live = account
        .clusters
        .get(&p.cluster_id)
        .is_some_and(|c| c.status != ClusterStatus::Decommissioned);
    if live {
        add_node_row(account, seq, &p.cluster_id, &p.instance_id, p.role);
    }
}

fn add_node_row(
    account: &mut AccountState,
    seq: u64,
    cluster_id: &str,
    instance_id: &str,
    role: NodeRole,
) {
    let ready_here = account.instances.get(instance_id).filter(|i| {
        i.k3s_phase == Some(K3sPhase::Ready) && i.cluster_id.as_deref() == Some(cluster_id)
    });
    let (status, version, node_name) = match ready_here {
        Some(i) => (
            K8sNodeStatus::Ready,
            i.k3s_version.clone(),
            i.node_name.clone(),
        ),
        None => (K8sNodeStatus::Joining, None, None),
    };
    account
        .k8s_nodes
        .entry(cluster_id.to_string())
        .or_default()
        .entry(instance_id.to_string())
        .and_modify(|row| row.role = role)
        .or_insert_with(|| K8sNode {
            cluster_id: cluster_id.to_string(),
            instance_id: instance_id.to_string(),
            role,
            status,
            version,
            node_name,
            registered_seq: seq,
            registered_at: None,
        });
}

/// Stamps the rows the event at `seq` added to `cluster_id` (rows are only
/// ever added to the cluster the event names) with its time.
pub(super) fn stamp_new_rows(
    account: &mut AccountState,
    cluster_id: &str,
    seq: u64,
    at: DateTime<Utc>,
) {
    let Some(rows) = account.k8s_nodes.get_mut(cluster_id) else {
        return;
    };
    for row in rows.values_mut() {
        if row.registered_seq == seq && row.registered_at.is_none() {
            row.registered_at = Some(at);
        }
    }
}

/// `system.k3s.handshake.ready`: the instance is ready in the cluster; its
/// node row (if any) becomes ready with the reported version.
pub(super) fn handshake_ready(account: &mut AccountState, seq: u64, p: &HandshakeReady) {
    let live = account
        .clusters
        .get(&p.cluster_id)
        .is_some_and(|c| c.status != ClusterStatus::Decommissioned);
    record_phase(account, seq, &p.instance_id, K3sPhase::Ready, |i| {
        i.k3s_version = Some(p.k3s_version.clone());
        i.node_name = Some(p.node_name.clone());
        if live {
            i.cluster_id = Some(p.cluster_id.clone());
        }
    });
    if let Some(row) = account
        .k8s_nodes
        .get_mut(&p.cluster_id)
        .and_then(|rows| rows.get_mut(&p.instance_id))
    {
        row.status = K8sNodeStatus::Ready;
        row.version = Some(p.k3s_version.clone());
        row.node_name = Some(p.node_name.clone());
    }
    if let Some(cluster) = account.clusters.get_mut(&p.cluster_id) {
        if cluster.bootstrap_instance_id == p.instance_id {
            cluster.k3s_version = Some(p.k3s_version.clone());
        }
    }
}

/// `system.k3s.cluster.decommissioned`: marks the cluster decommissioned,
/// removes its node rows, ends its instances' membership (the instances
/// themselves are kept) and releases the VIP the event names.
pub(super) fn cluster_decommissioned(
    account: &mut AccountState,
    seq: u64,
    p: &ClusterDecommissioned,
) {
    let Some(cluster) = account.clusters.get_mut(&p.cluster_id) else {
        return;
    };
    if cluster.status == ClusterStatus::Decommissioned {
        return;
    }
    cluster.status = ClusterStatus::Decommissioned;
    cluster.decommissioned_seq = Some(seq);
    account.k8s_nodes.remove(&p.cluster_id);
    account.instances.update_where(
        |i| i.cluster_id.as_deref() == Some(p.cluster_id.as_str()),
        |i| i.cluster_id = None,
    );
    if let Some(vip) = &p.released_virtual_ip_id {
        vip_released(account, vip, "cluster decommissioned");
    }
}

/// `system.k3s.join_token.rotated`: the cluster's current token changes.
pub(super) fn join_token_rotated(account: &mut AccountState, p: &JoinTokenRotated) {
    if let Some(cluster) = account.clusters.get_mut(&p.cluster_id) {
        cluster.join_token_fingerprint = p.token_fingerprint.clone();
    }
}
