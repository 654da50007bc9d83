//! Day-2 operations: the module catalog, skill executions (rolling
//! upgrades, cluster provisioning, pod-subnet re-stamps) and what agents
//! report back about the upgrades they ran.
//!
//! An execution is one aggregate (`skill_execution/<id>`): its plan is
//! frozen in `…execution.started`, each node's step is started, then
//! succeeds or fails, and the execution completes or is aborted. The
//! agents' own reports (`system.k3s.module.upgraded` /
//! `…upgrade_failed`) are appended by the intake on the reporting
//! instance's aggregate (one report per step, checked there), so agents
//! reporting at once never race the executor's guarded decisions.

use super::k3s::K3sModule;

payload! {
    /// A version was added to a module's catalog.
    pub struct ModuleVersionCreated {
        /// Version id, minted by the platform: `v-k3s-<version>` for
        /// `k3s-server`, `v-k3s-agent-<version>` for `k3s-agent`.
        pub module_version_id: String,
        /// Module id: `mod-k3s-server` or `mod-k3s-agent`.
        pub module_id: String,
        /// Module name.
        pub module_name: K3sModule,
        /// The version, e.g. `1.31.0` (dotted numbers; newest = highest).
        pub version: String,
        /// The k3s release it installs (`INSTALL_K3S_VERSION`), e.g. `v1.31.0+k3s1`.
        pub k3s_version: String,
    }
}

payload! {
    /// Which skill an execution runs.
    pub enum SkillName {
        /// `system-rolling-module-upgrade`: upgrade a module on a template's
        /// instances, batch by batch.
        #[serde(rename = "system-rolling-module-upgrade")]
        RollingModuleUpgrade,
        /// `provision_cluster`: bootstrap a cluster of N servers and M workers.
        #[serde(rename = "provision_cluster")]
        ProvisionCluster,
        /// `system-pod-subnet-restamp`: reinstall a flannel cluster's nodes
        /// with the flags of a newly set `pod_subnet_prefix` (started by the
        /// platform when the prefix is set).
        #[serde(rename = "system-pod-subnet-restamp")]
        PodSubnetRestamp,
    }
}

impl SkillName {
    /// Every skill.
    pub const ALL: [SkillName; 3] = [
        Self::RollingModuleUpgrade,
        Self::ProvisionCluster,
        Self::PodSubnetRestamp,
    ];

    /// The wire name, e.g. `system-rolling-module-upgrade`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::RollingModuleUpgrade => "system-rolling-module-upgrade",
            Self::ProvisionCluster => "provision_cluster",
            Self::PodSubnetRestamp => "system-pod-subnet-restamp",
        }
    }

    /// The skill named `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

payload! {
    /// A skill's inputs, as given (each skill reads its own; the rest are
    /// absent).
    #[derive(Default)]
    pub struct SkillInputs {
        /// Rolling upgrade: the template whose instances are upgraded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub template_id: Option<String>,
        /// Rolling upgrade: the module (`mod-k3s-server`, `mod-k3s-agent`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub module_id: Option<String>,
        /// Rolling upgrade: the version to run (`v-k3s-1.31.0`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub target_version_id: Option<String>,
        /// Rolling upgrade / re-stamp: percent of the instances per batch (1-100).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub batch_pct: Option<u32>,
        /// Rolling upgrade / re-stamp: failures in a row that stop the execution.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub max_consecutive_failures: Option<u32>,
        /// Provision cluster / re-stamp: the SD-WAN network.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub network_id: Option<String>,
        /// Provision cluster: the servers' template.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub server_template_id: Option<String>,
        /// Provision cluster: the workers' template.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub worker_template_id: Option<String>,
        /// Provision cluster: how many servers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub servers: Option<u32>,
        /// Provision cluster: how many workers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub workers: Option<u32>,
        /// Re-stamp: the cluster.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub cluster_id: Option<String>,
    }
}

payload! {
    /// What a step does to its node.
    pub enum StepAction {
        /// Cordon, drain, install the target version, wait ready, uncordon.
        Upgrade,
        /// The same with the version unchanged and new k3s flags (flannel).
        Restamp,
        /// Wait for a provisioned node to be ready in its cluster.
        Provision,
    }
}

payload! {
    /// A VIP the executor moves off a node (to an upgraded server of the
    /// same cluster) before the node's step touches it.
    pub struct PlannedVipMove {
        /// Virtual IP id.
        pub virtual_ip_id: String,
        /// The address.
        pub vip: String,
    }
}

payload! {
    /// One node's step of a plan.
    pub struct PlanStep {
        /// Step number, from 0, across the whole plan.
        pub step: u32,
        /// Its batch, from 0.
        pub batch: u32,
        /// What it does.
        pub action: StepAction,
        /// The instance.
        pub instance_id: String,
        /// Its Kubernetes node name (the hostname).
        pub node_name: String,
        /// `k3s-server` (control plane) or `k3s-agent`.
        pub role: K3sModule,
        /// The instance's cluster, if it is in one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub cluster_id: Option<String>,
        /// The version it runs before the step (`None`: unpinned).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub from_version_id: Option<String>,
        /// The version it runs after.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub to_version_id: Option<String>,
        /// k3s flags to reinstall with (re-stamp).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub extra_flags: Vec<String>,
        /// VIPs moved off the node before it is touched (the holder goes last).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub vip_moves: Vec<PlannedVipMove>,
    }
}

payload! {
    /// A skill execution began; its plan is fixed from here on.
    pub struct SkillExecutionStarted {
        /// Execution id (`exec-<uuid>`).
        pub execution_id: String,
        /// The skill.
        pub skill: SkillName,
        /// Its inputs (boxed: the largest payload would otherwise size every
        /// event in memory).
        pub inputs: Box<SkillInputs>,
        /// What only one execution at a time may work on: `template/<id>`
        /// or `cluster/<id>`.
        pub scope: String,
        /// Every step, in order (batch by batch).
        pub steps: Vec<PlanStep>,
        /// Failures in a row that stop the execution.
        pub max_consecutive_failures: u32,
    }
}

payload! {
    /// A step began: its node is being worked on.
    pub struct SkillStepStarted {
        /// Execution id.
        pub execution_id: String,
        /// Step number.
        pub step: u32,
        /// The instance.
        pub instance_id: String,
    }
}

payload! {
    /// A step finished well.
    pub struct SkillStepSucceeded {
        /// Execution id.
        pub execution_id: String,
        /// Step number.
        pub step: u32,
        /// The instance.
        pub instance_id: String,
        /// The version the node runs now.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub running_version_id: Option<String>,
    }
}

payload! {
    /// A step failed.
    pub struct SkillStepFailed {
        /// Execution id.
        pub execution_id: String,
        /// Step number.
        pub step: u32,
        /// The instance.
        pub instance_id: String,
        /// Why, in words.
        pub reason: String,
        /// Whether the node was put back in service on its old version.
        pub rolled_back: bool,
        /// The version the node runs now.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub running_version_id: Option<String>,
        /// Failures in a row, this one included.
        pub consecutive_failures: u32,
    }
}

payload! {
    /// An execution was paused: steps under way finish, none starts.
    pub struct SkillExecutionPaused {
        /// Execution id.
        pub execution_id: String,
        /// Why (the operator's words, or the platform's).
        pub reason: String,
    }
}

payload! {
    /// A paused execution goes on where it was.
    pub struct SkillExecutionResumed {
        /// Execution id.
        pub execution_id: String,
    }
}

payload! {
    /// An execution finished: every step ran.
    pub struct SkillExecutionCompleted {
        /// Execution id.
        pub execution_id: String,
        /// Steps that succeeded.
        pub succeeded: u32,
        /// Steps that failed (below the failure limit).
        pub failed: u32,
        /// The cluster it made (provision_cluster).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub cluster_id: Option<String>,
    }
}

payload! {
    /// An execution stopped before its end; no further node is touched.
    pub struct SkillExecutionAborted {
        /// Execution id.
        pub execution_id: String,
        /// `max_consecutive_failures`, `cancelled`, `target_gone`, …
        pub reason: String,
        /// In words: which failures, who cancelled, what vanished.
        pub detail: String,
    }
}

payload! {
    /// One phase of a node's upgrade, as the agent ran it.
    pub enum UpgradePhase {
        /// Marked unschedulable.
        Cordon,
        /// Pods evicted.
        Drain,
        /// The new version (or flags) installed and k3s restarted.
        Upgrade,
        /// The node came back ready and healthy.
        WaitReady,
        /// Schedulable again.
        Uncordon,
        /// The old version put back after a failure.
        Rollback,
    }
}

payload! {
    /// A phase's outcome.
    pub struct PhaseReport {
        /// The phase.
        pub phase: UpgradePhase,
        /// Whether it worked.
        pub ok: bool,
        /// When it ended (ms since the Unix epoch).
        pub at_ms: i64,
        /// What happened, when there is more to say.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub detail: Option<String>,
    }
}

payload! {
    /// An agent upgraded (or re-stamped) its module as a step ordered (signed
    /// by the agent, appended by the intake).
    pub struct ModuleUpgraded {
        /// Execution id.
        pub execution_id: String,
        /// Step number.
        pub step: u32,
        /// The instance.
        pub instance_id: String,
        /// Module.
        pub module_name: K3sModule,
        /// The version it ran before.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub from_version_id: Option<String>,
        /// The version it runs now.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub to_version_id: Option<String>,
        /// The k3s release it runs now.
        pub k3s_version: String,
        /// Each phase, in order.
        pub phases: Vec<PhaseReport>,
    }
}

payload! {
    /// An agent's upgrade step failed (signed by the agent, appended by the
    /// intake).
    pub struct ModuleUpgradeFailed {
        /// Execution id.
        pub execution_id: String,
        /// Step number.
        pub step: u32,
        /// The instance.
        pub instance_id: String,
        /// Module.
        pub module_name: K3sModule,
        /// The version the step was to install.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub to_version_id: Option<String>,
        /// The phase that failed.
        pub failed_phase: UpgradePhase,
        /// Why.
        pub reason: String,
        /// Whether the node is back in service on its old version.
        pub rolled_back: bool,
        /// The version it runs now.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub running_version_id: Option<String>,
        /// The k3s release it runs now.
        pub k3s_version: String,
        /// Each phase, in order.
        pub phases: Vec<PhaseReport>,
    }
}

payload! {
    /// The platform found an instance's agent too old for a field its
    /// config needs (an older agent binary ignores new fields).
    pub struct AgentOutdated {
        /// The instance.
        pub instance_id: String,
        /// The version its agent reports.
        pub agent_version: String,
        /// The capabilities its config needs that the agent lacks, e.g.
        /// `flannel_sdwan`, `module_versions`.
        pub missing_capabilities: Vec<String>,
    }
}
