//! The fast decoding path of [`Envelope::decode`]: one pass over the CBOR,
//! the payload deserialized straight into its type once `kind` and
//! `schema_version` (which precede it in the canonical order) are known. Old
//! versions, and payloads met before their kind, go through a CBOR value and
//! [`crate::upcast`]. Errors are the same typed [`DecodeError`]s as the
//! value path, `RawEnvelope::into_envelope` in the `codec` module.
//!
//! The pass is cbor4ii's serde deserializer over the slice (2–3× faster
//! than ciborium's on envelopes, which matters to replays of millions of
//! events); encoding and the value path stay on ciborium. The test below
//! holds the two paths equal for every kind.

use crate::envelope::Envelope;
use crate::error::DecodeError;
use crate::ids::{AccountId, Actor, AggregateRef};
use crate::kinds::{kind_info, EventPayload, KindInfo};
use crate::signature::Signature;
use chrono::DateTime;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use std::cell::RefCell;
use uuid::Uuid;

thread_local! {
    /// The typed error behind the last serde error raised by the visitor
    /// (the deserializer flattens visitor errors to strings).
    static TYPED_ERROR: RefCell<Option<DecodeError>> = const { RefCell::new(None) };
}

fn fail<E: serde::de::Error>(e: DecodeError) -> E {
    let msg = e.to_string();
    TYPED_ERROR.with(|t| *t.borrow_mut() = Some(e));
    E::custom(msg)
}

/// Decodes canonical (or any well-formed) envelope bytes.
pub(crate) fn decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
    TYPED_ERROR.with(|t| t.borrow_mut().take());
    match cbor4ii::serde::from_slice::<Fast>(bytes) {
        Ok(Fast(e)) => Ok(e),
        Err(e) => {
            let typed = TYPED_ERROR.with(|t| t.borrow_mut().take());
            // Malformed or truncated CBOR is a CBOR error wherever it was met,
            // even inside a payload (error path only: one more pass).
            if let Err(cbor) = ciborium::from_reader::<IgnoredAny, _>(bytes) {
                return Err(DecodeError::Cbor(cbor.to_string()));
            }
            Err(typed.unwrap_or_else(|| DecodeError::Cbor(e.to_string())))
        }
    }
}

struct Fast(Envelope);

impl<'de> serde::Deserialize<'de> for Fast {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(EnvelopeVisitor).map(Fast)
    }
}

/// Deserializes a payload of a known current kind in place.
struct PayloadSeed(&'static KindInfo);

impl<'de> DeserializeSeed<'de> for PayloadSeed {
    type Value = EventPayload;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<EventPayload, D::Error> {
        EventPayload::deserialize_kind(self.0.kind, d).map_err(|e| {
            fail(DecodeError::Payload {
                kind: self.0.kind.to_string(),
                reason: e.to_string(),
            })
        })
    }
}

enum PayloadSlot {
    Typed(EventPayload),
    Value(ciborium::Value),
}

/// An envelope field name, read without allocating it.
enum Key {
    Id,
    Kind,
    SchemaVersion,
    AccountId,
    Aggregate,
    OccurredAt,
    Actor,
    CorrelationId,
    CausationId,
    Signature,
    Payload,
    Other,
}

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an envelope field name")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "id" => Key::Id,
                    "kind" => Key::Kind,
                    "schema_version" => Key::SchemaVersion,
                    "account_id" => Key::AccountId,
                    "aggregate" => Key::Aggregate,
                    "occurred_at" => Key::OccurredAt,
                    "actor" => Key::Actor,
                    "correlation_id" => Key::CorrelationId,
                    "causation_id" => Key::CausationId,
                    "signature" => Key::Signature,
                    "payload" => Key::Payload,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an event envelope map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope, A::Error> {
        let mut id: Option<Uuid> = None;
        let mut kind: Option<String> = None;
        let mut version: Option<u16> = None;
        let mut account: Option<AccountId> = None;
        let mut aggregate: Option<AggregateRef> = None;
        let mut occurred: Option<i64> = None;
        let mut actor: Option<Actor> = None;
        let mut correlation: Option<Uuid> = None;
        let mut causation: Option<Uuid> = None;
        let mut payload: Option<PayloadSlot> = None;
        let mut signature: Option<Signature> = None;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Id => id = Some(map.next_value()?),
                Key::Kind => kind = Some(map.next_value()?),
                Key::SchemaVersion => version = Some(map.next_value()?),
                Key::AccountId => account = Some(map.next_value()?),
                Key::Aggregate => aggregate = Some(map.next_value()?),
                Key::OccurredAt => occurred = Some(map.next_value()?),
                Key::Actor => actor = Some(map.next_value()?),
                Key::CorrelationId => correlation = Some(map.next_value()?),
                Key::CausationId => causation = map.next_value()?,
                Key::Signature => signature = map.next_value()?,
                Key::Payload => {
                    let current = match (&kind, version) {
                        (Some(k), Some(v)) => {
                            let info = kind_info(k)
                                .ok_or_else(|| fail(DecodeError::UnknownKind(k.clone())))?;
                            (v == info.version).then_some(info)
                        }
                        _ => None,
                    };
                    payload = Some(match current {
                        Some(info) => PayloadSlot::Typed(map.next_value_seed(PayloadSeed(info))?),
                        None => PayloadSlot::Value(map.next_value()?),
                    });
                }
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        fn missing<E: serde::de::Error>(field: &str) -> E {
            E::custom(format!("missing field `{field}`"))
        }
        let kind = kind.ok_or_else(|| missing("kind"))?;
        let version = version.ok_or_else(|| missing("schema_version"))?;
        let payload = match payload.ok_or_else(|| missing("payload"))? {
            PayloadSlot::Typed(p) => p,
            PayloadSlot::Value(value) => {
                let info =
                    kind_info(&kind).ok_or_else(|| fail(DecodeError::UnknownKind(kind.clone())))?;
                let value = match version.cmp(&info.version) {
                    std::cmp::Ordering::Greater => {
                        return Err(fail(DecodeError::FutureVersion {
                            kind: kind.clone(),
                            version,
                            known: info.version,
                        }))
                    }
                    std::cmp::Ordering::Less => {
                        crate::upcast::upcast(info.kind, version, value).map_err(fail)?
                    }
                    std::cmp::Ordering::Equal => value,
                };
                EventPayload::from_value(info.kind, value).map_err(fail)?
            }
        };
        let occurred = occurred.ok_or_else(|| missing("occurred_at"))?;
        Ok(Envelope {
            id: id.ok_or_else(|| missing("id"))?,
            account_id: account.ok_or_else(|| missing("account_id"))?,
            aggregate: aggregate.ok_or_else(|| missing("aggregate"))?,
            occurred_at: DateTime::from_timestamp_nanos(occurred),
            actor: actor.ok_or_else(|| missing("actor"))?,
            correlation_id: correlation.ok_or_else(|| missing("correlation_id"))?,
            causation_id: causation,
            payload,
            signature,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::examples::{example_envelope, example_payloads};
    use crate::{Envelope, RawEnvelope};

    #[test]
    fn fast_path_agrees_with_the_value_path_for_every_kind() {
        for p in example_payloads() {
            let (fast, slow) = both_paths(&example_envelope(p).encode().unwrap());
            assert_eq!(fast, slow);
        }
    }

    /// The envelope through the fast path and through the value path.
    fn both_paths(bytes: &[u8]) -> (crate::Envelope, crate::Envelope) {
        let fast = super::decode(bytes).unwrap();
        let slow = RawEnvelope::from_bytes(bytes)
            .unwrap()
            .into_envelope()
            .unwrap();
        (fast, slow)
    }

    /// Floats are written in the shortest form that keeps them (half,
    /// single or double precision): every width decodes, to the same value.
    #[test]
    fn scores_of_every_float_width_decode_alike() {
        use crate::payloads::sdwan::FailoverProposed;
        use crate::EventPayload;
        let proposal = example_payloads()
            .into_iter()
            .find_map(|p| match p {
                EventPayload::FailoverProposed(f) => Some(f),
                _ => None,
            })
            .expect("an example proposal");
        for score in [0.0, 0.5, 1.0, 0.75, 0.1, 0.92, 1e-9, 1.0 / 3.0] {
            let mut p: FailoverProposed = proposal.clone();
            p.score = score;
            p.candidates[0].score = score;
            let (fast, slow) = both_paths(&example_envelope(p).encode().unwrap());
            assert_eq!(fast, slow, "score {score}");
            let EventPayload::FailoverProposed(got) = fast.payload else {
                panic!("kind changed");
            };
            assert_eq!(got.score.to_bits(), score.to_bits(), "score {score}");
        }
    }

    #[test]
    fn payload_before_kind_still_decodes() {
        // A non-canonical field order: payload first.
        let env = example_envelope(example_payloads().remove(3));
        let raw = env.to_raw().unwrap();
        let mut fields = match ciborium::Value::serialized(&raw).unwrap() {
            ciborium::Value::Map(m) => m,
            _ => unreachable!(),
        };
        let at = fields
            .iter()
            .position(|(k, _)| k.as_text() == Some("payload"))
            .unwrap();
        let p = fields.remove(at);
        fields.insert(0, p);
        let mut bytes = Vec::new();
        ciborium::into_writer(&ciborium::Value::Map(fields), &mut bytes).unwrap();
        assert_eq!(Envelope::decode(&bytes).unwrap(), env);
    }
}
