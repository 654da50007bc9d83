//! The module catalog, the version each instance runs, and skill
//! executions (plan, steps, outcome), folded from the day-2 events.
//!
//! The fold records facts and never decides: which step starts next, when
//! an execution is aborted or completes, is the skills service's decision,
//! made from what is here.

use super::AccountState;
use chrono::{DateTime, Utc};
use powernode_events::payloads::k3s::K3sModule;
use powernode_events::payloads::skills::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A version of a module (`system.module.version.created`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleVersion {
    /// Version id, e.g. `v-k3s-1.31.0`.
    pub id: String,
    /// Module.
    pub module_name: K3sModule,
    /// The version, e.g. `1.31.0`.
    pub version: String,
    /// The k3s release.
    pub k3s_version: String,
    /// Sequence of its creation.
    pub created_seq: u64,
}

impl ModuleVersion {
    /// The version as numbers, for ordering (`1.31.0` → `[1, 31, 0]`;
    /// a part that is no number counts as 0).
    pub fn numbers(&self) -> Vec<u64> {
        version_numbers(&self.version)
    }
}

/// `1.31.0` → `[1, 31, 0]` (a leading `v` is skipped; a part that is no
/// number counts as 0).
pub fn version_numbers(version: &str) -> Vec<u64> {
    version
        .trim_start_matches('v')
        .split(['.', '+', '-'])
        .map(|p| p.parse().unwrap_or(0))
        .collect()
}

/// Where an execution is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionState {
    /// Starting steps.
    Running,
    /// Paused.
    Paused,
    /// Every step ran.
    Completed,
    /// Stopped early.
    Aborted,
}

impl ExecutionState {
    /// Completed or aborted.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Aborted)
    }
}

/// Where a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Not started.
    Pending,
    /// Started, no outcome yet.
    Running,
    /// Succeeded.
    Succeeded,
    /// Failed.
    Failed,
}

/// One step of an execution: the plan's step and what happened to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionStep {
    /// The plan's step.
    pub plan: PlanStep,
    /// Where it is.
    pub state: StepState,
    /// When it started.
    pub started_at: Option<DateTime<Utc>>,
    /// Sequence of `step_started`.
    pub started_seq: Option<u64>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Sequence of its outcome (`step_succeeded` / `step_failed`).
    pub finished_seq: Option<u64>,
    /// The agent's report (`system.k3s.module.upgraded` or
    /// `…upgrade_failed`), once in: the skills service turns it into the
    /// step's outcome.
    pub agent_report: Option<AgentStepReport>,
    /// Why it failed.
    pub reason: Option<String>,
    /// Whether the failed node was put back on its old version.
    pub rolled_back: Option<bool>,
}

/// What the agent reported about a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStepReport {
    /// Whether it worked.
    pub ok: bool,
    /// The phases.
    pub phases: Vec<PhaseReport>,
    /// Why it failed.
    pub reason: Option<String>,
    /// Whether the node is back on its old version.
    pub rolled_back: bool,
    /// The version it runs now.
    pub running_version_id: Option<String>,
    /// The k3s release it runs now.
    pub k3s_version: String,
    /// Sequence of the report.
    pub seq: u64,
}

/// A skill execution (`system.skill.execution.*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    /// Execution id.
    pub id: String,
    /// The skill.
    pub skill: SkillName,
    /// Its inputs.
    pub inputs: SkillInputs,
    /// What it works on (`template/<id>`, `cluster/<id>`).
    pub scope: String,
    /// Failures in a row that stop it.
    pub max_consecutive_failures: u32,
    /// Every step, by step number.
    pub steps: Vec<ExecutionStep>,
    /// Where it is.
    pub state: ExecutionState,
    /// Failures in a row so far (from the last `step_failed`; a success
    /// resets it).
    pub consecutive_failures: u32,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Sequence of `execution.started`.
    pub started_seq: u64,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it is paused, or why it was aborted (`<reason>: <detail>`).
    pub reason: Option<String>,
    /// The cluster it made (provision_cluster).
    pub cluster_id: Option<String>,
    /// Sequence of its last event.
    pub last_seq: u64,
}

impl Execution {
    /// Whether the executor still has something to do for it: it is not
    /// finished, or a step of it is still running (its outcome is to be
    /// recorded).
    pub fn at_work(&self) -> bool {
        !self.state.is_finished() || self.steps.iter().any(|s| s.state == StepState::Running)
    }

    /// The steps of batch `batch`.
    pub fn batch(&self, batch: u32) -> impl Iterator<Item = &ExecutionStep> {
        self.steps.iter().filter(move |s| s.plan.batch == batch)
    }

    /// How many batches the plan has.
    pub fn batch_count(&self) -> u32 {
        self.steps
            .iter()
            .map(|s| s.plan.batch + 1)
            .max()
            .unwrap_or(0)
    }

    /// Steps that succeeded / failed.
    pub fn counts(&self) -> (u32, u32) {
        let ok = self
            .steps
            .iter()
            .filter(|s| s.state == StepState::Succeeded)
            .count() as u32;
        let failed = self
            .steps
            .iter()
            .filter(|s| s.state == StepState::Failed)
            .count() as u32;
        (ok, failed)
    }

    /// The step `step`, if the plan has it.
    pub fn step(&self, step: u32) -> Option<&ExecutionStep> {
        self.steps
            .get(step as usize)
            .filter(|s| s.plan.step == step)
    }

    fn step_mut(&mut self, step: u32) -> Option<&mut ExecutionStep> {
        self.steps
            .get_mut(step as usize)
            .filter(|s| s.plan.step == step)
    }
}

/// `system.module.version.created` (first creation of an id wins).
pub(super) fn version_created(account: &mut AccountState, seq: u64, p: &ModuleVersionCreated) {
    account
        .module_versions
        .entry(p.module_version_id.clone())
        .or_insert_with(|| ModuleVersion {
            id: p.module_version_id.clone(),
            module_name: p.module_name,
            version: p.version.clone(),
            k3s_version: p.k3s_version.clone(),
            created_seq: seq,
        });
}

/// `system.skill.execution.started` (first start of an id wins).
pub(super) fn started(
    account: &mut AccountState,
    seq: u64,
    at: DateTime<Utc>,
    p: &SkillExecutionStarted,
) {
    if account.executions.contains_key(&p.execution_id) {
        return;
    }
    // A re-stamp records the cluster's new flags and pod CIDR as it starts
    // (its nodes take them batch by batch; joiners from now on at once).
    if p.skill == SkillName::PodSubnetRestamp {
        restamp_started(account, p);
    }
    account.executions_at_work.insert(p.execution_id.clone());
    account.executions.insert(
        p.execution_id.clone(),
        Execution {
            id: p.execution_id.clone(),
            skill: p.skill,
            inputs: (*p.inputs).clone(),
            scope: p.scope.clone(),
            max_consecutive_failures: p.max_consecutive_failures,
            steps: p
                .steps
                .iter()
                .map(|s| ExecutionStep {
                    plan: s.clone(),
                    state: StepState::Pending,
                    started_at: None,
                    started_seq: None,
                    finished_at: None,
                    finished_seq: None,
                    agent_report: None,
                    reason: None,
                    rolled_back: None,
                })
                .collect(),
            state: ExecutionState::Running,
            consecutive_failures: 0,
            started_at: at,
            started_seq: seq,
            finished_at: None,
            reason: None,
            cluster_id: None,
            last_seq: seq,
        },
    );
}

/// The cluster a re-stamp starts on takes the servers' new flags and the
/// network's pod subnet prefix.
fn restamp_started(account: &mut AccountState, p: &SkillExecutionStarted) {
    let Some(cluster_id) = &p.inputs.cluster_id else {
        return;
    };
    let prefix = p
        .inputs
        .network_id
        .as_ref()
        .and_then(|n| account.networks.get(n))
        .and_then(|n| n.pod_subnet_prefix);
    let flags = p
        .steps
        .iter()
        .find(|s| s.role == K3sModule::K3sServer)
        .map(|s| s.extra_flags.clone())
        .filter(|f| !f.is_empty());
    if let (Some(c), Some(prefix), Some(flags)) =
        (account.clusters.get_mut(cluster_id), prefix, flags)
    {
        c.pod_cidr = Some(prefix);
        c.server_flags = flags;
    }
}

/// Runs `f` on execution `id` when it is known, and records `seq` as its last.
fn with_execution(account: &mut AccountState, id: &str, seq: u64, f: impl FnOnce(&mut Execution)) {
    if let Some(e) = account.executions.get_mut(id) {
        f(e);
        e.last_seq = seq;
        index_at_work(&mut account.executions_at_work, e);
    }
}

/// Keeps [`AccountState::executions_at_work`] in step with `e`.
fn index_at_work(index: &mut std::collections::BTreeSet<String>, e: &Execution) {
    if e.at_work() {
        index.insert(e.id.clone());
    } else {
        index.remove(&e.id);
    }
}

/// `…step_started`.
pub(super) fn step_started(
    account: &mut AccountState,
    seq: u64,
    at: DateTime<Utc>,
    p: &SkillStepStarted,
) {
    with_execution(account, &p.execution_id, seq, |e| {
        if let Some(s) = e.step_mut(p.step) {
            if s.state == StepState::Pending {
                s.state = StepState::Running;
                s.started_at = Some(at);
                s.started_seq = Some(seq);
            }
        }
    });
}

/// `…step_succeeded`: the step and, for an upgrade, the instance's version.
pub(super) fn step_succeeded(
    account: &mut AccountState,
    seq: u64,
    at: DateTime<Utc>,
    p: &SkillStepSucceeded,
) {
    let mut version = None;
    with_execution(account, &p.execution_id, seq, |e| {
        e.consecutive_failures = 0;
        if let Some(s) = e.step_mut(p.step) {
            if matches!(s.state, StepState::Pending | StepState::Running) {
                s.state = StepState::Succeeded;
                s.finished_at = Some(at);
                s.finished_seq = Some(seq);
                version = Some((s.plan.role, p.running_version_id.clone()));
            }
        }
    });
    if let Some((module, Some(v))) = version {
        set_running(account, &p.instance_id, module, v);
    }
}

/// `…step_failed`.
pub(super) fn step_failed(
    account: &mut AccountState,
    seq: u64,
    at: DateTime<Utc>,
    p: &SkillStepFailed,
) {
    with_execution(account, &p.execution_id, seq, |e| {
        e.consecutive_failures = p.consecutive_failures;
        if let Some(s) = e.step_mut(p.step) {
            if matches!(s.state, StepState::Pending | StepState::Running) {
                s.state = StepState::Failed;
                s.finished_at = Some(at);
                s.finished_seq = Some(seq);
                s.reason = Some(p.reason.clone());
                s.rolled_back = Some(p.rolled_back);
            }
        }
    });
}

/// `…paused`.
pub(super) fn paused(account: &mut AccountState, seq: u64, p: &SkillExecutionPaused) {
    with_execution(account, &p.execution_id, seq, |e| {
        if e.state == ExecutionState::Running {
            e.state = ExecutionState::Paused;
            e.reason = Some(p.reason.clone());
        }
    });
}

/// `…resumed`.
pub(super) fn resumed(account: &mut AccountState, seq: u64, p: &SkillExecutionResumed) {
    with_execution(account, &p.execution_id, seq, |e| {
        if e.state == ExecutionState::Paused {
            e.state = ExecutionState::Running;
            e.reason = None;
        }
    });
}

/// `…completed`.
pub(super) fn completed(
    account: &mut AccountState,
    seq: u64,
    at: DateTime<Utc>,
    p: &SkillExecutionCompleted,
) {
    with_execution(account, &p.execution_id, seq, |e| {
        if !e.state.is_finished() {
            e.state = ExecutionState::Completed;
            e.finished_at = Some(at);
            e.cluster_id = p.cluster_id.clone();
            e.reason = None;
        }
    });
}

/// `…aborted`.
pub(super) fn aborted(
    account: &mut AccountState,
    seq: u64,
    at: DateTime<Utc>,
    p: &SkillExecutionAborted,
) {
    with_execution(account, &p.execution_id, seq, |e| {
        if !e.state.is_finished() {
            e.state = ExecutionState::Aborted;
            e.finished_at = Some(at);
            e.reason = Some(format!("{}: {}", p.reason, p.detail));
        }
    });
}

/// `system.k3s.module.upgraded`: the agent's report on its step (the
/// first report of a step counts). Reports are on the instance's
/// aggregate: they do not move the execution's `last_seq` (the sequence
/// its own aggregate's guard is on).
pub(super) fn module_upgraded(account: &mut AccountState, seq: u64, p: &ModuleUpgraded) {
    if let Some(e) = account.executions.get_mut(&p.execution_id) {
        if let Some(s) = e.step_mut(p.step) {
            if s.plan.instance_id == p.instance_id && s.agent_report.is_none() {
                s.agent_report = Some(AgentStepReport {
                    ok: true,
                    phases: p.phases.clone(),
                    reason: None,
                    rolled_back: false,
                    running_version_id: p.to_version_id.clone(),
                    k3s_version: p.k3s_version.clone(),
                    seq,
                });
            }
        }
    }
    if let Some(i) = account.instances.get_mut(&p.instance_id) {
        i.k3s_version = Some(p.k3s_version.clone());
    }
}

/// `system.k3s.module.upgrade_failed` (as [`module_upgraded`]).
pub(super) fn module_upgrade_failed(account: &mut AccountState, seq: u64, p: &ModuleUpgradeFailed) {
    if let Some(e) = account.executions.get_mut(&p.execution_id) {
        if let Some(s) = e.step_mut(p.step) {
            if s.plan.instance_id == p.instance_id && s.agent_report.is_none() {
                s.agent_report = Some(AgentStepReport {
                    ok: false,
                    phases: p.phases.clone(),
                    reason: Some(p.reason.clone()),
                    rolled_back: p.rolled_back,
                    running_version_id: p.running_version_id.clone(),
                    k3s_version: p.k3s_version.clone(),
                    seq,
                });
            }
        }
    }
    if let Some(i) = account.instances.get_mut(&p.instance_id) {
        i.k3s_version = Some(p.k3s_version.clone());
    }
}

/// `system.agent.outdated`.
pub(super) fn agent_outdated(account: &mut AccountState, p: &AgentOutdated) {
    if let Some(i) = account.instances.get_mut(&p.instance_id) {
        i.outdated_capabilities = p.missing_capabilities.clone();
    }
}

/// Records that `instance` runs `version` of `module`.
fn set_running(account: &mut AccountState, instance: &str, module: K3sModule, version: String) {
    account
        .instance_versions
        .entry(instance.to_string())
        .or_default()
        .insert(module, version);
}

impl AccountState {
    /// The versions of `module`, oldest first (by version number).
    pub fn module_versions_of(&self, module: K3sModule) -> Vec<&ModuleVersion> {
        let mut v: Vec<&ModuleVersion> = self
            .module_versions
            .values()
            .filter(|v| v.module_name == module)
            .collect();
        v.sort_by(|a, b| {
            a.numbers()
                .cmp(&b.numbers())
                .then(a.created_seq.cmp(&b.created_seq))
        });
        v
    }

    /// The newest version of `module`, if the catalog has one.
    pub fn newest_module_version(&self, module: K3sModule) -> Option<&ModuleVersion> {
        self.module_versions_of(module).pop()
    }

    /// The version of `module` the platform has `instance` on: what an
    /// upgrade put there, else its assignment's pin; `None`: unpinned.
    pub fn instance_module_version(
        &self,
        instance_id: &str,
        module: K3sModule,
    ) -> Option<&ModuleVersion> {
        let id = self
            .instance_versions
            .get(instance_id)
            .and_then(|m| m.get(&module))
            .cloned()
            .or_else(|| {
                let inst = self.instances.get(instance_id)?;
                let t = self.templates.get(&inst.template_id)?;
                t.assignment_for(instance_id, module)?
                    .module_version_id
                    .clone()
            })?;
        self.module_versions.get(&id)
    }

    /// The execution not finished whose scope is `scope`, if any.
    pub fn running_execution(&self, scope: &str) -> Option<&Execution> {
        self.executions_at_work()
            .find(|e| e.scope == scope && !e.state.is_finished())
    }

    /// The executions the executor still has something to do for
    /// ([`Execution::at_work`]), from the index the fold keeps: heartbeats
    /// and the executor look only at these, not at every execution ever.
    pub fn executions_at_work(&self) -> impl Iterator<Item = &Execution> {
        self.executions_at_work
            .iter()
            .filter_map(|id| self.executions.get(id))
    }
}

/// Index type: instance id → module → the version id an upgrade put there.
pub type InstanceVersions = crate::tracked::Tracked<String, BTreeMap<K3sModule, String>>;
