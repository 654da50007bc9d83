//! Node templates: `system_create_template`, `system_get_template`,
//! `system_assign_module_to_template`.

use powernode_events::payloads::k3s::{K3sModule, ModuleConfig};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Arguments of `system_create_template`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTemplateArgs {
    /// Human name, 1-128 characters.
    pub name: String,
}

/// Arguments of `system_get_template`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetTemplateArgs {
    /// Template id.
    pub id: String,
}

/// Arguments of `system_assign_module_to_template`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignModuleArgs {
    /// Template id.
    pub template_id: String,
    /// `k3s-server` or `k3s-agent`.
    pub module_name: String,
    /// Module configuration, strings only: `target_cluster_id` (checked
    /// when the agent asks to join); other keys are kept verbatim.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// The catalog version to pin (`v-k3s-1.31.0`); without it, the
    /// module's newest version (unpinned when the catalog has none).
    #[serde(default)]
    pub module_version_id: Option<String>,
}

/// Answer of `system_create_template`, `system_get_template` and
/// `system_assign_module_to_template`: the template as it is now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TemplateAnswer {
    /// The template.
    pub template: Template,
}

/// A node template and the modules assigned to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
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
    /// Assignments for one instance only, by instance id (they override
    /// the template-wide one of the same module).
    #[serde(default)]
    pub instance_assignments: std::collections::BTreeMap<String, Vec<ModuleAssignment>>,
}

/// One module assigned to a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModuleAssignment {
    /// Assignment id.
    pub assignment_id: String,
    /// Module.
    pub module_name: K3sModule,
    /// Configuration as the operator gave it.
    pub config: ModuleConfig,
    /// Sequence of the assigning event.
    pub assigned_seq: u64,
    /// The catalog version it pins (`v-k3s-1.31.0`); `None`: unpinned.
    #[serde(default)]
    pub module_version_id: Option<String>,
    /// The one instance it is for (`None`: every instance of the template).
    #[serde(default)]
    pub instance_id: Option<String>,
}

/// Arguments of `system_list_templates` (none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListTemplatesArgs {}

/// Answer of `system_list_templates`, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ListTemplatesAnswer {
    /// The account's templates with their module assignments.
    pub templates: Vec<Template>,
}
