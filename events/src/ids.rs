//! Identifiers that appear in every envelope: accounts, aggregates and actors.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Empty, too long, or containing a character that is not `[A-Za-z0-9_-]`.
    #[error("invalid {what} {value:?}: must be 1-64 characters of [A-Za-z0-9_-]")]
    Invalid {
        /// Which kind of identifier.
        what: &'static str,
        /// The offending value.
        value: String,
    },
}

/// True when `s` may be used as one NATS subject token (and as an id here).
pub fn is_token_safe(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The tenant every event belongs to. Always safe to use as a subject token.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(try_from = "String", into = "String")]
pub struct AccountId(String);

impl AccountId {
    /// Validates and wraps an account id.
    pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        if is_token_safe(&s) {
            Ok(Self(s))
        } else {
            Err(IdError::Invalid {
                what: "account id",
                value: s,
            })
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AccountId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::new(s)
    }
}

impl From<AccountId> for String {
    fn from(a: AccountId) -> String {
        a.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The kinds of aggregate an event can be about. The snake_case name is a
/// subject token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum AggregateType {
    /// A tenant account.
    Account,
    /// An operator bearer token.
    OperatorToken,
    /// A node template (what modules a node runs).
    Template,
    /// A node definition (hostname, memory).
    Node,
    /// A provisioned node instance running an agent.
    Instance,
    /// An SD-WAN network.
    Network,
    /// A K3s cluster.
    Cluster,
    /// A virtual IP on an SD-WAN network.
    VirtualIp,
    /// An operator approval request.
    Approval,
    /// The log itself (rejections of malformed records).
    Log,
    /// A module of the catalog (`mod-k3s-server`): its versions.
    Module,
    /// A skill execution (rolling upgrade, provision_cluster, re-stamp).
    SkillExecution,
}

impl AggregateType {
    /// The subject token of this aggregate type.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Account => "account",
            Self::OperatorToken => "operator_token",
            Self::Template => "template",
            Self::Node => "node",
            Self::Instance => "instance",
            Self::Network => "network",
            Self::Cluster => "cluster",
            Self::VirtualIp => "virtual_ip",
            Self::Approval => "approval",
            Self::Log => "log",
            Self::Module => "module",
            Self::SkillExecution => "skill_execution",
        }
    }
}

/// The aggregate an event is about: the unit of optimistic concurrency.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AggregateRef {
    /// What sort of thing.
    #[serde(rename = "type")]
    pub kind: AggregateType,
    /// Its id (subject-token safe).
    pub id: String,
}

impl AggregateRef {
    /// Builds a reference.
    pub fn new(kind: AggregateType, id: impl Into<String>) -> Self {
        Self {
            kind,
            id: id.into(),
        }
    }
}

impl fmt::Display for AggregateRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind.as_str(), self.id)
    }
}

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Actor {
    /// A human or automation holding an operator token.
    Operator {
        /// The operator token's id (never the token itself).
        token_id: String,
    },
    /// The agent of a node instance; its events must carry a signature.
    Agent {
        /// The instance the agent runs on.
        instance_id: String,
    },
    /// A powernode service (provisioner, sdwan, …).
    Service {
        /// The service name.
        name: String,
    },
}

impl Actor {
    /// Shorthand for a service actor.
    pub fn service(name: &str) -> Self {
        Self::Service {
            name: name.to_string(),
        }
    }

    /// The instance id when the actor is an agent.
    pub fn agent_instance(&self) -> Option<&str> {
        match self {
            Self::Agent { instance_id } => Some(instance_id),
            Self::Operator { .. } | Self::Service { .. } => None,
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Operator { token_id } => write!(f, "operator:{token_id}"),
            Self::Agent { instance_id } => write!(f, "agent:{instance_id}"),
            Self::Service { name } => write!(f, "service:{name}"),
        }
    }
}

/// The id of the cluster a bootstrap report creates: derived from the
/// report's event id, so every service (and a replay) names it the same way.
pub fn cluster_id_for_bootstrap(bootstrap_event_id: uuid::Uuid) -> String {
    format!(
        "cluster-{}",
        uuid::Uuid::new_v5(&bootstrap_event_id, b"k3s-cluster").simple()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_are_subject_safe() {
        assert!(AccountId::new("acct-1_A").is_ok());
        for bad in ["", "a.b", "a b", "a>", "*", &"x".repeat(65)] {
            assert!(AccountId::new(bad).is_err(), "{bad:?} accepted");
        }
    }
}
