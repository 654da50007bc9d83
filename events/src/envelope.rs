//! The envelope every event travels in.

use crate::ids::{AccountId, Actor, AggregateRef};
use crate::kinds::EventPayload;
use crate::signature::Signature;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// One fact in the log: metadata around a typed payload.
///
/// The kind and schema version are not stored fields: they follow from the
/// payload's type (see [`crate::kinds`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Event id (UUIDv7 for fresh events). Appends are idempotent by this id.
    pub id: Uuid,
    /// The tenant.
    pub account_id: AccountId,
    /// What the event is about; the unit of optimistic concurrency.
    pub aggregate: AggregateRef,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// Who caused it.
    pub actor: Actor,
    /// The id shared by every event of one operator request or flow.
    pub correlation_id: Uuid,
    /// The event that directly caused this one.
    pub causation_id: Option<Uuid>,
    /// The typed fact.
    pub payload: EventPayload,
    /// ed25519 signature over the canonical bytes (agent events).
    pub signature: Option<Signature>,
}

impl Envelope {
    /// A fresh event: new UUIDv7 id, now, its own correlation, aggregate taken
    /// from the payload.
    pub fn new(account_id: AccountId, actor: Actor, payload: impl Into<EventPayload>) -> Self {
        let payload = payload.into();
        let id = Uuid::now_v7();
        Self {
            id,
            account_id,
            aggregate: payload.aggregate(),
            occurred_at: Utc::now(),
            actor,
            correlation_id: id,
            causation_id: None,
            payload,
            signature: None,
        }
    }

    /// Marks this event as caused by `cause` (same correlation, causation = cause).
    pub fn caused_by(mut self, cause: &Envelope) -> Self {
        self.correlation_id = cause.correlation_id;
        self.causation_id = Some(cause.id);
        self
    }

    /// The kind string.
    pub fn kind(&self) -> &'static str {
        self.payload.kind()
    }

    /// The schema version of the payload as held in memory (always current).
    pub fn schema_version(&self) -> u16 {
        self.payload.schema_version()
    }
}

/// JSON view for operators (API answers, `events tail -o json`).
#[derive(Serialize)]
struct EnvelopeView<'a> {
    id: &'a Uuid,
    kind: &'static str,
    schema_version: u16,
    account_id: &'a AccountId,
    aggregate: &'a AggregateRef,
    occurred_at: &'a DateTime<Utc>,
    actor: &'a Actor,
    correlation_id: &'a Uuid,
    causation_id: &'a Option<Uuid>,
    payload: &'a EventPayload,
    #[serde(skip_serializing_if = "Option::is_none")]
    signature: Option<String>,
}

impl Serialize for Envelope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        EnvelopeView {
            id: &self.id,
            kind: self.kind(),
            schema_version: self.schema_version(),
            account_id: &self.account_id,
            aggregate: &self.aggregate,
            occurred_at: &self.occurred_at,
            actor: &self.actor,
            correlation_id: &self.correlation_id,
            causation_id: &self.causation_id,
            payload: &self.payload,
            signature: self.signature.as_ref().map(|s| hex::encode(s.0)),
        }
        .serialize(s)
    }
}
