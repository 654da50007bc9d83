//! # powernode-actions — the operator actions as types
//!
//! Every action of `POST /v1/actions/<name>` is defined once, in the table
//! at the bottom of this file: its name, the permission it needs, its
//! argument type, its answer type and the error codes it may answer. The
//! server's dispatch, its list of known actions and its 404 message come
//! from that table ([`for_each_action!`], [`ActionName`]); clients, the
//! OpenAPI document and MCP tools are to be made from it ([`schemas`]).
//!
//! * [`Action`] — one zero-sized type per action (e.g. [`CreateTemplate`]);
//! * [`ActionName`] — every action by name;
//! * [`ErrorCode`] — every error code operators are answered with;
//! * [`Permission`] — every permission an operator token may carry;
//! * one module per area with the argument and answer types
//!   ([`templates::CreateTemplateArgs`], [`templates::TemplateAnswer`], …).
//!
//! Answers are `{"data": <answer>}`, refusals `{"error": {"code",
//! "message"}}` with the code's HTTP status.
//!
//! This crate must never do I/O or decide anything: no tokio, no HTTP, no
//! log, no projections — only the shapes both sides of the API agree on.

pub mod accounts;
pub mod approvals;
pub mod clusters;
pub mod effect;
pub mod error;
pub mod events;
pub mod grants;
pub mod instances;
pub mod introspect;
pub mod kubeconfig;
pub mod modules;
pub mod permission;
pub mod sdwan;
pub mod skills;
pub mod templates;
pub mod vips;

pub use error::{ErrorCode, UnknownErrorCode};
pub use permission::{Permission, UnknownPermission};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// One operator action: `POST /v1/actions/<NAME>` with [`Action::Args`]
/// as the JSON body, answered with [`Action::Answer`] under `data`.
pub trait Action {
    /// The action's name, e.g. `system_create_template`.
    const NAME: &'static str;
    /// The same as an [`ActionName`].
    const ACTION: ActionName;
    /// The permission a token must carry to call it at all (the admin's
    /// carries every one); `None`: any token of the account may.
    const PERMISSION: Option<Permission>;
    /// The error codes of this action's own refusals, on top of
    /// [`ErrorCode::ANY_ACTION`].
    const ERRORS: &'static [ErrorCode];
    /// What it is for (the table's doc comment).
    const DESCRIPTION: &'static str;
    /// Its arguments (a JSON object; unknown fields are refused).
    type Args: Serialize + DeserializeOwned + schemars::JsonSchema + Send + 'static;
    /// Its answer.
    type Answer: Serialize + DeserializeOwned + schemars::JsonSchema + Send + 'static;
}

/// An action's JSON Schemas and what else describes it, for generated
/// documents (OpenAPI, MCP tools).
#[derive(Debug, Clone)]
pub struct ActionSchema {
    /// The action.
    pub action: ActionName,
    /// What it is for.
    pub description: String,
    /// The permission it needs, if any.
    pub permission: Option<Permission>,
    /// Its own error codes (on top of [`ErrorCode::ANY_ACTION`]).
    pub errors: &'static [ErrorCode],
    /// JSON Schema of its arguments.
    pub args: schemars::Schema,
    /// JSON Schema of its answer (what is under `data`).
    pub answer: schemars::Schema,
}

impl ActionSchema {
    /// The schemas of `A`.
    pub fn of<A: Action>() -> Self {
        Self {
            action: A::ACTION,
            description: A::DESCRIPTION
                .lines()
                .map(str::trim)
                .collect::<Vec<_>>()
                .join("\n")
                .trim()
                .to_string(),
            permission: A::PERMISSION,
            errors: A::ERRORS,
            args: schemars::schema_for!(A::Args),
            answer: schemars::schema_for!(A::Answer),
        }
    }
}

/// A name that is no action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownAction(pub String);

impl std::fmt::Display for UnknownAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown action {:?}", self.0)
    }
}

impl std::error::Error for UnknownAction {}

impl std::fmt::Display for ActionName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Declares the actions from the table: a zero-sized type and an
/// [`Action`] impl each, [`ActionName`], [`NAMES`] and
/// [`for_each_action!`]. `$d` is a `$` token, so that the generated macro
/// can have metavariables of its own.
macro_rules! actions {
    ($d:tt $(
        $(#[doc = $doc:literal])*
        $ty:ident = $name:literal {
            permission: $perm:expr,
            args: $args:ty,
            answer: $answer:ty,
            errors: [$($err:ident),* $(,)?] $(,)?
        }
    )*) => {
        $(
            $(#[doc = $doc])*
            ///
            #[doc = concat!("`", $name, "`.")]
            #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
            pub struct $ty;

            impl Action for $ty {
                const NAME: &'static str = $name;
                const ACTION: ActionName = ActionName::$ty;
                const PERMISSION: Option<Permission> = $perm;
                const ERRORS: &'static [ErrorCode] = &[$(ErrorCode::$err),*];
                const DESCRIPTION: &'static str = concat!($($doc, "\n"),*);
                type Args = $args;
                type Answer = $answer;
            }
        )*

        /// Every action, by name. Serializes as its name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
        pub enum ActionName {
            $(
                $(#[doc = $doc])*
                #[serde(rename = $name)]
                $ty,
            )*
        }

        /// Every action's name, in table order.
        pub const NAMES: &[&str] = &[$($name),*];

        impl ActionName {
            /// Every action, in table order.
            pub const ALL: &'static [ActionName] = &[$(ActionName::$ty),*];

            /// The name, e.g. `system_create_template`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( ActionName::$ty => $name, )*
                }
            }

            /// The permission it needs ([`Action::PERMISSION`]).
            pub const fn permission(self) -> Option<Permission> {
                match self {
                    $( ActionName::$ty => <$ty as Action>::PERMISSION, )*
                }
            }

            /// Its own error codes ([`Action::ERRORS`]).
            pub const fn errors(self) -> &'static [ErrorCode] {
                match self {
                    $( ActionName::$ty => <$ty as Action>::ERRORS, )*
                }
            }
        }

        impl std::str::FromStr for ActionName {
            type Err = UnknownAction;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $name => Ok(ActionName::$ty), )*
                    _ => Err(UnknownAction(s.to_string())),
                }
            }
        }

        /// Calls the macro `$callback` with every action's type name, in
        /// table order: `callback! { CreateAccount CreateOperatorToken … }`.
        /// The types are this crate's (`powernode_actions::CreateAccount`)
        /// and the same idents are [`ActionName`]'s variants, so a server
        /// generates its dispatch from it and misses none.
        #[macro_export]
        macro_rules! for_each_action {
            ($d callback:ident) => { $d callback! { $($ty)* } };
        }
    };
}

actions! { $
    /// Creates an account (admin only).
    CreateAccount = "system_create_account" {
        permission: Some(Permission::Admin),
        args: accounts::CreateAccountArgs,
        answer: accounts::CreateAccountAnswer,
        errors: [Forbidden, IdTaken, InvalidEvent, Unavailable, LogError],
    }
    /// Issues an operator token for an account (admin only); the answer
    /// shows the token this once.
    CreateOperatorToken = "system_create_operator_token" {
        permission: Some(Permission::Admin),
        args: accounts::CreateOperatorTokenArgs,
        answer: accounts::CreateOperatorTokenAnswer,
        errors: [Forbidden, NotFound, IdTaken, InvalidEvent, Unavailable, LogError],
    }
    /// Revokes an operator token (admin only); it is refused from its next
    /// call on. A token cannot revoke itself.
    RevokeOperatorToken = "system_revoke_operator_token" {
        permission: Some(Permission::Admin),
        args: accounts::RevokeOperatorTokenArgs,
        answer: accounts::RevokeOperatorTokenAnswer,
        errors: [Forbidden, NotFound, Conflict, IdTaken, InvalidEvent, Unavailable, LogError],
    }
    /// Lists operator tokens, one account's or all (admin only); never a
    /// token itself.
    ListOperatorTokens = "system_list_operator_tokens" {
        permission: Some(Permission::Admin),
        args: accounts::ListOperatorTokensArgs,
        answer: accounts::ListOperatorTokensAnswer,
        errors: [Forbidden, NotFound],
    }
    /// Who the presented token is: its account, id and permissions (the
    /// admin also sees which other accounts hold objects).
    Whoami = "system_whoami" {
        permission: None,
        args: accounts::WhoamiArgs,
        answer: accounts::WhoamiAnswer,
        errors: [],
    }
    /// Creates a node template.
    CreateTemplate = "system_create_template" {
        permission: Some(Permission::KubernetesProvision),
        args: templates::CreateTemplateArgs,
        answer: templates::TemplateAnswer,
        errors: [Forbidden, NotFound, IdTaken, InvalidEvent, Unavailable, LogError],
    }
    /// One node template with its module assignments.
    GetTemplate = "system_get_template" {
        permission: None,
        args: templates::GetTemplateArgs,
        answer: templates::TemplateAnswer,
        errors: [NotFound],
    }
    /// Assigns a k3s module (`k3s-server` or `k3s-agent`) to a template.
    AssignModuleToTemplate = "system_assign_module_to_template" {
        permission: Some(Permission::KubernetesProvision),
        args: templates::AssignModuleArgs,
        answer: templates::TemplateAnswer,
        errors: [Forbidden, NotFound, VersionOfAnotherModule, IdTaken, InvalidEvent, Unavailable, LogError],
    }
    /// The account's node templates, oldest first, with their module
    /// assignments.
    ListTemplates = "system_list_templates" {
        permission: None,
        args: templates::ListTemplatesArgs,
        answer: templates::ListTemplatesAnswer,
        errors: [],
    }
    /// Creates a node following a template.
    CreateNode = "system_create_node" {
        permission: Some(Permission::KubernetesProvision),
        args: instances::CreateNodeArgs,
        answer: instances::CreateNodeAnswer,
        errors: [Forbidden, NotFound, IdTaken, InvalidEvent, Unavailable, LogError],
    }
    /// Provisions an instance on a node; the answer shows its agent's
    /// enrollment credential this once.
    ProvisionInstance = "system_provision_instance" {
        permission: Some(Permission::KubernetesProvision),
        args: instances::ProvisionInstanceArgs,
        answer: instances::ProvisionInstanceAnswer,
        errors: [Forbidden, NotFound, CniProfileMismatch, IdTaken, InvalidEvent, Unavailable, LogError],
    }
    /// The account's events, oldest first: the newest `limit`, or the first
    /// `limit` from `since`, optionally only a kind prefix, a cluster or an
    /// instance.
    RecentEvents = "recent_events" {
        permission: None,
        args: events::RecentEventsArgs,
        answer: events::RecentEventsAnswer,
        errors: [Unavailable, LogError],
    }
    /// The digest of the API's fleet state and the sequence it has applied
    /// through (admin only: it covers every account).
    StateHash = "system_state_hash" {
        permission: Some(Permission::Admin),
        args: events::StateHashArgs,
        answer: events::StateHashAnswer,
        errors: [Forbidden],
    }
    /// Creates an SD-WAN network: an overlay /64 and a VIP range from the
    /// account's address space, optionally a pod subnet prefix.
    CreateNetwork = "system_sdwan_create_network" {
        permission: Some(Permission::KubernetesProvision),
        args: sdwan::CreateNetworkArgs,
        answer: sdwan::CreateNetworkAnswer,
        errors: [Forbidden, PrefixOverlap, Exhausted, IdTaken, InvalidEvent, Unavailable, LogError],
    }
    /// Attaches an instance to a network as a peer (attaching twice
    /// answers the same peer).
    AttachPeer = "system_sdwan_attach_peer" {
        permission: Some(Permission::KubernetesProvision),
        args: sdwan::AttachPeerArgs,
        answer: sdwan::AttachPeerAnswer,
        errors: [Forbidden, NotFound, PrefixOverlap, IdTaken, InvalidEvent, Unavailable, LogError],
    }
    /// The account's clusters, oldest first.
    ListClusters = "kubernetes_list_clusters" {
        permission: None,
        args: clusters::ListClustersArgs,
        answer: clusters::ListClustersAnswer,
        errors: [Unavailable],
    }
    /// One cluster.
    GetCluster = "kubernetes_get_cluster" {
        permission: None,
        args: clusters::GetClusterArgs,
        answer: clusters::GetClusterAnswer,
        errors: [NotFound],
    }
    /// A cluster's Kubernetes nodes.
    ListNodes = "kubernetes_list_nodes" {
        permission: None,
        args: clusters::ListNodesArgs,
        answer: clusters::ListNodesAnswer,
        errors: [NotFound],
    }
    /// A cluster's kubeconfig, pointed at its API endpoint (the retrieval
    /// is recorded in the log).
    GetKubeconfig = "kubernetes_get_kubeconfig" {
        permission: Some(Permission::KubernetesKubeconfig),
        args: kubeconfig::GetKubeconfigArgs,
        answer: kubeconfig::GetKubeconfigAnswer,
        errors: [Forbidden, NotFound, ClusterDecommissioned, KubeconfigUnavailable, IdTaken, InvalidEvent, Unavailable, LogError],
    }
    /// Decommissions a cluster: its node rows go, its VIP is released, its
    /// instances are kept, its join token and kubeconfig are deleted.
    DecommissionCluster = "kubernetes_decommission_cluster" {
        permission: Some(Permission::KubernetesDecommission),
        args: clusters::DecommissionClusterArgs,
        answer: clusters::DecommissionClusterAnswer,
        errors: [Forbidden, NotFound, AlreadyDecommissioned, Conflict, IdTaken, InvalidEvent, Unavailable, LogError],
    }
    /// Gives a cluster a new join token; agents holding the old one are
    /// refused and ask again.
    RotateJoinToken = "kubernetes_rotate_join_token" {
        permission: Some(Permission::KubernetesProvision),
        args: kubeconfig::RotateJoinTokenArgs,
        answer: kubeconfig::RotateJoinTokenAnswer,
        errors: [Forbidden, NotFound, ClusterDecommissioned, Conflict, IdTaken, InvalidEvent, Unavailable, LogError],
    }
    /// One virtual IP, by id, cluster or name.
    GetVirtualIp = "system_sdwan_get_virtual_ip" {
        permission: None,
        args: vips::GetVirtualIpArgs,
        answer: vips::GetVirtualIpAnswer,
        errors: [NotFound, Ambiguous],
    }
    /// The account's SD-WAN networks, oldest first.
    ListNetworks = "system_sdwan_list_networks" {
        permission: None,
        args: sdwan::ListNetworksArgs,
        answer: sdwan::ListNetworksAnswer,
        errors: [],
    }
    /// One peer's WireGuard config: what the platform wants on its
    /// interface (public keys only) and the revision its agent applied.
    GetPeerConfig = "system_sdwan_get_peer_config" {
        permission: None,
        args: sdwan::GetPeerConfigArgs,
        answer: sdwan::GetPeerConfigAnswer,
        errors: [NotFound],
    }
    /// Sets a network's pod subnet prefix (never once a live cluster uses it).
    UpdateNetwork = "system_sdwan_update_network" {
        permission: Some(Permission::KubernetesProvision),
        args: sdwan::UpdateNetworkArgs,
        answer: sdwan::UpdateNetworkAnswer,
        errors: [Forbidden, NotFound, PodSubnetPrefixImmutable, PrefixOverlap, IdTaken, InvalidEvent, Unavailable, LogError],
    }
    /// The account's SD-WAN peers (or one network's), oldest first, with
    /// their instance's hostname.
    ListPeers = "system_sdwan_list_peers" {
        permission: None,
        args: sdwan::ListPeersArgs,
        answer: sdwan::ListPeersAnswer,
        errors: [NotFound],
    }
    /// The account's instances, oldest first.
    ListInstances = "system_list_instances" {
        permission: None,
        args: instances::ListInstancesArgs,
        answer: instances::ListInstancesAnswer,
        errors: [],
    }
    /// Drains an instance for maintenance; draining one that holds a VIP
    /// moves the VIP and needs `system.sdwan_failover` too.
    DrainInstance = "system_drain_instance" {
        permission: Some(Permission::KubernetesProvision),
        args: instances::InstanceIdArgs,
        answer: instances::InstanceStatusAnswer,
        errors: [Forbidden, NotFound, Conflict, IdTaken, InvalidEvent, Unavailable, LogError],
    }
    /// Terminates an instance (final).
    TerminateInstance = "system_terminate_instance" {
        permission: Some(Permission::KubernetesProvision),
        args: instances::InstanceIdArgs,
        answer: instances::InstanceStatusAnswer,
        errors: [Forbidden, NotFound, Conflict, IdTaken, InvalidEvent, Unavailable, LogError],
    }
    /// The account's node definitions (or one template's), oldest first.
    ListSystemNodes = "system_list_nodes" {
        permission: None,
        args: instances::ListSystemNodesArgs,
        answer: instances::ListSystemNodesAnswer,
        errors: [NotFound],
    }
    /// Approval requests, the waiting ones by default.
    ListApprovals = "system_list_approvals" {
        permission: None,
        args: approvals::ListApprovalsArgs,
        answer: approvals::ListApprovalsAnswer,
        errors: [],
    }
    /// Grants an approval request.
    Approve = "system_approve" {
        permission: Some(Permission::SdwanFailover),
        args: approvals::DecideArgs,
        answer: approvals::ApprovalAnswer,
        errors: [Forbidden, NotFound, Expired, Superseded, AlreadyDecided, IdTaken, InvalidEvent, Unavailable, LogError],
    }
    /// Rejects an approval request, with a reason.
    Reject = "system_reject" {
        permission: Some(Permission::SdwanFailover),
        args: approvals::DecideArgs,
        answer: approvals::ApprovalAnswer,
        errors: [Forbidden, NotFound, Expired, Superseded, AlreadyDecided, IdTaken, InvalidEvent, Unavailable, LogError],
    }
    /// Scores a virtual IP's failover candidates (`dry_run`, any token), or
    /// promotes one now (needs `system.sdwan_failover`).
    FailoverVirtualIp = "system_sdwan_failover_virtual_ip" {
        permission: None,
        args: approvals::FailoverVirtualIpArgs,
        answer: approvals::FailoverVirtualIpAnswer,
        errors: [Forbidden, NotFound, Released, ClusterDecommissioned, NotACandidate, NoCandidate, Conflict, IdTaken, InvalidEvent, Unavailable, LogError],
    }
    /// Gives an operator's machine a WireGuard tunnel into a network: a
    /// /128 of its overlay and a wg-quick file whose one peer is the
    /// network's gateway (the key made by the caller, or by the platform
    /// and shown this once in the file).
    CreateAccessGrant = "system_sdwan_create_access_grant" {
        permission: Some(Permission::KubernetesProvision),
        args: grants::CreateAccessGrantArgs,
        answer: grants::CreateAccessGrantAnswer,
        errors: [Forbidden, NotFound, NoGateway, Exhausted, IdTaken, InvalidEvent, Unavailable, LogError],
    }
    /// The account's access grants (or one network's), oldest first, with
    /// their status.
    ListAccessGrants = "system_sdwan_list_access_grants" {
        permission: None,
        args: grants::ListAccessGrantsArgs,
        answer: grants::ListAccessGrantsAnswer,
        errors: [NotFound],
    }
    /// Revokes an access grant: its peer is removed everywhere.
    RevokeAccessGrant = "system_sdwan_revoke_access_grant" {
        permission: Some(Permission::KubernetesProvision),
        args: grants::RevokeAccessGrantArgs,
        answer: grants::RevokeAccessGrantAnswer,
        errors: [Forbidden, NotFound, AlreadyRevoked, Expired, IdTaken, InvalidEvent, Unavailable, LogError],
    }
    /// Adds a version to a module's catalog (`v-k3s-1.31.0`).
    CreateModuleVersion = "system_create_module_version" {
        permission: Some(Permission::KubernetesProvision),
        args: modules::CreateModuleVersionArgs,
        answer: modules::CreateModuleVersionAnswer,
        errors: [Forbidden, ModuleVersionExists, IdTaken, InvalidEvent, Unavailable, LogError],
    }
    /// The modules, their versions, and which instances run what.
    ListModules = "system_list_modules" {
        permission: None,
        args: modules::ListModulesArgs,
        answer: modules::ListModulesAnswer,
        errors: [],
    }
    /// Runs a skill (`system-rolling-module-upgrade`, `provision_cluster`);
    /// `dry_run` answers the plan and appends nothing.
    ExecuteSkill = "execute_skill" {
        permission: Some(Permission::KubernetesProvision),
        args: skills::ExecuteSkillArgs,
        answer: skills::ExecuteSkillAnswer,
        errors: [Forbidden, NotFound, UnknownSkill, VersionOfAnotherModule, NothingToUpgrade, ExecutionInProgress, NotEnoughInstances, Conflict, IdTaken, InvalidEvent, Unavailable, LogError],
    }
    /// One skill execution: its plan, steps and outcome.
    GetSkillExecution = "system_get_skill_execution" {
        permission: None,
        args: skills::ExecutionIdArgs,
        answer: skills::ExecutionAnswer,
        errors: [NotFound],
    }
    /// The account's skill executions, oldest first.
    ListSkillExecutions = "system_list_skill_executions" {
        permission: None,
        args: skills::ListExecutionsArgs,
        answer: skills::ListExecutionsAnswer,
        errors: [UnknownSkill],
    }
    /// Pauses an execution: steps under way finish, none starts.
    PauseSkillExecution = "system_pause_skill_execution" {
        permission: Some(Permission::KubernetesProvision),
        args: skills::ExecutionIdArgs,
        answer: skills::ExecutionAnswer,
        errors: [Forbidden, NotFound, ExecutionFinished, Conflict, InvalidEvent, Unavailable, LogError],
    }
    /// Resumes a paused execution where it was.
    ResumeSkillExecution = "system_resume_skill_execution" {
        permission: Some(Permission::KubernetesProvision),
        args: skills::ExecutionIdArgs,
        answer: skills::ExecutionAnswer,
        errors: [Forbidden, NotFound, ExecutionFinished, Conflict, InvalidEvent, Unavailable, LogError],
    }
    /// Cancels an execution: steps under way finish, then it is aborted.
    CancelSkillExecution = "system_cancel_skill_execution" {
        permission: Some(Permission::KubernetesProvision),
        args: skills::ExecutionIdArgs,
        answer: skills::ExecutionAnswer,
        errors: [Forbidden, NotFound, ExecutionFinished, Conflict, InvalidEvent, Unavailable, LogError],
    }
    /// What a platform service (each replica: cursor, lag, last error,
    /// checkpoint age, uptime) or a node agent (version, modules, handshake,
    /// heartbeat, WireGuard revision, errors) says about itself.
    AgentIntrospect = "agent_introspect" {
        permission: None,
        args: introspect::AgentIntrospectArgs,
        answer: introspect::AgentIntrospectAnswer,
        errors: [NotFound, Unavailable],
    }
}

// After the table: it uses `for_each_action!` (a macro-expanded macro,
// in scope only below its definition).
pub mod openapi;

/// Every action's schemas, in table order.
pub fn schemas() -> Vec<ActionSchema> {
    macro_rules! all_schemas {
        ($($ty:ident)*) => { vec![ $( ActionSchema::of::<$ty>(), )* ] };
    }
    for_each_action!(all_schemas)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn names_are_unique_and_parse_back() {
        let unique: BTreeSet<&str> = NAMES.iter().copied().collect();
        assert_eq!(unique.len(), NAMES.len(), "a name is in the table twice");
        assert_eq!(ActionName::ALL.len(), NAMES.len());
        for (action, name) in ActionName::ALL.iter().zip(NAMES) {
            assert_eq!(action.as_str(), *name);
            assert_eq!(name.parse::<ActionName>(), Ok(*action));
            assert_eq!(action.to_string(), *name);
            assert_eq!(
                serde_json::to_value(action).unwrap(),
                serde_json::json!(name)
            );
        }
        assert!("system_reboot".parse::<ActionName>().is_err());
    }

    #[test]
    fn every_action_has_both_schemas_and_a_description() {
        let all = schemas();
        assert_eq!(all.len(), ActionName::ALL.len());
        for (s, action) in all.iter().zip(ActionName::ALL) {
            assert_eq!(s.action, *action);
            assert!(!s.description.is_empty(), "{action} has no description");
            let args = serde_json::to_value(&s.args).unwrap();
            let answer = serde_json::to_value(&s.answer).unwrap();
            assert_eq!(args["type"], "object", "{action}: {args}");
            // Arguments refuse unknown fields.
            assert_eq!(args["additionalProperties"], false, "{action}: {args}");
            assert!(
                answer.is_object() && answer != serde_json::json!({}),
                "{action}: {answer}"
            );
            assert_eq!(s.permission, action.permission());
        }
    }

    #[test]
    fn forbidden_is_listed_where_a_permission_is_needed() {
        for action in ActionName::ALL {
            if action.permission().is_some() {
                assert!(action.errors().contains(&ErrorCode::Forbidden), "{action}");
            }
            let mut seen = BTreeSet::new();
            for code in action.errors() {
                assert!(seen.insert(code), "{action} lists {code} twice");
                assert!(
                    !ErrorCode::ANY_ACTION.contains(code),
                    "{action} lists {code}, which every action may answer"
                );
            }
        }
    }
}
