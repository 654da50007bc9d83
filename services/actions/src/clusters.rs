//! Clusters: `kubernetes_list_clusters`, `kubernetes_get_cluster`,
//! `kubernetes_list_nodes`, `kubernetes_decommission_cluster`.

use ipnet::IpNet;
use powernode_events::payloads::fleet::CniPlugin;
use powernode_events::payloads::k3s::NodeRole;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Arguments of `kubernetes_list_clusters`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListClustersArgs {
    /// Also list decommissioned clusters.
    #[serde(default)]
    pub include_decommissioned: bool,
    /// At most this many clusters (1-1000); without it, every cluster.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Where to carry on: the `next_page_token` of the page before
    /// (opaque; only valid with the same `include_decommissioned`).
    #[serde(default)]
    pub page_token: Option<String>,
}

/// Answer of `kubernetes_list_clusters`, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ListClustersAnswer {
    /// The account's clusters.
    pub clusters: Vec<ClusterView>,
    /// With `limit` only, when more clusters follow: pass it as
    /// `page_token` for the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// Arguments of `kubernetes_get_cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetClusterArgs {
    /// Cluster id.
    pub id: String,
}

/// Answer of `kubernetes_get_cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GetClusterAnswer {
    /// The cluster.
    pub cluster: ClusterView,
}

/// Arguments of `kubernetes_list_nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListNodesArgs {
    /// Cluster id.
    pub cluster_id: String,
}

/// Answer of `kubernetes_list_nodes` (empty for a decommissioned cluster).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ListNodesAnswer {
    /// The cluster's Kubernetes nodes.
    pub nodes: Vec<K8sNode>,
}

/// Arguments of `kubernetes_decommission_cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecommissionClusterArgs {
    /// Cluster id.
    pub cluster_id: String,
}

/// Answer of `kubernetes_decommission_cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DecommissionClusterAnswer {
    /// The cluster, now decommissioned.
    pub cluster: ClusterView,
    /// How many Kubernetes node rows went.
    pub removed_nodes: usize,
    /// The instances of those rows, kept (not terminated).
    pub instances_kept: Vec<String>,
    /// The cluster's virtual IP, released.
    pub released_virtual_ip_id: Option<String>,
}

/// A cluster as operators see it: the cluster plus its node count and version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ClusterView {
    /// The cluster.
    #[serde(flatten)]
    pub cluster: Cluster,
    /// How many Kubernetes nodes it has.
    pub node_count: usize,
    /// The k3s version (the bootstrap instance's last report).
    pub version: Option<String>,
}

/// Lifecycle of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
    /// `sha256:<hex>` of the current join token.
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum K8sNodeStatus {
    /// Registered, not reported ready yet.
    Joining,
    /// Reported ready by its agent.
    Ready,
}

/// A Kubernetes node row: one instance's membership in one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
    /// When the row was added (absent for rows folded before it was kept).
    #[serde(default)]
    pub registered_at: Option<chrono::DateTime<chrono::Utc>>,
}
