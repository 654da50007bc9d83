//! Each action's arguments and their types, as its argument struct declares them.

use super::*;

/// The type of one argument, as the action's argument struct declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ty {
    /// `String`, required.
    Str,
    /// `Option<String>`.
    OptStr,
    /// `u64` / `usize`, required.
    Int,
    /// `Option<u64>` / `Option<usize>`.
    OptInt,
    /// `bool` with a default.
    OptBool,
    /// `Vec<String>`, required.
    List,
    /// `Vec<String>` with a default.
    OptList,
    /// `BTreeMap<String, String>` with a default.
    OptMap,
    /// A snake_case enum with a default (`cni_plugin`, `routing_mode`).
    OptEnum,
    /// Any JSON (`since`): never given a "wrong" value.
    Any,
}

impl Ty {
    pub(super) fn required(self) -> bool {
        matches!(self, Ty::Str | Ty::Int | Ty::List)
    }
}

/// The arguments of every action. The test fails when an action of the
/// table has no entry here, so a new action is covered from day one.
pub(super) fn spec(action: &str) -> Option<&'static [(&'static str, Ty)]> {
    use Ty::*;
    Some(match action {
        "system_create_account" => &[("name", Str)],
        "system_create_operator_token" => &[
            ("account_id", Str),
            ("permissions", List),
            ("ttl_secs", OptInt),
        ],
        "system_revoke_operator_token" => &[("token_id", Str)],
        "system_list_operator_tokens" => &[("account_id", OptStr)],
        "system_create_template" => &[("name", Str)],
        "system_get_template" => &[("id", Str)],
        "system_assign_module_to_template" => &[
            ("template_id", Str),
            ("module_name", Str),
            ("config", OptMap),
            ("module_version_id", OptStr),
        ],
        "system_create_node" => &[
            ("hostname", Str),
            ("node_template_id", Str),
            ("memory_mb", Int),
        ],
        "system_provision_instance" => &[("node_id", Str), ("cni_plugin", OptEnum)],
        "recent_events" => &[
            ("kind_prefix", OptStr),
            ("limit", OptInt),
            ("since", Any),
            ("cluster", OptStr),
            ("instance", OptStr),
        ],
        "system_state_hash" => &[],
        "system_sdwan_create_network" => &[
            ("name", Str),
            ("pod_subnet_prefix", OptStr),
            ("routing_mode", OptEnum),
        ],
        "system_sdwan_attach_peer" => &[
            ("network_id", Str),
            ("node_instance_id", Str),
            ("lan_subnets", OptList),
        ],
        "kubernetes_list_clusters" => &[("include_decommissioned", OptBool)],
        "kubernetes_get_cluster" => &[("id", Str)],
        "kubernetes_list_nodes"
        | "kubernetes_get_kubeconfig"
        | "kubernetes_decommission_cluster"
        | "kubernetes_rotate_join_token" => &[("cluster_id", Str)],
        "system_sdwan_get_virtual_ip" => {
            &[("id", OptStr), ("cluster_id", OptStr), ("name", OptStr)]
        }
        "system_sdwan_list_networks" | "system_list_instances" => &[],
        "system_sdwan_get_peer_config" => &[("peer_id", Str)],
        "system_sdwan_update_network" => &[("network_id", Str), ("pod_subnet_prefix", Str)],
        "system_drain_instance" | "system_terminate_instance" => &[("id", Str)],
        "system_list_templates" => &[],
        "system_list_nodes" => &[("template_id", OptStr)],
        "system_sdwan_list_peers" => &[("network_id", OptStr)],
        "system_list_approvals" => &[("status", OptStr)],
        "system_approve" | "system_reject" => &[("approval_id", Str), ("reason", OptStr)],
        "system_sdwan_failover_virtual_ip" => &[
            ("virtual_ip_id", Str),
            ("dry_run", OptBool),
            ("to_peer_id", OptStr),
        ],
        "system_sdwan_create_access_grant" => &[
            ("network_id", Str),
            ("name", Str),
            ("public_key", OptStr),
            ("ttl_secs", OptInt),
        ],
        "system_sdwan_list_access_grants" => &[("network_id", OptStr)],
        "system_sdwan_revoke_access_grant" => &[("grant_id", Str)],
        "system_create_module_version" => {
            &[("module_name", Str), ("version", Str), ("k3s_version", Str)]
        }
        "system_list_modules" | "system_whoami" => &[],
        // `inputs` is any JSON object (each skill reads its own).
        "execute_skill" => &[("skill", Str), ("inputs", Any), ("dry_run", OptBool)],
        "system_get_skill_execution"
        | "system_pause_skill_execution"
        | "system_resume_skill_execution"
        | "system_cancel_skill_execution" => &[("execution_id", Str), ("reason", OptStr)],
        "system_list_skill_executions" => &[("skill", OptStr), ("status", OptEnum)],
        "agent_introspect" => &[("agent_id", Str)],
        _ => return None,
    })
}

/// A well-typed value for a required field (the rest of a body is broken).
pub(super) fn filler(field: &str, ty: Ty) -> String {
    match (field, ty) {
        (_, Ty::Int) => "2048".into(),
        (_, Ty::List) => "[]".into(),
        ("module_name", _) => json!("k3s-server").to_string(),
        ("pod_subnet_prefix", _) => json!("10.77.0.0/16").to_string(),
        ("name" | "hostname", _) => json!("hb-name").to_string(),
        _ => json!("hb-0190-no-such-object").to_string(),
    }
}

/// True for a field that names an object by id.
pub(super) fn is_id(field: &str) -> bool {
    field == "id" || field.ends_with("_id")
}
