//! What an action does to the fleet: reads, writes, or destroys. MCP tools
//! are annotated from it (`readOnlyHint`, `destructiveHint`) and destructive
//! ones need a confirmation step. The match is exhaustive on purpose: a new
//! action cannot be added without being classified here.

use crate::ActionName;
use serde_json::Value;

/// An action's effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Changes nothing (an audit event may be appended, e.g. a kubeconfig
    /// retrieval).
    Read,
    /// Adds or changes something that can be undone or is additive.
    Write,
    /// Removes, ends or decides something for good (or moves traffic).
    Destructive,
}

impl ActionName {
    /// The action's effect in general; [`ActionName::effect_of`] refines it
    /// with the arguments (a failover `dry_run` only reads).
    pub const fn effect(self) -> Effect {
        use ActionName as A;
        match self {
            A::Whoami
            | A::ListOperatorTokens
            | A::GetTemplate
            | A::RecentEvents
            | A::StateHash
            | A::ListClusters
            | A::GetCluster
            | A::ListNodes
            | A::GetKubeconfig
            | A::GetVirtualIp
            | A::ListNetworks
            | A::GetPeerConfig
            | A::ListInstances
            | A::ListApprovals
            | A::ListAccessGrants
            | A::ListModules
            | A::GetSkillExecution
            | A::ListSkillExecutions
            | A::AgentIntrospect
            | A::ListTemplates
            | A::ListPeers
            | A::ListSystemNodes => Effect::Read,
            A::CreateAccount
            | A::CreateOperatorToken
            | A::CreateTemplate
            | A::AssignModuleToTemplate
            | A::CreateNode
            | A::ProvisionInstance
            | A::CreateNetwork
            | A::AttachPeer
            | A::RotateJoinToken
            | A::UpdateNetwork
            | A::DrainInstance
            | A::CreateAccessGrant
            | A::CreateModuleVersion
            | A::ExecuteSkill
            | A::PauseSkillExecution
            | A::ResumeSkillExecution
            | A::CancelSkillExecution => Effect::Write,
            A::DecommissionCluster
            | A::TerminateInstance
            | A::FailoverVirtualIp
            | A::Approve
            | A::Reject
            | A::RevokeOperatorToken
            | A::RevokeAccessGrant => Effect::Destructive,
        }
    }

    /// The effect of this call: a failover with `"dry_run": true` only
    /// scores candidates, so it is a read.
    pub fn effect_of(self, args: &Value) -> Effect {
        match self {
            ActionName::FailoverVirtualIp if args["dry_run"] == Value::Bool(true) => Effect::Read,
            _ => self.effect(),
        }
    }

    /// The argument naming the object a call acts on (`cluster_id`, `id`,
    /// …), if the action has one.
    pub const fn object_field(self) -> Option<&'static str> {
        use ActionName as A;
        match self {
            A::GetCluster => Some("id"),
            A::ListNodes | A::GetKubeconfig | A::DecommissionCluster | A::RotateJoinToken => {
                Some("cluster_id")
            }
            A::DrainInstance | A::TerminateInstance => Some("id"),
            A::FailoverVirtualIp => Some("virtual_ip_id"),
            A::Approve | A::Reject => Some("approval_id"),
            A::RevokeOperatorToken => Some("token_id"),
            A::RevokeAccessGrant => Some("grant_id"),
            A::UpdateNetwork => Some("network_id"),
            A::GetSkillExecution
            | A::PauseSkillExecution
            | A::ResumeSkillExecution
            | A::CancelSkillExecution => Some("execution_id"),
            _ => None,
        }
    }

    /// The id of the object this call acts on, read from its arguments
    /// (`None` when the action names none or the argument is missing).
    pub fn object_id(self, args: &Value) -> Option<String> {
        let field = self.object_field()?;
        args.get(field)?.as_str().map(str::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destructive_actions_name_their_object_and_dry_runs_only_read() {
        for action in ActionName::ALL {
            if action.effect() == Effect::Destructive {
                assert!(action.object_field().is_some(), "{action}");
            }
        }
        let f = ActionName::FailoverVirtualIp;
        assert_eq!(
            f.effect_of(&serde_json::json!({"virtual_ip_id": "v", "dry_run": true})),
            Effect::Read
        );
        assert_eq!(
            f.effect_of(&serde_json::json!({"virtual_ip_id": "v"})),
            Effect::Destructive
        );
        assert_eq!(
            ActionName::DecommissionCluster.object_id(&serde_json::json!({"cluster_id": "cl-1"})),
            Some("cl-1".into())
        );
    }
}
