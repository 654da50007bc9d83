//! The log as operators read it: `recent_events` and `system_state_hash`.

use chrono::{DateTime, Utc};
use powernode_events::{AccountId, Actor, AggregateRef};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Arguments of `recent_events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecentEventsArgs {
    /// Only kinds starting with this, e.g. `system.k3s.`.
    #[serde(default)]
    pub kind_prefix: Option<String>,
    /// How many events (1-1000, 20 without).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Where to start: a sequence (number or digits), an RFC 3339 time, or
    /// a duration back from now (`10m`). Without it, the newest events.
    #[serde(default)]
    #[schemars(with = "Option<Since>")]
    pub since: Option<serde_json::Value>,
    /// Only events about this cluster.
    #[serde(default)]
    pub cluster: Option<String>,
    /// Only events about this instance.
    #[serde(default)]
    pub instance: Option<String>,
}

/// What `since` takes (for the schema; the server reads any JSON and
/// refuses what is neither with `invalid_arguments`).
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum Since {
    /// A log sequence.
    Seq(u64),
    /// A sequence as digits, an RFC 3339 time or a duration like `10m`.
    Text(String),
}

/// Answer of `recent_events`: the account's events, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RecentEventsAnswer {
    /// The events.
    pub events: Vec<RecordedEvent>,
    /// Every matching event up to this log sequence is covered: a follower
    /// of the event stream carries on from here (`Last-Event-ID: <through>`).
    pub through: u64,
    /// With `since` only: true when more events follow (ask again with
    /// `since: <last seq + 1>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub more: Option<bool>,
}

/// An event as operators see it: the envelope plus its log sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RecordedEvent {
    /// Event id.
    pub id: uuid::Uuid,
    /// Kind, e.g. `system.template.created`.
    pub kind: String,
    /// Schema version of the payload.
    pub schema_version: u16,
    /// The tenant.
    pub account_id: AccountId,
    /// What the event is about.
    pub aggregate: AggregateRef,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// Who caused it.
    pub actor: Actor,
    /// The id shared by every event of one request or flow.
    pub correlation_id: uuid::Uuid,
    /// The event that directly caused this one.
    pub causation_id: Option<uuid::Uuid>,
    /// The payload (its JSON Schema per kind and version is in `schemas/`).
    pub payload: serde_json::Value,
    /// Hex of the ed25519 signature (agent events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Log sequence.
    pub seq: u64,
}

/// Arguments of `system_state_hash` (none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateHashArgs {}

/// Answer of `system_state_hash`: the digest `powernode replay --until
/// <seq> --hash` of the same log prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StateHashAnswer {
    /// The last sequence the fleet state has folded.
    pub seq: u64,
    /// The sequence the API has applied through.
    pub applied: u64,
    /// `sha256:<hex>` of the fleet state.
    pub hash: String,
}
