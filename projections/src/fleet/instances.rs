//! Templates (with their k3s module assignments), nodes, instances and the
//! per-instance view of the k3s handshake.

use super::AccountState;
use powernode_events::payloads::fleet::{
    AgentEnrolled, CniPlugin, InstanceDrained, InstanceProvisioned, InstanceTerminated,
    NodeCreated, TemplateCreated,
};
use powernode_events::payloads::k3s::{K3sModule, ModuleAssigned, ModuleConfig};
use serde::{Deserialize, Serialize};

/// A node template and the modules assigned to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Template {
    /// Template id.
    pub id: String,
    /// Human name.
    pub name: String,
    /// Sequence of the creating event.
    pub created_seq: u64,
    /// Current module assignments, at most one per module, in the order the
    /// modules were first assigned.
    pub module_assignments: Vec<ModuleAssignment>,
    /// Assignments for one instance of the template only (provision_cluster
    /// gives its bootstrap server and its joiners different configs): they
    /// override the template-wide assignment of the same module.
    #[serde(default)]
    pub instance_assignments: std::collections::BTreeMap<String, Vec<ModuleAssignment>>,
}

impl Template {
    /// The current template-wide assignment of `module`, if any.
    pub fn assignment(&self, module: K3sModule) -> Option<&ModuleAssignment> {
        self.module_assignments
            .iter()
            .find(|a| a.module_name == module)
    }

    /// The assignment of `module` that applies to `instance_id`: its own,
    /// else the template-wide one.
    pub fn assignment_for(
        &self,
        instance_id: &str,
        module: K3sModule,
    ) -> Option<&ModuleAssignment> {
        self.instance_assignments
            .get(instance_id)
            .and_then(|v| v.iter().find(|a| a.module_name == module))
            .or_else(|| self.assignment(module))
    }

    /// Every assignment that applies to `instance_id`, one per module, in
    /// the template's module order (then the instance's own modules).
    pub fn assignments_for(&self, instance_id: &str) -> Vec<&ModuleAssignment> {
        let mut out: Vec<&ModuleAssignment> = Vec::new();
        let mut modules: Vec<K3sModule> = self
            .module_assignments
            .iter()
            .map(|a| a.module_name)
            .collect();
        if let Some(own) = self.instance_assignments.get(instance_id) {
            for a in own {
                if !modules.contains(&a.module_name) {
                    modules.push(a.module_name);
                }
            }
        }
        for m in modules {
            if let Some(a) = self.assignment_for(instance_id, m) {
                out.push(a);
            }
        }
        out
    }
}

/// One module assigned to a template (`system.k3s.module.assigned`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModuleAssignment {
    /// Assignment id.
    pub assignment_id: String,
    /// Module.
    pub module_name: K3sModule,
    /// Configuration as the operator gave it (`target_cluster_id` …).
    pub config: ModuleConfig,
    /// Sequence of the assigning event.
    pub assigned_seq: u64,
    /// The catalog version it pins (the newest at assignment time when the
    /// operator named none; `None`: unpinned).
    #[serde(default)]
    pub module_version_id: Option<String>,
    /// The one instance it is for (`None`: every instance of the template).
    #[serde(default)]
    pub instance_id: Option<String>,
}

/// A node definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// Lifecycle of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The cluster its latest bootstrap report creates (derived from the
    /// report's event id), and the fingerprint of the token it reported.
    pub bootstrap: Option<BootstrapReport>,
    /// Sequence of the event that set `k3s_phase`.
    pub phase_seq: u64,
    /// Sequence of the provisioning event.
    pub provisioned_seq: u64,
    /// Capabilities its config needs that its agent lacks
    /// (`system.agent.outdated`; empty: none known).
    #[serde(default)]
    pub outdated_capabilities: Vec<String>,
}

/// What a bootstrap server reported (`system.k3s.handshake.bootstrap`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapReport {
    /// The cluster the report creates.
    pub cluster_id: String,
    /// `sha256:<hex>` of the node (join) token.
    pub node_token_fingerprint: String,
    /// Sequence of the report.
    pub seq: u64,
}

/// `system.template.created` (first creation wins).
pub(super) fn template_created(account: &mut AccountState, seq: u64, p: &TemplateCreated) {
    account
        .templates
        .entry(p.template_id.clone())
        .or_insert_with(|| Template {
            id: p.template_id.clone(),
            name: p.name.clone(),
            created_seq: seq,
            module_assignments: Vec::new(),
            instance_assignments: Default::default(),
        });
}

/// `system.k3s.module.assigned`: replaces the template's assignment of the
/// same module (or the same assignment id), else appends. Unknown templates
/// are ignored.
pub(super) fn module_assigned(account: &mut AccountState, seq: u64, p: &ModuleAssigned) {
    let Some(template) = account.templates.get_mut(&p.template_id) else {
        return;
    };
    let assignment = ModuleAssignment {
        assignment_id: p.assignment_id.clone(),
        module_name: p.module_name,
        config: p.config.clone(),
        assigned_seq: seq,
        module_version_id: p.module_version_id.clone(),
        instance_id: p.instance_id.clone(),
    };
    let list = match &p.instance_id {
        Some(instance) => template
            .instance_assignments
            .entry(instance.clone())
            .or_default(),
        None => &mut template.module_assignments,
    };
    match list
        .iter_mut()
        .find(|a| a.module_name == p.module_name || a.assignment_id == p.assignment_id)
    {
        Some(existing) => *existing = assignment,
        None => list.push(assignment),
    }
}

/// `system.node.created` (first creation wins).
pub(super) fn node_created(account: &mut AccountState, seq: u64, p: &NodeCreated) {
    account
        .nodes
        .entry(p.node_id.clone())
        .or_insert_with(|| Node {
            id: p.node_id.clone(),
            hostname: p.hostname.clone(),
            template_id: p.template_id.clone(),
            memory_mb: p.memory_mb,
            created_seq: seq,
        });
}

/// `system.instance.provisioned` (first provisioning of an id wins).
/// Returns true when the instance is new.
pub(super) fn instance_provisioned(
    account: &mut AccountState,
    seq: u64,
    p: &InstanceProvisioned,
) -> bool {
    if account.instances.contains_key(&p.instance_id) {
        return false;
    }
    account.instances.insert(
        p.instance_id.clone(),
        Instance {
            id: p.instance_id.clone(),
            node_id: p.node_id.clone(),
            template_id: p.template_id.clone(),
            cni_plugin: p.cni_plugin,
            enrollment_fingerprint: p.enrollment_fingerprint.clone(),
            public_key: None,
            status: InstanceStatus::Provisioned,
            k3s_phase: None,
            k3s_version: None,
            cluster_id: None,
            node_name: None,
            last_join_rejection: None,
            last_bootstrap_rejection: None,
            bootstrap: None,
            phase_seq: 0,
            provisioned_seq: seq,
            outdated_capabilities: Vec::new(),
        },
    );
    true
}

/// `system.agent.enrolled`: records the key (a re-enrollment replaces it).
/// Ignored for unknown or terminated instances.
pub(super) fn agent_enrolled(account: &mut AccountState, p: &AgentEnrolled) {
    let Some(instance) = account.instances.get_mut(&p.instance_id) else {
        return;
    };
    if instance.status == InstanceStatus::Terminated {
        return;
    }
    instance.public_key = Some(p.public_key.clone());
    if instance.status == InstanceStatus::Provisioned {
        instance.status = InstanceStatus::Enrolled;
    }
}

/// `system.instance.drained` (a terminated instance stays terminated).
pub(super) fn instance_drained(account: &mut AccountState, p: &InstanceDrained) {
    if let Some(instance) = account.instances.get_mut(&p.instance_id) {
        if instance.status != InstanceStatus::Terminated {
            instance.status = InstanceStatus::Drained;
        }
    }
}

/// `system.instance.terminated`.
pub(super) fn instance_terminated(account: &mut AccountState, p: &InstanceTerminated) {
    if let Some(instance) = account.instances.get_mut(&p.instance_id) {
        instance.status = InstanceStatus::Terminated;
    }
    // A terminated instance holds nothing any more.
    for peer in account
        .instance_peers
        .get(&p.instance_id)
        .cloned()
        .unwrap_or_default()
    {
        for vip_id in account.peer_holdings.remove(&peer).unwrap_or_default() {
            if let Some(vip) = account.virtual_ips.get_mut(&vip_id) {
                vip.applied.remove(&peer);
            }
        }
    }
}

/// Records a handshake phase on an instance; `f` adds what the phase carries.
pub(super) fn record_phase(
    account: &mut AccountState,
    seq: u64,
    instance_id: &str,
    phase: K3sPhase,
    f: impl FnOnce(&mut Instance),
) {
    if let Some(instance) = account.instances.get_mut(instance_id) {
        instance.k3s_phase = Some(phase);
        instance.phase_seq = seq;
        if matches!(
            phase,
            K3sPhase::Bootstrap | K3sPhase::JoinTokenIssued | K3sPhase::Ready
        ) {
            instance.last_join_rejection = None;
            instance.last_bootstrap_rejection = None;
        }
        f(instance);
    }
}
