//! `agent_introspect`: what a platform service or a node agent says about
//! itself.
//!
//! `agent_id` is a service (`sdwan_manager_agent` or `sdwan`,
//! `provisioner`, `sensor`, `failover`, `skills`, `api`: every replica is
//! reported) or a node agent's instance id (of the caller's account).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Arguments of `agent_introspect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentIntrospectArgs {
    /// A service name (`sdwan_manager_agent`, `provisioner`, `sensor`,
    /// `failover`, `skills`, `api`) or an instance id.
    pub agent_id: String,
}

/// Answer of `agent_introspect`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentIntrospectAnswer {
    /// The id asked about.
    pub agent_id: String,
    /// `service` or `node`.
    pub kind: AgentKind,
    /// A service's replicas (kind `service`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ServiceReplicaStatus>,
    /// A node agent (kind `node`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeAgentStatus>,
}

/// What an agent id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentKind {
    /// A platform service.
    Service,
    /// A node's agent.
    Node,
}

/// One replica of a platform service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceReplicaStatus {
    /// The service, e.g. `sdwan`.
    pub service: String,
    /// Its consumer name (`sdwan`, or `sdwan-<replica>`).
    pub replica: String,
    /// `running`, `catching_up`, `retrying`, `stopped`, or `stale` (no
    /// report within three report intervals).
    pub status: String,
    /// The last log sequence it applied.
    pub applied_seq: u64,
    /// The log's head when it last reported.
    pub log_head_seq: u64,
    /// `log_head_seq - applied_seq`.
    pub lag: u64,
    /// The last error it met, if any.
    pub last_error: Option<String>,
    /// Seconds since its last checkpoint.
    pub checkpoint_age_secs: Option<f64>,
    /// Seconds since it started.
    pub uptime_secs: f64,
    /// When it last reported (RFC 3339).
    pub reported_at: String,
    /// Its host's name and process id.
    pub host: String,
}

/// A node agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NodeAgentStatus {
    /// Instance id.
    pub instance_id: String,
    /// Hostname.
    pub hostname: String,
    /// Instance status (`enrolled`, `drained`, …).
    pub status: String,
    /// The agent binary's version, from its last heartbeat.
    pub agent_version: Option<String>,
    /// `simulated` or `k3s`.
    pub runtime: Option<String>,
    /// What the agent binary understands.
    pub capabilities: Vec<String>,
    /// Modules and the versions it runs.
    pub modules: Vec<NodeModule>,
    /// The handshake phase the log has for it.
    pub handshake_phase: Option<String>,
    /// Its cluster.
    pub cluster_id: Option<String>,
    /// When its last heartbeat arrived (RFC 3339), if one did since the
    /// platform started.
    pub last_heartbeat_at: Option<String>,
    /// Milliseconds since then.
    pub heartbeat_age_ms: Option<u64>,
    /// The WireGuard revision applied per network, against the desired one.
    pub wireguard: Vec<WireguardRevision>,
    /// The upgrade step it is running, if any.
    pub upgrading: Option<String>,
    /// Its recent errors, newest last.
    pub recent_errors: Vec<String>,
    /// Capabilities its config needs that its agent lacks (empty: none);
    /// such an agent ignores those fields.
    pub outdated: Vec<String>,
}

/// A module a node runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NodeModule {
    /// `k3s-server` or `k3s-agent`.
    pub module_name: String,
    /// The version the platform has it on.
    pub module_version_id: Option<String>,
    /// The version the agent reports running.
    pub reported_version_id: Option<String>,
    /// The k3s release the agent reports.
    pub k3s_version: Option<String>,
}

/// One network's WireGuard config revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WireguardRevision {
    /// Network id.
    pub network_id: String,
    /// Desired revision.
    pub desired: u64,
    /// Applied revision, as last reported.
    pub applied: Option<u64>,
}
