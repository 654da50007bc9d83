//! Nodes and instances: `system_create_node`, `system_provision_instance`,
//! `system_list_instances`, `system_drain_instance`,
//! `system_terminate_instance`.

use powernode_events::payloads::fleet::CniPlugin;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Arguments of `system_create_node`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateNodeArgs {
    /// Hostname, 1-128 characters.
    pub hostname: String,
    /// The template the node follows.
    pub node_template_id: String,
    /// Memory in MiB (positive; decides the CNI profile).
    pub memory_mb: u64,
}

/// Answer of `system_create_node`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CreateNodeAnswer {
    /// The new node.
    pub node: Option<Node>,
}

/// A node definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Node {
    /// Node id.
    pub id: String,
    /// Hostname, e.g. `k3s-prod-server-1`.
    pub hostname: String,
    /// Template the node follows.
    pub template_id: String,
    /// Memory in MiB (decides the CNI profile).
    pub memory_mb: u64,
    /// Sequence of the creating event.
    pub created_seq: u64,
}

/// Arguments of `system_provision_instance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProvisionInstanceArgs {
    /// The node to run it on.
    pub node_id: String,
    /// An explicit CNI plugin (`ovn_kubernetes` needs a heavyweight node).
    #[serde(default)]
    pub cni_plugin: Option<CniPlugin>,
}

/// Answer of `system_provision_instance`: the instance and, this once, the
/// credential its agent enrolls with (only its fingerprint is kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProvisionInstanceAnswer {
    /// The new instance.
    pub instance: Option<Instance>,
    /// Its id.
    pub id: String,
    /// Its node's hostname.
    pub hostname: String,
    /// The agent's enrollment credential.
    pub enrollment_credential: String,
}

/// Arguments of `system_list_instances` (none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListInstancesArgs {}

/// Answer of `system_list_instances`, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ListInstancesAnswer {
    /// The account's instances.
    pub instances: Vec<InstanceView>,
}

/// Arguments of `system_drain_instance` and `system_terminate_instance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceIdArgs {
    /// Instance id.
    pub id: String,
}

/// Answer of `system_drain_instance` and `system_terminate_instance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InstanceStatusAnswer {
    /// The instance as it is now.
    pub instance: InstanceView,
    /// False when it already was drained or terminated (nothing appended).
    pub changed: bool,
}

/// An instance with its node's hostname (never its credential).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InstanceView {
    /// The instance.
    #[serde(flatten)]
    pub instance: Instance,
    /// Its node's hostname.
    pub hostname: Option<String>,
}

/// Lifecycle of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InstanceStatus {
    /// Provisioned; its agent has not enrolled yet.
    Provisioned,
    /// Its agent enrolled an identity key.
    Enrolled,
    /// Drained for maintenance.
    Drained,
    /// Terminated (final).
    Terminated,
}

/// The last k3s handshake phase an instance reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum K3sPhase {
    /// `system.k3s.runtime.installing`.
    Installing,
    /// `system.k3s.handshake.bootstrap`.
    Bootstrap,
    /// `system.k3s.handshake.join_request`.
    JoinRequest,
    /// `system.k3s.handshake.join_token_issued`.
    JoinTokenIssued,
    /// `system.k3s.handshake.join_rejected`.
    JoinRejected,
    /// `system.k3s.handshake.ready`.
    Ready,
    /// `system.k3s.handshake.bootstrap_rejected`.
    BootstrapRejected,
}

/// A provisioned node instance running an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Instance {
    /// Instance id.
    pub id: String,
    /// Node it runs on.
    pub node_id: String,
    /// Template it follows.
    pub template_id: String,
    /// Explicit CNI override, if the operator gave one.
    pub cni_plugin: Option<CniPlugin>,
    /// `sha256:<hex>` of the enrollment credential.
    pub enrollment_fingerprint: String,
    /// Hex of the ed25519 key its agent enrolled with (latest enrollment).
    pub public_key: Option<String>,
    /// Lifecycle status.
    pub status: InstanceStatus,
    /// Last k3s handshake phase reached.
    pub k3s_phase: Option<K3sPhase>,
    /// Last k3s version the agent reported.
    pub k3s_version: Option<String>,
    /// The cluster it bootstrapped, was issued a join token for, or is
    /// ready in; cleared when that cluster is decommissioned.
    pub cluster_id: Option<String>,
    /// Kubernetes node name reported with `ready`.
    pub node_name: Option<String>,
    /// Reason of the last join rejection, until a join token is issued or
    /// the instance bootstraps or becomes ready.
    pub last_join_rejection: Option<String>,
    /// Reason of the last refused bootstrap report, until the next phase.
    pub last_bootstrap_rejection: Option<String>,
    /// The cluster its latest bootstrap report creates, and the
    /// fingerprint of the token it reported.
    pub bootstrap: Option<BootstrapReport>,
    /// Sequence of the event that set `k3s_phase`.
    pub phase_seq: u64,
    /// Sequence of the provisioning event.
    pub provisioned_seq: u64,
    /// Capabilities its config needs that its agent lacks (an older agent
    /// binary ignores those fields); empty: none known.
    #[serde(default)]
    pub outdated_capabilities: Vec<String>,
}

/// What a bootstrap server reported (`system.k3s.handshake.bootstrap`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BootstrapReport {
    /// The cluster the report creates.
    pub cluster_id: String,
    /// `sha256:<hex>` of the node (join) token.
    pub node_token_fingerprint: String,
    /// Sequence of the report.
    pub seq: u64,
}

/// Arguments of `system_list_nodes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListSystemNodesArgs {
    /// Only the nodes following this template.
    #[serde(default)]
    pub template_id: Option<String>,
}

/// Answer of `system_list_nodes`, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ListSystemNodesAnswer {
    /// The account's node definitions.
    pub nodes: Vec<Node>,
}
