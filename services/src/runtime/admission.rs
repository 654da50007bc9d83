//! Admission: turning a stored record into an envelope a service may apply.
//!
//! A record is admitted when its CBOR decodes, its kind is known, its payload
//! matches the kind's type (after upcasting), and — when its actor is an
//! agent — its signature verifies against the key that agent enrolled with
//! (an enrollment carries its own key and must be signed by it). Anything
//! else is refused with a reason; the runtime records the refusal as a
//! `system.log.record_rejected` event and moves on.
//!
//! Signature checks dominate the cost of admitting agent events, so a batch
//! is pre-verified in parallel with ed25519 batch verification
//! ([`preverify`]); admission then uses a verdict only when it was reached
//! with the very key admission would use, and verifies inline otherwise.

use crate::log::Record;
use ed25519_dalek::{Verifier, VerifyingKey};
use powernode_events::kinds::Payload;
use powernode_events::payloads::fleet::AgentEnrolled;
use powernode_events::signing::{split_signed, verify_batch_encoded, verifying_key_from_hex};
use powernode_events::{Envelope, EventPayload, RawEnvelope};
use powernode_projections::Projection;
use std::collections::HashMap;

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
    fn of(reason: impl Into<String>, env: Option<(&str, String)>) -> Self {
        let (kind, event_id) = env.map_or((None, None), |(k, id)| (Some(k.to_string()), Some(id)));
        Self {
            reason: reason.into(),
            kind,
            event_id,
        }
    }
}

/// A signature check made ahead of admission.
#[derive(Debug, Clone, Copy)]
pub struct Verdict {
    key: VerifyingKey,
    ok: bool,
}

/// Decodes the envelope layer of a record.
pub fn decode(record: &Record) -> Result<RawEnvelope, Refusal> {
    let raw = RawEnvelope::from_bytes(&record.bytes).map_err(|e| Refusal::of(e.to_string(), None))?;
    if raw.kind != record.kind() {
        return Err(Refusal::of(
            format!("subject says kind {:?} but the envelope says {:?}", record.kind(), raw.kind),
            Some((&raw.kind, raw.id.to_string())),
        ));
    }
    Ok(raw)
}

/// Decodes and admits one record against `state`.
pub fn admit<S: Projection>(record: &Record, state: &S) -> Result<Envelope, Refusal> {
    admit_decoded(record, decode(record), None, state)
}

/// Admits a record whose envelope layer is already decoded, using a
/// pre-verified signature verdict when it was made with the right key.
pub fn admit_decoded<S: Projection>(
    record: &Record,
    raw: Result<RawEnvelope, Refusal>,
    verdict: Option<Verdict>,
    state: &S,
) -> Result<Envelope, Refusal> {
    let raw = raw?;
    let agent = raw.actor.agent_instance().map(str::to_string);
    let kind = raw.kind.clone();
    let id = raw.id.to_string();
    let envelope = raw
        .into_envelope()
        .map_err(|e| Refusal::of(e.to_string(), Some((&kind, id.clone()))))?;
    let Some(instance) = agent else {
        return Ok(envelope);
    };
    let refuse = |reason: String| Refusal::of(format!("agent {instance}: {reason}"), Some((&kind, id.clone())));
    let key = match &envelope.payload {
        EventPayload::AgentEnrolled(AgentEnrolled {
            public_key,
            instance_id,
        }) => {
            if *instance_id != instance {
                return Err(refuse(format!("tried to enroll instance {instance_id}")));
            }
            verifying_key_from_hex(public_key).map_err(|e| refuse(e.to_string()))?
        }
        _ => state
            .agent_key(&instance)
            .ok_or_else(|| refuse("has no enrolled key; its events cannot be verified".into()))?,
    };
    if envelope.signature.is_none() {
        return Err(refuse("event is not signed".into()));
    }
    let ok = match verdict {
        Some(v) if v.key == key => v.ok,
        _ => verify_one(&record.bytes, &envelope, &key),
    };
    if ok {
        Ok(envelope)
    } else {
        Err(refuse("signature does not verify against the enrolled key".into()))
    }
}

/// Verifies one signed record, from its bytes when canonical, else by re-encoding.
fn verify_one(bytes: &[u8], envelope: &Envelope, key: &VerifyingKey) -> bool {
    match split_signed(bytes) {
        Some((signed, sig)) => key
            .verify(&signed, &ed25519_dalek::Signature::from_bytes(&sig.0))
            .is_ok(),
        None => envelope.verify(key).is_ok(),
    }
}

/// The key an enrollment record carries, read from its raw payload.
fn enrolled_key(raw: &RawEnvelope) -> Option<VerifyingKey> {
    let ciborium::Value::Map(fields) = &raw.payload else {
        return None;
    };
    fields.iter().find_map(|(k, v)| match (k.as_text(), v.as_text()) {
        (Some("public_key"), Some(hex)) => verifying_key_from_hex(hex).ok(),
        _ => None,
    })
}

/// Signatures per ed25519 batch.
const BATCH: usize = 64;

/// Verifies the agent signatures of a batch of records ahead of admission,
/// spread over the machine's cores. The keys are resolved as admission will
/// resolve them (enrollments earlier in the batch, then `state`); admission
/// re-checks any verdict whose key turns out different.
pub fn preverify<S: Projection>(records: &[Record], raws: &[Result<RawEnvelope, Refusal>], state: &S) -> Vec<Option<Verdict>> {
    let mut enrolled: HashMap<&str, VerifyingKey> = HashMap::new();
    let mut jobs: Vec<(usize, &[u8], VerifyingKey)> = Vec::new();
    for (i, (record, raw)) in records.iter().zip(raws).enumerate() {
        let Ok(raw) = raw else { continue };
        let Some(instance) = raw.actor.agent_instance() else { continue };
        if raw.signature.is_none() {
            continue;
        }
        let key = if raw.kind == AgentEnrolled::KIND {
            let Some(k) = enrolled_key(raw) else { continue };
            enrolled.insert(instance, k);
            Some(k)
        } else {
            enrolled.get(instance).copied().or_else(|| state.agent_key(instance))
        };
        if let Some(key) = key {
            jobs.push((i, &record.bytes, key));
        }
    }
    let mut verdicts = vec![None; records.len()];
    if jobs.is_empty() {
        return verdicts;
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
    let per_thread = jobs.len().div_ceil(threads).max(BATCH);
    let results: Vec<Vec<(usize, Verdict)>> = if jobs.len() <= BATCH {
        vec![verify_jobs(&jobs)]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = jobs.chunks(per_thread).map(|part| s.spawn(|| verify_jobs(part))).collect();
            // A panicking verifier thread is a bug in ed25519-dalek; fall back to no verdicts.
            handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
        })
    };
    for (i, v) in results.into_iter().flatten() {
        verdicts[i] = Some(v);
    }
    verdicts
}

fn verify_jobs(jobs: &[(usize, &[u8], VerifyingKey)]) -> Vec<(usize, Verdict)> {
    let mut out = Vec::with_capacity(jobs.len());
    for chunk in jobs.chunks(BATCH) {
        let items: Vec<(&[u8], VerifyingKey)> = chunk.iter().map(|(_, b, k)| (*b, *k)).collect();
        let all_ok = verify_batch_encoded(&items).is_ok();
        for (i, bytes, key) in chunk {
            // A record not in canonical shape gets no verdict: admission re-encodes it.
            let ok = if all_ok {
                true
            } else {
                let Some((signed, sig)) = split_signed(bytes) else { continue };
                key.verify(&signed, &ed25519_dalek::Signature::from_bytes(&sig.0)).is_ok()
            };
            out.push((*i, Verdict { key: *key, ok }));
        }
    }
    out
}
