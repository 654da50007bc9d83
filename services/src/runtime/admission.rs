//! Admission: turning a stored record into an envelope a service may apply.
//!
//! A record is admitted when its CBOR decodes, its kind is known, its payload
//! matches the kind's type (after upcasting), and — when its actor is an
//! agent — its signature verifies against the key that agent enrolled with.
//! Anything else is refused with a reason; the runtime records the refusal as
//! a `system.log.record_rejected` event and moves on.

use crate::log::Record;
use powernode_events::payloads::fleet::AgentEnrolled;
use powernode_events::signing::verifying_key_from_hex;
use powernode_events::{Envelope, EventPayload, RawEnvelope};
use powernode_projections::Projection;

/// Why a record was not admitted, with what could be read of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Human-readable reason (names the problem).
    pub reason: String,
    /// The kind, when it could be read.
    pub kind: Option<String>,
    /// The event id, when it could be read.
    pub event_id: Option<String>,
}

impl Refusal {
    fn new(reason: impl Into<String>, raw: Option<&RawEnvelope>) -> Self {
        Self {
            reason: reason.into(),
            kind: raw.map(|r| r.kind.clone()),
            event_id: raw.map(|r| r.id.to_string()),
        }
    }
}

/// Decodes `record` and checks it against `state` (agent signatures).
pub fn admit<S: Projection>(record: &Record, state: &S) -> Result<Envelope, Refusal> {
    let raw = RawEnvelope::from_bytes(&record.bytes).map_err(|e| Refusal::new(e.to_string(), None))?;
    if raw.kind != record.kind() {
        return Err(Refusal::new(
            format!("subject says kind {:?} but the envelope says {:?}", record.kind(), raw.kind),
            Some(&raw),
        ));
    }
    let agent = raw.actor.agent_instance().map(str::to_string);
    let check_sig = |raw: &RawEnvelope, key_hex: Option<String>| -> Result<(), Refusal> {
        let Some(instance) = &agent else { return Ok(()) };
        let key = match key_hex {
            Some(k) => verifying_key_from_hex(&k).map_err(|e| Refusal::new(e.to_string(), Some(raw)))?,
            None => match state.agent_key(instance) {
                Some(k) => k,
                None => {
                    return Err(Refusal::new(
                        format!("agent {instance} has no enrolled key; its events cannot be verified"),
                        Some(raw),
                    ))
                }
            },
        };
        raw.verify(&key)
            .map_err(|e| Refusal::new(format!("agent {instance}: {e}"), Some(raw)))
    };
    // Everything but the signature first: an enrollment carries its own key.
    let (sig_raw, envelope) = if agent.is_some() {
        let copy = raw.clone();
        (Some(copy), raw.into_envelope())
    } else {
        (None, raw.into_envelope())
    };
    let envelope = envelope.map_err(|e| Refusal {
        reason: e.to_string(),
        kind: Some(record.kind().to_string()),
        event_id: None,
    })?;
    if let Some(raw) = sig_raw {
        let enrolled_key = match &envelope.payload {
            EventPayload::AgentEnrolled(AgentEnrolled { public_key, instance_id }) => {
                if Some(instance_id.as_str()) != agent.as_deref() {
                    return Err(Refusal::new(
                        format!("agent {:?} tried to enroll instance {instance_id}", agent),
                        Some(&raw),
                    ));
                }
                Some(public_key.clone())
            }
            _ => None,
        };
        check_sig(&raw, enrolled_key)?;
    }
    Ok(envelope)
}
