//! Canonical CBOR encoding of envelopes, and decoding with typed errors.
//!
//! The canonical form is what this module writes: definite lengths, struct
//! fields in declaration order, map keys in sorted order (payload maps are
//! `BTreeMap`s), timestamps as integer nanoseconds since the Unix epoch. The
//! same envelope always encodes to the same bytes, which is what signatures
//! and byte-identical snapshots rely on.

use crate::envelope::Envelope;
pub use crate::error::{DecodeError, EncodeError};
use crate::ids::{AccountId, Actor, AggregateRef};
use crate::kinds::{kind_info, EventPayload};
use crate::signature::Signature;
use chrono::{DateTime, Utc};
use ciborium::Value;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The stored form of an envelope: metadata decoded, payload still a CBOR
/// value at its stored schema version. Cheap to filter on; signatures are
/// verified on this form (see the `signing` module).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawEnvelope {
    /// Event id.
    pub id: Uuid,
    /// Kind string.
    pub kind: String,
    /// Stored schema version of the payload.
    pub schema_version: u16,
    /// Tenant.
    pub account_id: AccountId,
    /// Aggregate.
    pub aggregate: AggregateRef,
    /// When it happened.
    #[serde(with = "chrono::serde::ts_nanoseconds")]
    pub occurred_at: DateTime<Utc>,
    /// Who caused it.
    pub actor: Actor,
    /// Correlation id.
    pub correlation_id: Uuid,
    /// Causation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// Payload at its stored version.
    pub payload: Value,
    /// Signature over the canonical bytes with this field absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Signature>,
}

impl RawEnvelope {
    /// Decodes the envelope layer of `bytes`. Never panics on bad input.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        ciborium::from_reader(bytes).map_err(|e| DecodeError::Cbor(e.to_string()))
    }

    /// Canonical CBOR bytes of this envelope.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(256);
        ciborium::into_writer(self, &mut out).map_err(|e| EncodeError(e.to_string()))?;
        Ok(out)
    }

    /// Upcasts the payload to the current version and decodes it.
    pub fn into_envelope(self) -> Result<Envelope, DecodeError> {
        let info =
            kind_info(&self.kind).ok_or_else(|| DecodeError::UnknownKind(self.kind.clone()))?;
        if self.schema_version > info.version {
            return Err(DecodeError::FutureVersion {
                kind: self.kind,
                version: self.schema_version,
                known: info.version,
            });
        }
        let value = if self.schema_version < info.version {
            crate::upcast::upcast(info.kind, self.schema_version, self.payload)?
        } else {
            self.payload
        };
        let payload = EventPayload::from_value(info.kind, value)?;
        Ok(Envelope {
            id: self.id,
            account_id: self.account_id,
            aggregate: self.aggregate,
            occurred_at: self.occurred_at,
            actor: self.actor,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            payload,
            signature: self.signature,
        })
    }
}

impl Envelope {
    /// The stored form of this envelope.
    pub fn to_raw(&self) -> Result<RawEnvelope, EncodeError> {
        Ok(RawEnvelope {
            id: self.id,
            kind: self.kind().to_string(),
            schema_version: self.schema_version(),
            account_id: self.account_id.clone(),
            aggregate: self.aggregate.clone(),
            occurred_at: self.occurred_at,
            actor: self.actor.clone(),
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            payload: self.payload.to_value()?,
            signature: self.signature,
        })
    }

    /// Canonical CBOR bytes.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        self.to_raw()?.to_bytes()
    }

    /// Decodes canonical bytes, upcasting old payload versions. Never
    /// panics on bad input; every failure is a typed [`DecodeError`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        crate::decode::decode(bytes)
    }
}

#[cfg(test)]
mod tests {
    use crate::examples::{example_envelope, example_payloads};
    use crate::kinds::ALL_KINDS;
    use crate::{DecodeError, Envelope, RawEnvelope};
    use std::collections::BTreeSet;

    #[test]
    fn every_kind_has_an_example_and_round_trips() {
        let examples = example_payloads();
        let kinds: BTreeSet<_> = examples.iter().map(|p| p.kind()).collect();
        let table: BTreeSet<_> = ALL_KINDS.iter().map(|k| k.kind).collect();
        assert_eq!(kinds, table, "every kind needs exactly one example");
        assert_eq!(examples.len(), ALL_KINDS.len());
        for p in examples {
            let env = example_envelope(p);
            let bytes = env.encode().unwrap();
            let back = Envelope::decode(&bytes).unwrap();
            assert_eq!(back, env, "{} did not round-trip", env.kind());
            assert_eq!(
                back.encode().unwrap(),
                bytes,
                "{} is not canonical",
                env.kind()
            );
        }
    }

    #[test]
    fn truncated_buffers_are_typed_errors() {
        let env = example_envelope(example_payloads().remove(0));
        let bytes = env.encode().unwrap();
        for cut in 0..bytes.len() {
            let err = Envelope::decode(&bytes[..cut]).unwrap_err();
            assert!(matches!(err, DecodeError::Cbor(_)), "cut {cut}: {err:?}");
        }
        assert!(matches!(
            Envelope::decode(b"\xff\x00garbage"),
            Err(DecodeError::Cbor(_))
        ));
    }

    #[test]
    fn unknown_kind_is_a_typed_error() {
        let env = example_envelope(example_payloads().remove(0));
        let mut raw = env.to_raw().unwrap();
        raw.kind = "system.k3s.nonsense".into();
        let bytes = raw.to_bytes().unwrap();
        assert_eq!(
            Envelope::decode(&bytes).unwrap_err(),
            DecodeError::UnknownKind("system.k3s.nonsense".into())
        );
    }

    #[test]
    fn missing_payload_field_is_a_typed_error() {
        let env = example_envelope(example_payloads().remove(0));
        let mut raw = env.to_raw().unwrap();
        if let ciborium::Value::Map(m) = &mut raw.payload {
            m.remove(0);
        }
        let err = RawEnvelope::from_bytes(&raw.to_bytes().unwrap())
            .unwrap()
            .into_envelope()
            .unwrap_err();
        assert!(matches!(err, DecodeError::Payload { .. }), "{err:?}");
    }

    #[test]
    fn future_version_is_refused() {
        let env = example_envelope(example_payloads().remove(0));
        let mut raw = env.to_raw().unwrap();
        raw.schema_version = 99;
        assert!(matches!(
            raw.into_envelope(),
            Err(DecodeError::FutureVersion { .. })
        ));
    }
}
