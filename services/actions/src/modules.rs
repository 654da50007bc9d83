//! The module catalog: `system_create_module_version`,
//! `system_list_modules`.
//!
//! Two modules exist, `mod-k3s-server` and `mod-k3s-agent`; each has
//! versions (`v-k3s-1.31.0`, `v-k3s-agent-1.31.0`: see
//! [`K3sModule::version_id`]) that name the k3s release they install. An
//! assignment pins a version; without one it gets the newest.

use powernode_events::payloads::k3s::K3sModule;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Arguments of `system_create_module_version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateModuleVersionArgs {
    /// `k3s-server` or `k3s-agent`.
    pub module_name: String,
    /// Dotted numbers, e.g. `1.31.0`.
    pub version: String,
    /// The k3s release it installs, e.g. `v1.31.0+k3s1`.
    pub k3s_version: String,
}

/// Answer of `system_create_module_version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CreateModuleVersionAnswer {
    /// The new version.
    pub module_version: ModuleVersion,
}

/// A version of a module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ModuleVersion {
    /// Version id, e.g. `v-k3s-1.31.0`.
    pub id: String,
    /// Module id, e.g. `mod-k3s-server`.
    pub module_id: String,
    /// Module name.
    pub module_name: K3sModule,
    /// The version, e.g. `1.31.0`.
    pub version: String,
    /// The k3s release, e.g. `v1.31.0+k3s1`.
    pub k3s_version: String,
    /// Sequence of its creation.
    pub created_seq: u64,
}

/// Arguments of `system_list_modules` (none).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListModulesArgs {}

/// Answer of `system_list_modules`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ListModulesAnswer {
    /// Both modules.
    pub modules: Vec<ModuleInfo>,
}

/// A module, its versions and who runs what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ModuleInfo {
    /// Module id, e.g. `mod-k3s-server`.
    pub id: String,
    /// Module name.
    pub name: K3sModule,
    /// Its versions, oldest first.
    pub versions: Vec<ModuleVersion>,
    /// The newest version (what an unpinned assignment gets).
    pub newest_version_id: Option<String>,
    /// The account's instances whose template has the module.
    pub instances: Vec<ModuleInstance>,
}

/// What one instance runs of a module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ModuleInstance {
    /// Instance id.
    pub instance_id: String,
    /// Its hostname.
    pub hostname: String,
    /// Its template.
    pub template_id: String,
    /// The version the platform has it on (its pin, then upgrades);
    /// `None`: unpinned.
    pub module_version_id: Option<String>,
    /// The k3s release it last reported running.
    pub k3s_version: Option<String>,
}
