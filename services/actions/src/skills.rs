//! Skill executions: `execute_skill`, `system_get_skill_execution`,
//! `system_list_skill_executions`, `system_pause_skill_execution`,
//! `system_resume_skill_execution`, `system_cancel_skill_execution`.
//!
//! Skills (see [`SkillName`]):
//! * `system-rolling-module-upgrade` — inputs `template_id`, `module_id`,
//!   `target_version_id`, `batch_pct` (1-100), `max_consecutive_failures`;
//! * `provision_cluster` — inputs `network_id`, `server_template_id`,
//!   `worker_template_id` (when `workers` > 0), `servers`, `workers`, and
//!   `timeout_secs` (how long the call waits for the cluster, default
//!   600; after it the call answers the execution still running);
//! * `system-pod-subnet-restamp` — started by the platform when a
//!   network's `pod_subnet_prefix` is set under running flannel clusters.
//!
//! `dry_run: true` answers the plan (batches, order, VIP moves) and
//! appends nothing; the plan that runs is the same.

pub use powernode_events::payloads::skills::{PlannedVipMove, SkillName, StepAction, UpgradePhase};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Arguments of `execute_skill`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteSkillArgs {
    /// The skill, e.g. `system-rolling-module-upgrade`.
    pub skill: String,
    /// The skill's inputs (an object; an input the skill does not know is
    /// refused).
    #[serde(default)]
    pub inputs: serde_json::Map<String, serde_json::Value>,
    /// Answer the plan without running it (nothing is appended).
    #[serde(default)]
    pub dry_run: bool,
}

/// Answer of `execute_skill`: the execution (`planned` for a dry run).
/// `provision_cluster` answers once every node is ready, with the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExecuteSkillAnswer {
    /// The execution.
    pub execution: SkillExecution,
    /// The cluster `provision_cluster` made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<crate::clusters::Cluster>,
}

/// Arguments of the actions about one execution
/// (`system_get_skill_execution`, `…pause…`, `…resume…`, `…cancel…`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecutionIdArgs {
    /// Execution id.
    pub execution_id: String,
    /// Why (pause and cancel; recorded).
    #[serde(default)]
    pub reason: Option<String>,
}

/// Answer of the actions about one execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExecutionAnswer {
    /// The execution as it is now.
    pub execution: SkillExecution,
}

/// Arguments of `system_list_skill_executions`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListExecutionsArgs {
    /// Only this skill.
    #[serde(default)]
    pub skill: Option<String>,
    /// Only this status.
    #[serde(default)]
    pub status: Option<ExecutionStatus>,
}

/// Answer of `system_list_skill_executions`, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ListExecutionsAnswer {
    /// The executions.
    pub executions: Vec<SkillExecution>,
}

/// Where an execution is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    /// A dry run's plan (never ran).
    Planned,
    /// Steps are being started.
    Running,
    /// Paused: steps under way finish, none starts.
    Paused,
    /// Every step ran.
    Completed,
    /// Stopped early (failures, cancelled); no further node is touched.
    Aborted,
}

impl ExecutionStatus {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Planned => "planned",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Aborted => "aborted",
        }
    }

    /// Completed or aborted.
    pub const fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Aborted)
    }
}

/// Where a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Not started.
    Pending,
    /// Under way.
    Running,
    /// Done well.
    Succeeded,
    /// Failed (the node is back on its old version when `rolled_back`).
    Failed,
    /// Never started: the execution was aborted first.
    Skipped,
}

/// A skill execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SkillExecution {
    /// Execution id (`exec-…`; empty for a dry run).
    pub id: String,
    /// The skill.
    pub skill: SkillName,
    /// Where it is.
    pub status: ExecutionStatus,
    /// What only one execution at a time works on (`template/<id>`, `cluster/<id>`).
    pub scope: String,
    /// The inputs as understood.
    pub inputs: serde_json::Value,
    /// Failures in a row that stop it.
    pub max_consecutive_failures: u32,
    /// The batches, each a list of step numbers, in order.
    pub batches: Vec<Vec<u32>>,
    /// Every step.
    pub steps: Vec<StepView>,
    /// Failures in a row so far.
    pub consecutive_failures: u32,
    /// Steps that succeeded.
    pub succeeded: u32,
    /// Steps that failed.
    pub failed: u32,
    /// When it started (RFC 3339).
    pub started_at: Option<String>,
    /// When it finished.
    pub finished_at: Option<String>,
    /// Why it is paused, or why it was aborted (`max_consecutive_failures`,
    /// `cancelled`, …) with the detail.
    pub reason: Option<String>,
    /// The cluster it made (provision_cluster).
    pub cluster_id: Option<String>,
    /// Sequence of its last event.
    pub last_seq: u64,
}

/// One node's step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StepView {
    /// Step number.
    pub step: u32,
    /// Its batch.
    pub batch: u32,
    /// What it does.
    pub action: StepAction,
    /// The instance.
    pub instance_id: String,
    /// Its node name.
    pub node_name: String,
    /// `k3s-server` or `k3s-agent`.
    pub role: String,
    /// Its cluster.
    pub cluster_id: Option<String>,
    /// The version before.
    pub from_version_id: Option<String>,
    /// The version after.
    pub to_version_id: Option<String>,
    /// VIPs moved off the node first.
    pub vip_moves: Vec<PlannedVipMove>,
    /// Where it is.
    pub status: StepStatus,
    /// When it started.
    pub started_at: Option<String>,
    /// When it ended.
    pub finished_at: Option<String>,
    /// Why it failed.
    pub reason: Option<String>,
    /// Whether the failed node was put back on its old version.
    pub rolled_back: Option<bool>,
    /// The phases the agent reported.
    pub phases: Vec<PhaseView>,
}

/// A phase of a step, as the agent reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PhaseView {
    /// The phase.
    pub phase: UpgradePhase,
    /// Whether it worked.
    pub ok: bool,
    /// When it ended (RFC 3339).
    pub at: String,
    /// More.
    pub detail: Option<String>,
}
