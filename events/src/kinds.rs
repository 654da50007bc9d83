//! The kind table: the one place where each payload type is bound to its kind
//! string, current schema version and aggregate. Everything else (`kind()`,
//! the fieldless [`EventKind`], decoding by kind, [`ALL_KINDS`], schema
//! generation) is derived from it.
//!
//! Depends only on [`crate::ids`], [`crate::payloads`] and [`crate::error`].

use crate::error::{DecodeError, EncodeError, UnknownKindError};
use crate::ids::{AggregateRef, AggregateType};
use crate::payloads::{approvals::*, fleet::*, k3s::*, log::*, mcp::*, sdwan::*, skills::*};
use std::fmt;
use std::str::FromStr;

/// What every payload type knows about itself.
pub trait Payload: serde::Serialize + serde::de::DeserializeOwned + Into<EventPayload> {
    /// The dotted kind string, e.g. `system.k3s.module.assigned`.
    const KIND: &'static str;
    /// The current schema version written by this build.
    const VERSION: u16;
    /// The aggregate this fact is about.
    fn aggregate(&self) -> AggregateRef;
}

/// One row of the kind table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindInfo {
    /// The dotted kind string.
    pub kind: &'static str,
    /// Current schema version.
    pub version: u16,
    /// The Rust payload type's name.
    pub type_name: &'static str,
}

macro_rules! define_events {
    ($( $(#[$doc:meta])* $variant:ident = $kind:literal, v = $ver:literal, $agg:ident ( $field:ident ); )*) => {
        /// Every event payload powernode knows, one variant per kind.
        #[derive(Debug, Clone, PartialEq, serde::Serialize)]
        #[serde(untagged)]
        pub enum EventPayload {
            $(
                $(#[$doc])*
                #[doc = concat!("A `", $kind, "` event.")]
                $variant($variant),
            )*
        }

        /// The kind of an event without its payload: one fieldless variant per
        /// payload type, named like its [`EventPayload`] variant. Ordered as in
        /// the kind table; serialized as the kind string.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventKind {
            $(
                #[doc = concat!("`", $kind, "` (schema version ", stringify!($ver), ").")]
                $variant,
            )*
        }

        /// Every kind with its current version, in table order.
        pub const ALL_KINDS: &[KindInfo] = &[
            $( KindInfo { kind: $kind, version: $ver, type_name: stringify!($variant) }, )*
        ];

        impl EventKind {
            /// Every kind, in table order (the order of [`ALL_KINDS`]).
            pub const ALL: &'static [EventKind] = &[ $( Self::$variant, )* ];

            /// The dotted kind string, e.g. `system.k3s.module.assigned`.
            pub const fn as_str(self) -> &'static str {
                match self { $( Self::$variant => $kind, )* }
            }

            /// The current schema version this build writes for this kind.
            pub const fn version(self) -> u16 {
                match self { $( Self::$variant => $ver, )* }
            }

            /// This kind's row of the kind table.
            pub const fn info(self) -> &'static KindInfo {
                match self {
                    $( Self::$variant => &KindInfo { kind: $kind, version: $ver, type_name: stringify!($variant) }, )*
                }
            }

            /// The kind whose string is `kind`; `None` if this build does not know it.
            pub fn parse(kind: &str) -> Option<Self> {
                match kind {
                    $( $kind => Some(Self::$variant), )*
                    _ => None,
                }
            }
        }

        impl EventPayload {
            /// The kind of this payload.
            pub fn event_kind(&self) -> EventKind {
                match self { $( Self::$variant(_) => EventKind::$variant, )* }
            }

            /// The aggregate this payload is about.
            pub fn aggregate(&self) -> AggregateRef {
                match self { $( Self::$variant(p) => p.aggregate(), )* }
            }

            /// The payload as a CBOR value.
            pub(crate) fn to_value(&self) -> Result<ciborium::Value, EncodeError> {
                match self {
                    $( Self::$variant(p) => ciborium::Value::serialized(p)
                        .map_err(|e| EncodeError(e.to_string())), )*
                }
            }

            /// Deserializes a current-version payload of the given kind straight
            /// from a deserializer (no intermediate value). `kind` must be in the table.
            pub(crate) fn deserialize_kind<'de, D: serde::Deserializer<'de>>(kind: &str, d: D) -> Result<Self, D::Error> {
                match kind {
                    $( $kind => <$variant as serde::Deserialize>::deserialize(d).map(Self::$variant), )*
                    other => Err(<D::Error as serde::de::Error>::custom(format!("unknown event kind {other:?}"))),
                }
            }

            /// Decodes a current-version payload value of the given kind.
            pub(crate) fn from_value(kind: &str, value: ciborium::Value) -> Result<Self, DecodeError> {
                match kind {
                    $( $kind => value.deserialized::<$variant>().map(Self::$variant)
                        .map_err(|e| DecodeError::Payload { kind: kind.to_string(), reason: e.to_string() }), )*
                    other => Err(DecodeError::UnknownKind(other.to_string())),
                }
            }
        }

        $(
            impl Payload for $variant {
                const KIND: &'static str = $kind;
                const VERSION: u16 = $ver;
                fn aggregate(&self) -> AggregateRef {
                    AggregateRef::new(AggregateType::$agg, self.$field.to_string())
                }
            }

            impl From<$variant> for EventPayload {
                fn from(p: $variant) -> Self { Self::$variant(p) }
            }
        )*

        /// JSON Schemas of the current version of every kind: `(kind, version, schema)`.
        #[cfg(feature = "schema")]
        pub fn current_schemas() -> Vec<(&'static str, u16, schemars::Schema)> {
            vec![ $( ($kind, $ver, schemars::schema_for!($variant)), )* ]
        }
    };
}

define_events! {
    // fleet
    AccountCreated = "system.account.created", v = 1, Account(account_id);
    OperatorTokenIssued = "system.operator_token.issued", v = 1, OperatorToken(token_id);
    OperatorTokenRevoked = "system.operator_token.revoked", v = 1, OperatorToken(token_id);
    TemplateCreated = "system.template.created", v = 1, Template(template_id);
    NodeCreated = "system.node.created", v = 1, Node(node_id);
    InstanceProvisioned = "system.instance.provisioned", v = 1, Instance(instance_id);
    AgentEnrolled = "system.agent.enrolled", v = 1, Instance(instance_id);
    InstanceDrained = "system.instance.drained", v = 1, Instance(instance_id);
    InstanceTerminated = "system.instance.terminated", v = 1, Instance(instance_id);
    AgentSubmissionRejected = "system.agent.submission_rejected", v = 1, Instance(instance_id);
    // sdwan
    NetworkCreated = "system.sdwan.network.created", v = 1, Network(network_id);
    PodSubnetPrefixSet = "system.sdwan.network.pod_subnet_prefix_set", v = 1, Network(network_id);
    PeerAttached = "system.sdwan.peer.attached", v = 1, Network(network_id);
    VirtualIpAllocated = "system.sdwan.virtual_ip.allocated", v = 2, Network(network_id);
    VirtualIpAllocationFailed = "system.sdwan.virtual_ip.allocation_failed", v = 1, Cluster(cluster_id);
    VirtualIpCandidateAdded = "system.sdwan.virtual_ip.candidate_added", v = 1, VirtualIp(virtual_ip_id);
    VirtualIpPromoted = "system.sdwan.virtual_ip.promoted", v = 1, VirtualIp(virtual_ip_id);
    VirtualIpReleased = "system.sdwan.virtual_ip.released", v = 1, VirtualIp(virtual_ip_id);
    VipHolderSilent = "sdwan.vip_holder_silent", v = 1, VirtualIp(virtual_ip_id);
    VipHolderRecovered = "sdwan.vip_holder_recovered", v = 1, VirtualIp(virtual_ip_id);
    FailoverProposed = "system.sdwan.failover.proposed", v = 1, VirtualIp(virtual_ip_id);
    FailoverNoCandidate = "system.sdwan.failover.no_candidate", v = 1, VirtualIp(virtual_ip_id);
    FailoverSuppressed = "system.sdwan.failover.suppressed", v = 1, VirtualIp(virtual_ip_id);
    VirtualIpApplied = "system.sdwan.virtual_ip.applied", v = 1, VirtualIp(virtual_ip_id);
    VirtualIpReachable = "system.sdwan.virtual_ip.reachable", v = 1, VirtualIp(virtual_ip_id);
    WireguardKeyRegistered = "system.sdwan.wireguard_key.registered", v = 1, Instance(instance_id);
    AccessGrantCreated = "system.sdwan.access_grant.created", v = 1, Network(network_id);
    AccessGrantRevoked = "system.sdwan.access_grant.revoked", v = 1, Network(network_id);
    // k3s
    ModuleAssigned = "system.k3s.module.assigned", v = 1, Template(template_id);
    RuntimeInstalling = "system.k3s.runtime.installing", v = 1, Instance(instance_id);
    HandshakeBootstrap = "system.k3s.handshake.bootstrap", v = 1, Instance(instance_id);
    HandshakeJoinRequest = "system.k3s.handshake.join_request", v = 1, Instance(instance_id);
    JoinTokenIssued = "system.k3s.handshake.join_token_issued", v = 1, Instance(instance_id);
    JoinRejected = "system.k3s.handshake.join_rejected", v = 1, Instance(instance_id);
    HandshakeReady = "system.k3s.handshake.ready", v = 1, Instance(instance_id);
    BootstrapRejected = "system.k3s.handshake.bootstrap_rejected", v = 1, Instance(instance_id);
    JoinTokenRotated = "system.k3s.join_token.rotated", v = 1, Cluster(cluster_id);
    ClusterBootstrapped = "system.k3s.cluster.bootstrapped", v = 1, Cluster(cluster_id);
    ClusterActivated = "system.k3s.cluster.activated", v = 1, Cluster(cluster_id);
    NodeRegistered = "system.k3s.node.registered", v = 1, Cluster(cluster_id);
    ClusterDecommissioned = "system.k3s.cluster.decommissioned", v = 1, Cluster(cluster_id);
    PodSubnetPrefixIgnored = "system.cluster_bootstrap.pod_subnet_prefix_ignored", v = 1, Cluster(cluster_id);
    KubeconfigRetrieved = "system.k3s.kubeconfig.retrieved", v = 1, Cluster(cluster_id);
    // day-2: the module catalog, skill executions, agents' upgrade reports
    ModuleVersionCreated = "system.module.version.created", v = 1, Module(module_id);
    SkillExecutionStarted = "system.skill.execution.started", v = 1, SkillExecution(execution_id);
    SkillStepStarted = "system.skill.execution.step_started", v = 1, SkillExecution(execution_id);
    SkillStepSucceeded = "system.skill.execution.step_succeeded", v = 1, SkillExecution(execution_id);
    SkillStepFailed = "system.skill.execution.step_failed", v = 1, SkillExecution(execution_id);
    SkillExecutionPaused = "system.skill.execution.paused", v = 1, SkillExecution(execution_id);
    SkillExecutionResumed = "system.skill.execution.resumed", v = 1, SkillExecution(execution_id);
    SkillExecutionCompleted = "system.skill.execution.completed", v = 1, SkillExecution(execution_id);
    SkillExecutionAborted = "system.skill.execution.aborted", v = 1, SkillExecution(execution_id);
    ModuleUpgraded = "system.k3s.module.upgraded", v = 1, Instance(instance_id);
    ModuleUpgradeFailed = "system.k3s.module.upgrade_failed", v = 1, Instance(instance_id);
    AgentOutdated = "system.agent.outdated", v = 1, Instance(instance_id);
    // approvals
    ApprovalRequested = "system.approval.requested", v = 1, Approval(approval_id);
    ApprovalGranted = "system.approval.granted", v = 1, Approval(approval_id);
    ApprovalRejected = "system.approval.rejected", v = 1, Approval(approval_id);
    ApprovalExpired = "system.approval.expired", v = 1, Approval(approval_id);
    ApprovalSuperseded = "system.approval.superseded", v = 1, Approval(approval_id);
    // the log
    RecordRejected = "system.log.record_rejected", v = 1, Log(rejected_seq);
    AgentSubmissionsRejectedSummary = "system.agent.submissions_rejected_summary", v = 1, Log(observed_by);
    LogSealed = "system.log.sealed", v = 1, Log(chain);
    // the concierge's MCP server (audit)
    McpToolCalled = "system.mcp.tool_called", v = 1, OperatorToken(token_id);
}

/// Looks up a kind in the table.
pub fn kind_info(kind: &str) -> Option<&'static KindInfo> {
    ALL_KINDS.iter().find(|k| k.kind == kind)
}

impl EventPayload {
    /// The kind string of this payload.
    pub fn kind(&self) -> &'static str {
        self.event_kind().as_str()
    }

    /// The schema version this build writes for this payload.
    pub fn schema_version(&self) -> u16 {
        self.event_kind().version()
    }
}

impl EventKind {
    /// Whether the kind string starts with `prefix`: the test a log scope's
    /// `kind_prefix` applies. A prefix may be whole tokens (`"system.k3s."`)
    /// or end inside one (`"system.k3s.handshake.join"`).
    pub fn starts_with(self, prefix: &str) -> bool {
        self.as_str().starts_with(prefix)
    }

    /// Every kind whose string starts with `prefix`, in table order
    /// (`EventKind::with_prefix("system.k3s.")` is the k3s namespace).
    pub fn with_prefix(prefix: &str) -> impl Iterator<Item = EventKind> + '_ {
        Self::ALL
            .iter()
            .copied()
            .filter(move |k| k.starts_with(prefix))
    }
}

impl FromStr for EventKind {
    type Err = UnknownKindError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or_else(|| UnknownKindError(s.to_string()))
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for EventKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for EventKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KindVisitor;
        impl serde::de::Visitor<'_> for KindVisitor {
            type Value = EventKind;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an event kind string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<EventKind, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(KindVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::examples::example_payloads;
    use std::collections::HashSet;

    #[test]
    fn kinds_are_unique_and_subject_safe() {
        let mut seen = HashSet::new();
        for k in ALL_KINDS {
            assert!(seen.insert(k.kind), "duplicate kind {}", k.kind);
            for tok in k.kind.split('.') {
                assert!(
                    crate::ids::is_token_safe(tok),
                    "{} has unsafe token {tok:?}",
                    k.kind
                );
            }
        }
    }

    #[test]
    fn event_kind_matches_the_table_row_by_row() {
        assert_eq!(EventKind::ALL.len(), ALL_KINDS.len());
        for (kind, info) in EventKind::ALL.iter().zip(ALL_KINDS) {
            assert_eq!(kind.as_str(), info.kind);
            assert_eq!(kind.version(), info.version);
            assert_eq!(kind.info(), info);
            assert_eq!(format!("{kind:?}"), info.type_name);
            assert_eq!(kind_info(info.kind), Some(info));
        }
        // `ALL` is in declaration order, so the derived `Ord` is table order.
        assert!(EventKind::ALL.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn every_kind_round_trips_through_its_string() {
        for &kind in EventKind::ALL {
            let s = kind.as_str();
            assert_eq!(EventKind::parse(s), Some(kind), "{s}");
            assert_eq!(s.parse::<EventKind>(), Ok(kind), "{s}");
            assert_eq!(kind.to_string(), s);
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("{s:?}"));
            assert_eq!(serde_json::from_str::<EventKind>(&json).unwrap(), kind);
            let mut cbor = Vec::new();
            ciborium::into_writer(&kind, &mut cbor).unwrap();
            assert_eq!(
                ciborium::from_reader::<EventKind, _>(cbor.as_slice()).unwrap(),
                kind
            );
            assert_eq!(
                ciborium::from_reader::<String, _>(cbor.as_slice()).unwrap(),
                s
            );
        }
    }

    #[test]
    fn unknown_kind_strings_are_refused() {
        for s in [
            "",
            "system",
            "system.k3s.",
            "system.k3s.nonsense",
            "System.account.created",
        ] {
            assert_eq!(EventKind::parse(s), None, "{s:?}");
            assert_eq!(s.parse::<EventKind>(), Err(UnknownKindError(s.to_string())));
        }
        assert!(serde_json::from_str::<EventKind>("\"system.k3s.nonsense\"").is_err());
        assert!(serde_json::from_str::<EventKind>("7").is_err());
        assert_eq!(
            DecodeError::from(UnknownKindError("x.y".into())),
            DecodeError::UnknownKind("x.y".into())
        );
    }

    #[test]
    fn event_kind_agrees_with_kind_for_every_example() {
        let examples = example_payloads();
        assert_eq!(examples.len(), EventKind::ALL.len());
        for p in &examples {
            let kind = p.event_kind();
            assert_eq!(kind.as_str(), p.kind());
            assert_eq!(kind.version(), p.schema_version());
            assert_eq!(EventKind::parse(p.kind()), Some(kind));
        }
        let kinds: HashSet<_> = examples.iter().map(EventPayload::event_kind).collect();
        assert_eq!(kinds.len(), EventKind::ALL.len(), "one example per kind");
    }

    #[test]
    fn prefixes_select_a_namespace() {
        let k3s: Vec<_> = EventKind::with_prefix("system.k3s.").collect();
        let expected: Vec<_> = ALL_KINDS
            .iter()
            .filter(|k| k.kind.starts_with("system.k3s."))
            .map(|k| k.kind)
            .collect();
        assert_eq!(k3s.iter().map(|k| k.as_str()).collect::<Vec<_>>(), expected);
        assert!(k3s.contains(&EventKind::ModuleAssigned));
        assert!(!k3s.contains(&EventKind::PodSubnetPrefixIgnored));
        assert!(EventKind::JoinTokenIssued.starts_with("system.k3s.handshake.join"));
        assert!(!EventKind::HandshakeReady.starts_with("system.k3s.handshake.join"));
        assert_eq!(EventKind::with_prefix("").count(), EventKind::ALL.len());
        assert_eq!(EventKind::with_prefix("nope.").count(), 0);
    }
}
