//! What `events explain` answers: the object, the chain of events about
//! it, and the "why".

use super::object::ObjectKind;
use super::why::Why;
use crate::jsondiff::Change;
use chrono::{DateTime, Utc};
use powernode_events::{AccountId, Envelope};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

/// What `events explain` answers.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The object, as of the end of the pass.
    pub object: ObjectInfo,
    /// Where the records came from.
    pub source: String,
    /// The last record read.
    pub as_of: AsOf,
    /// Records read.
    pub records: u64,
    /// Records refused by admission (not applied).
    pub refused: u64,
    /// The events about the object, in log order.
    pub events: Vec<Step>,
    /// Changes to the object after the last listed event, made by events
    /// that do not name it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes_by_other_events: Vec<Change>,
    /// The short answer.
    pub why: Why,
}

/// The explained object.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectInfo {
    /// What it is.
    #[serde(rename = "type")]
    pub kind: ObjectKind,
    /// Its id.
    pub id: String,
    /// The account it belongs to.
    pub account_id: AccountId,
    /// Its state in one line.
    pub summary: String,
    /// Its state (the view state changes are computed on).
    pub state: Value,
}

/// The point the explanation is as of.
#[derive(Debug, Clone, Serialize)]
pub struct AsOf {
    /// Sequence of the last record read (0 for none).
    pub seq: u64,
    /// When the log stored it.
    pub stored_at: Option<DateTime<Utc>>,
}

/// Another event, by id, with what is known of it.
#[derive(Debug, Clone, Serialize)]
pub struct Link {
    /// Event id.
    pub id: Uuid,
    /// Its sequence (absent when the event is not in the log read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Its kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Who caused it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

/// One event of the chain.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Log sequence.
    pub seq: u64,
    /// Event id.
    pub id: Uuid,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// Kind.
    pub kind: String,
    /// Who caused it (`operator:…`, `agent:…`, `service:…`).
    pub actor: String,
    /// Its account.
    pub account_id: AccountId,
    /// Its aggregate, `type/id`.
    pub aggregate: String,
    /// The id tied to the object it names, when it does not name the object
    /// itself (a VIP's approval, an instance's peer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// What it did, in words.
    pub text: String,
    /// The event that caused it.
    pub cause: Option<Link>,
    /// The events it caused.
    pub caused: Vec<Link>,
    /// True when it created the object.
    pub created: bool,
    /// What it changed in the object (from `{}` when it created it).
    pub changes: Vec<Change>,
    /// Changes to the object since the previous listed event made by events
    /// that do not name it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes_by_other_events: Vec<Change>,
    /// Why admission refused it (then it changed nothing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// Its payload.
    pub payload: Value,
    #[serde(skip)]
    pub(super) event: Envelope,
}
