//! The plans: which node each skill touches, in which batch, from which
//! version to which — decided from the fleet state alone, so a dry run and
//! the execution that follows it plan the same.

use super::batch::{batch_size, plan_steps, Candidate};
use super::inputs::{ProvisionInputs, RestampInputs, UpgradeInputs};
use powernode_events::payloads::k3s::{K3sModule, NodeRole};
use powernode_events::payloads::skills::{
    PlanStep, PlannedVipMove, SkillExecutionStarted, SkillInputs, SkillName, StepAction,
};
use powernode_events::AccountId;
use powernode_projections::fleet::{
    AccountState, Instance, InstanceStatus, K3sPhase, K8sNodeStatus, VipStatus,
};
use powernode_projections::FleetState;

/// A skill's plan: what `…execution.started` freezes.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The skill.
    pub skill: SkillName,
    /// Its inputs, as recorded.
    pub inputs: SkillInputs,
    /// What only one execution at a time may work on.
    pub scope: String,
    /// Every step, batch by batch.
    pub steps: Vec<PlanStep>,
    /// Failures in a row that stop the execution.
    pub max_consecutive_failures: u32,
}

impl Plan {
    /// The event that starts the plan as execution `execution_id`.
    pub fn started(&self, execution_id: &str) -> SkillExecutionStarted {
        SkillExecutionStarted {
            execution_id: execution_id.to_string(),
            skill: self.skill,
            inputs: Box::new(self.inputs.clone()),
            scope: self.scope.clone(),
            steps: self.steps.clone(),
            max_consecutive_failures: self.max_consecutive_failures,
        }
    }
}

/// Why no plan could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// An unknown id (another account's ids included).
    #[error("no {what} {id:?} in this account")]
    NotFound {
        /// What was looked for (`template`, `module version`, …).
        what: &'static str,
        /// The id.
        id: String,
    },
    /// An input that names nothing the skill can work with.
    #[error("{0}")]
    Invalid(String),
    /// The target version belongs to another module.
    #[error("{version_id} is a version of {of}, not of {asked}")]
    VersionOfAnotherModule {
        /// The version.
        version_id: String,
        /// Its module's id.
        of: &'static str,
        /// The module asked for.
        asked: &'static str,
    },
    /// Every node is already where the skill would take it.
    #[error("{0}")]
    NothingToDo(String),
    /// The templates hold fewer idle instances than asked for.
    #[error("{0}")]
    NotEnoughInstances(String),
}

/// The scope of an execution on a template.
pub fn template_scope(template_id: &str) -> String {
    format!("template/{template_id}")
}

/// The scope of an execution on a cluster.
pub fn cluster_scope(cluster_id: &str) -> String {
    format!("cluster/{cluster_id}")
}

/// The id of the `n`-th execution (from 0) on `scope` in `account`:
/// `exec-<UUIDv5 of "<account>/<scope>/<n>">`.
pub fn execution_id(account: &AccountId, scope: &str, n: usize) -> String {
    let name = format!("{}/{scope}/{n}", account.as_str());
    format!(
        "exec-{}",
        uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).simple()
    )
}

/// The id the next execution on `scope` gets: [`execution_id`] with `n` =
/// how many executions the scope has had. Two starts decided on the same
/// state get the same id, so appending the start under `Expect::NoEvents`
/// on its aggregate lets only one of them win.
pub fn next_execution_id(state: &FleetState, account: &AccountId, scope: &str) -> String {
    let n = state.account(account).map_or(0, |a| {
        a.executions.values().filter(|e| e.scope == scope).count()
    });
    execution_id(account, scope, n)
}

/// The module a catalog id names (`mod-k3s-server`, `mod-k3s-agent`).
pub fn module_of_id(module_id: &str) -> Option<K3sModule> {
    K3sModule::ALL
        .into_iter()
        .find(|m| m.module_id() == module_id)
}

/// The plan of `system-rolling-module-upgrade`: every instance of the
/// template that runs the module (enrolled, not terminated) and is not on
/// the target yet, in batches of `ceil(batch_pct % × the template's
/// instances that run the module)`.
pub fn rolling_upgrade(
    state: &FleetState,
    account: &AccountId,
    inputs: &UpgradeInputs,
) -> Result<Plan, PlanError> {
    let acct = state.account(account);
    let template = acct
        .and_then(|a| a.templates.get(&inputs.template_id))
        .ok_or_else(|| not_found("template", &inputs.template_id))?;
    let module = module_of_id(&inputs.module_id).ok_or_else(|| {
        PlanError::Invalid(format!(
            "inputs.module_id: unknown module {:?}; known: {}, {}",
            inputs.module_id,
            K3sModule::K3sServer.module_id(),
            K3sModule::K3sAgent.module_id()
        ))
    })?;
    let acct = acct.expect("the template's account exists");
    let target = acct
        .module_versions
        .get(&inputs.target_version_id)
        .ok_or_else(|| not_found("module version", &inputs.target_version_id))?;
    if target.module_name != module {
        return Err(PlanError::VersionOfAnotherModule {
            version_id: target.id.clone(),
            of: target.module_name.module_id(),
            asked: module.module_id(),
        });
    }
    let mut members: Vec<&Instance> = acct
        .instances
        .values()
        .filter(|i| i.template_id == template.id && has_agent(i))
        .filter(|i| template.assignment_for(&i.id, module).is_some())
        .collect();
    members.sort_by(|a, b| a.id.cmp(&b.id));
    if members.is_empty() {
        return Err(PlanError::NothingToDo(format!(
            "template {} has no instance running {} (enrolled, not terminated); nothing to upgrade",
            template.id,
            module.as_str()
        )));
    }
    let size = batch_size(inputs.batch_pct, members.len());
    let candidates: Vec<Candidate> = members
        .iter()
        .filter_map(|i| {
            let from = acct.instance_module_version(&i.id, module);
            let on_target = match from {
                Some(v) => v.id == target.id,
                None => i.k3s_version.as_deref() == Some(target.k3s_version.as_str()),
            };
            if on_target {
                return None;
            }
            let mut c = candidate(acct, i, module);
            c.from_version_id = from.map(|v| v.id.clone());
            c.to_version_id = Some(target.id.clone());
            Some(c)
        })
        .collect();
    if candidates.is_empty() {
        return Err(PlanError::NothingToDo(format!(
            "every instance of template {} already runs {}; nothing to upgrade",
            template.id, target.id
        )));
    }
    Ok(Plan {
        skill: SkillName::RollingModuleUpgrade,
        inputs: inputs.recorded(),
        scope: template_scope(&template.id),
        steps: plan_steps(candidates, size, StepAction::Upgrade),
        max_consecutive_failures: inputs.max_consecutive_failures,
    })
}

/// The plan of `system-pod-subnet-restamp`: every ready node of the
/// cluster reinstalled with `flags` (the flannel flags of the network's
/// new `pod_subnet_prefix`: see `services::provisioner::stamp`), version
/// unchanged, workers first, in batches of `ceil(batch_pct % × the
/// cluster's ready nodes)`; one failure stops it (set
/// [`Plan::max_consecutive_failures`] for more).
pub fn restamp(
    state: &FleetState,
    account: &AccountId,
    network_id: &str,
    cluster_id: &str,
    flags: &[String],
    batch_pct: u32,
) -> Result<Plan, PlanError> {
    let inputs = RestampInputs {
        network_id: network_id.to_string(),
        cluster_id: cluster_id.to_string(),
        batch_pct,
        max_consecutive_failures: 1,
    };
    restamp_with(state, account, &inputs, flags)
}

/// [`restamp`] with every input given (`execute_skill`).
pub fn restamp_with(
    state: &FleetState,
    account: &AccountId,
    inputs: &RestampInputs,
    flags: &[String],
) -> Result<Plan, PlanError> {
    let acct = state
        .account(account)
        .ok_or_else(|| not_found("cluster", &inputs.cluster_id))?;
    let cluster = acct
        .clusters
        .get(&inputs.cluster_id)
        .ok_or_else(|| not_found("cluster", &inputs.cluster_id))?;
    if !acct.networks.contains_key(&inputs.network_id) {
        return Err(not_found("network", &inputs.network_id));
    }
    if cluster.network_id.as_deref() != Some(inputs.network_id.as_str()) {
        return Err(PlanError::Invalid(format!(
            "inputs.cluster_id: cluster {} is not on network {}",
            cluster.id, inputs.network_id
        )));
    }
    let ready: Vec<(&str, NodeRole)> = acct
        .k8s_nodes
        .get(&cluster.id)
        .into_iter()
        .flat_map(|rows| rows.values())
        .filter(|r| r.status == K8sNodeStatus::Ready)
        .map(|r| (r.instance_id.as_str(), r.role))
        .collect();
    let candidates: Vec<Candidate> = ready
        .iter()
        .filter_map(|(id, role)| acct.instances.get(*id).map(|i| (i, *role)))
        .filter(|(i, _)| has_agent(i))
        .map(|(i, role)| {
            let module = match role {
                NodeRole::ControlPlane => K3sModule::K3sServer,
                NodeRole::Worker => K3sModule::K3sAgent,
            };
            let version = acct
                .instance_module_version(&i.id, module)
                .map(|v| v.id.clone());
            let mut c = candidate(acct, i, module);
            c.from_version_id = version.clone();
            c.to_version_id = version;
            // A worker takes only the per-node flag; the pod CIDR and the
            // backend are the servers'.
            c.extra_flags = match module {
                K3sModule::K3sServer => flags.to_vec(),
                K3sModule::K3sAgent => flags
                    .iter()
                    .filter(|f| f.starts_with("--flannel-iface"))
                    .cloned()
                    .collect(),
            };
            c
        })
        .collect();
    if candidates.is_empty() {
        return Err(PlanError::NothingToDo(format!(
            "cluster {} has no ready node to re-stamp",
            cluster.id
        )));
    }
    let size = batch_size(inputs.batch_pct, candidates.len());
    Ok(Plan {
        skill: SkillName::PodSubnetRestamp,
        inputs: inputs.recorded(),
        scope: cluster_scope(&cluster.id),
        steps: plan_steps(candidates, size, StepAction::Restamp),
        max_consecutive_failures: inputs.max_consecutive_failures,
    })
}

/// The plan of `provision_cluster`: the first idle instance of the server
/// template bootstraps (batch 0), the other servers join (batch 1), then
/// the workers (the next batch). Idle: enrolled, not terminated, in no
/// cluster and with no k3s handshake under way. Instances are taken in
/// node-name order.
pub fn provision(
    state: &FleetState,
    account: &AccountId,
    inputs: &ProvisionInputs,
) -> Result<Plan, PlanError> {
    let acct = state
        .account(account)
        .ok_or_else(|| not_found("network", &inputs.network_id))?;
    if !acct.networks.contains_key(&inputs.network_id) {
        return Err(not_found("network", &inputs.network_id));
    }
    let mut groups = vec![(
        inputs.server_template_id.as_str(),
        inputs.servers as usize,
        K3sModule::K3sServer,
    )];
    if inputs.workers > 0 {
        let worker = inputs
            .worker_template_id
            .as_deref()
            .ok_or_else(|| PlanError::Invalid("inputs.worker_template_id is required".into()))?;
        groups.push((worker, inputs.workers as usize, K3sModule::K3sAgent));
    }
    let mut taken: Vec<String> = Vec::new();
    let mut chosen: Vec<(Candidate, K3sModule)> = Vec::new();
    for (template_id, wanted, module) in groups {
        if !acct.templates.contains_key(template_id) {
            return Err(not_found("template", template_id));
        }
        let mut idle: Vec<Candidate> = acct
            .instances
            .values()
            .filter(|i| i.template_id == template_id && is_idle(acct, i))
            .filter(|i| !taken.contains(&i.id))
            .map(|i| candidate(acct, i, module))
            .collect();
        idle.sort_by(|a, b| (&a.node_name, &a.instance_id).cmp(&(&b.node_name, &b.instance_id)));
        if idle.len() < wanted {
            return Err(PlanError::NotEnoughInstances(format!(
                "template {template_id} has {} idle instance(s) (enrolled, not terminated, in no cluster); {wanted} {} asked for",
                idle.len(),
                if module == K3sModule::K3sServer { "server(s)" } else { "worker(s)" }
            )));
        }
        for c in idle.into_iter().take(wanted) {
            taken.push(c.instance_id.clone());
            chosen.push((c, module));
        }
    }
    let mut steps = Vec::new();
    for (n, (c, module)) in chosen.into_iter().enumerate() {
        let batch = match (n, module) {
            (0, _) => 0,
            (_, K3sModule::K3sServer) => 1,
            (_, K3sModule::K3sAgent) if inputs.servers > 1 => 2,
            (_, K3sModule::K3sAgent) => 1,
        };
        steps.push(PlanStep {
            step: n as u32,
            batch,
            action: StepAction::Provision,
            instance_id: c.instance_id,
            node_name: c.node_name,
            role: module,
            cluster_id: None,
            from_version_id: None,
            to_version_id: acct.newest_module_version(module).map(|v| v.id.clone()),
            extra_flags: Vec::new(),
            vip_moves: Vec::new(),
        });
    }
    Ok(Plan {
        skill: SkillName::ProvisionCluster,
        inputs: inputs.recorded(),
        scope: template_scope(&inputs.server_template_id),
        steps,
        max_consecutive_failures: 1,
    })
}

fn not_found(what: &'static str, id: &str) -> PlanError {
    PlanError::NotFound {
        what,
        id: id.to_string(),
    }
}

/// Enrolled (its agent has a key) and not terminated.
fn has_agent(i: &Instance) -> bool {
    i.public_key.is_some() && i.status != InstanceStatus::Terminated
}

/// Has an agent, is in no cluster, and no k3s handshake is under way.
fn is_idle(acct: &AccountState, i: &Instance) -> bool {
    let busy = matches!(
        i.k3s_phase,
        Some(
            K3sPhase::Installing
                | K3sPhase::Bootstrap
                | K3sPhase::JoinRequest
                | K3sPhase::JoinTokenIssued
        )
    );
    let in_execution = acct
        .executions
        .values()
        .any(|e| !e.state.is_finished() && e.steps.iter().any(|s| s.plan.instance_id == i.id));
    has_agent(i)
        && i.status == InstanceStatus::Enrolled
        && i.cluster_id.is_none()
        && !busy
        && !in_execution
}

/// `i` as a node of a plan working on `module`: its node name, cluster,
/// the quorum of its cluster when it is a control-plane server there, and
/// the VIPs it holds.
fn candidate(acct: &AccountState, i: &Instance, module: K3sModule) -> Candidate {
    let node_name = acct
        .nodes
        .get(&i.node_id)
        .map(|n| n.hostname.clone())
        .or_else(|| i.node_name.clone())
        .unwrap_or_else(|| i.id.clone());
    let quorum_of = i.cluster_id.as_deref().and_then(|c| {
        let rows = acct.k8s_nodes.get(c)?;
        let mine = rows.get(&i.id)?;
        if mine.role != NodeRole::ControlPlane {
            return None;
        }
        let ready = rows
            .values()
            .filter(|r| r.role == NodeRole::ControlPlane && r.status == K8sNodeStatus::Ready)
            .count();
        Some(ready.max(1))
    });
    let mut vip_moves: Vec<PlannedVipMove> = acct
        .virtual_ips
        .values()
        .filter(|v| v.status == VipStatus::Allocated)
        .filter(|v| {
            acct.peers
                .get(&v.holder_peer_id)
                .is_some_and(|p| p.instance_id == i.id)
        })
        .map(|v| PlannedVipMove {
            virtual_ip_id: v.id.clone(),
            vip: v.vip.to_string(),
        })
        .collect();
    vip_moves.sort_by(|a, b| a.virtual_ip_id.cmp(&b.virtual_ip_id));
    Candidate {
        instance_id: i.id.clone(),
        node_name,
        role: module,
        cluster_id: i.cluster_id.clone(),
        quorum_of,
        vip_moves,
        from_version_id: None,
        to_version_id: None,
        extra_flags: Vec::new(),
    }
}
