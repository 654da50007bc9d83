//! ed25519 signatures of agent events.
//!
//! An agent signs the canonical CBOR bytes of its envelope with the
//! `signature` field absent. Verification re-encodes the stored
//! [`RawEnvelope`] (whose payload is kept exactly as stored), so an event
//! still verifies after its kind gained newer schema versions.

use crate::codec::RawEnvelope;
use crate::envelope::Envelope;
pub use crate::signature::Signature;
use ed25519_dalek::{Signer, Verifier};
pub use ed25519_dalek::{SigningKey, VerifyingKey};

/// Why a signature check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The event carries no signature.
    #[error("event is not signed")]
    Missing,
    /// The signature does not match the bytes and key.
    #[error("signature does not verify against the enrolled key")]
    Invalid,
    /// The event could not be encoded to check it.
    #[error("cannot encode event for verification: {0}")]
    Encode(String),
    /// A public key that is not a valid ed25519 point.
    #[error("invalid ed25519 public key: {0}")]
    BadKey(String),
}

/// Parses a hex-encoded 32-byte ed25519 public key.
pub fn verifying_key_from_hex(s: &str) -> Result<VerifyingKey, SignatureError> {
    let bytes = hex::decode(s).map_err(|e| SignatureError::BadKey(e.to_string()))?;
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| SignatureError::BadKey("expected 32 bytes".into()))?;
    VerifyingKey::from_bytes(&arr).map_err(|e| SignatureError::BadKey(e.to_string()))
}

impl RawEnvelope {
    /// The bytes a signature covers: the canonical encoding without `signature`.
    pub fn signing_bytes(&self) -> Result<Vec<u8>, SignatureError> {
        let mut unsigned = self.clone();
        unsigned.signature = None;
        unsigned
            .to_bytes()
            .map_err(|e| SignatureError::Encode(e.to_string()))
    }

    /// Checks the signature against `key`.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), SignatureError> {
        let sig = self.signature.ok_or(SignatureError::Missing)?;
        let bytes = self.signing_bytes()?;
        key.verify(&bytes, &ed25519_dalek::Signature::from_bytes(&sig.0))
            .map_err(|_| SignatureError::Invalid)
    }
}

impl Envelope {
    /// Signs the envelope in place with an agent's key.
    pub fn sign(&mut self, key: &SigningKey) -> Result<(), SignatureError> {
        self.signature = None;
        let raw = self
            .to_raw()
            .map_err(|e| SignatureError::Encode(e.to_string()))?;
        let sig = key.sign(&raw.signing_bytes()?);
        self.signature = Some(Signature(sig.to_bytes()));
        Ok(())
    }

    /// Checks the signature against `key`.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), SignatureError> {
        self.to_raw()
            .map_err(|e| SignatureError::Encode(e.to_string()))?
            .verify(key)
    }
}

/// CBOR of the trailing `signature` entry: text(9) "signature", bytes(64).
const SIGNATURE_ENTRY_PREFIX: &[u8] = b"\x69signature\x58\x40";
const SIGNATURE_ENTRY_LEN: usize = SIGNATURE_ENTRY_PREFIX.len() + 64;

/// Splits a stored, signed envelope into (the bytes its signature covers,
/// the signature) without decoding it: the canonical encoding is a map whose
/// last entry is `signature`, so the signed bytes are the same map with one
/// entry fewer. `None` when `encoded` is not shaped like that (then decode
/// and use [`RawEnvelope::verify`]).
pub fn split_signed(encoded: &[u8]) -> Option<(Vec<u8>, Signature)> {
    let header = *encoded.first()?;
    // Major type 5 (map) with an inline count 1..=23: every envelope has 9-12 fields.
    if header & 0xe0 != 0xa0 || header & 0x1f == 0 || header & 0x1f > 23 {
        return None;
    }
    let tail_at = encoded.len().checked_sub(SIGNATURE_ENTRY_LEN)?;
    let tail = &encoded[tail_at..];
    if !tail.starts_with(SIGNATURE_ENTRY_PREFIX) {
        return None;
    }
    let sig: [u8; 64] = tail[SIGNATURE_ENTRY_PREFIX.len()..].try_into().ok()?;
    let mut signed = Vec::with_capacity(tail_at);
    signed.push(header - 1);
    signed.extend_from_slice(&encoded[1..tail_at]);
    Some((signed, Signature(sig)))
}

/// Verifies many stored, signed envelopes (their encoded bytes) at once with
/// ed25519 batch verification. `Err` if any one fails or is not shaped as
/// [`split_signed`] expects; callers then check them one by one.
pub fn verify_batch_encoded(items: &[(&[u8], VerifyingKey)]) -> Result<(), SignatureError> {
    let mut messages = Vec::with_capacity(items.len());
    let mut signatures = Vec::with_capacity(items.len());
    let mut keys = Vec::with_capacity(items.len());
    for (encoded, key) in items {
        let (signed, sig) = split_signed(encoded).ok_or(SignatureError::Missing)?;
        messages.push(signed);
        signatures.push(ed25519_dalek::Signature::from_bytes(&sig.0));
        keys.push(*key);
    }
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    ed25519_dalek::verify_batch(&refs, &signatures, &keys).map_err(|_| SignatureError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::examples::{example_envelope, example_payloads};
    use rand::rngs::OsRng;

    fn signed() -> (Envelope, SigningKey) {
        let key = SigningKey::generate(&mut OsRng);
        let mut env = example_envelope(example_payloads().remove(5));
        env.sign(&key).unwrap();
        (env, key)
    }

    #[test]
    fn signed_event_verifies_after_a_round_trip() {
        let (env, key) = signed();
        let bytes = env.encode().unwrap();
        let raw = RawEnvelope::from_bytes(&bytes).unwrap();
        raw.verify(&key.verifying_key()).unwrap();
        Envelope::decode(&bytes)
            .unwrap()
            .verify(&key.verifying_key())
            .unwrap();
        verify_batch_encoded(&[(&bytes, key.verifying_key())]).unwrap();
    }

    #[test]
    fn split_signed_matches_the_canonical_signing_bytes() {
        let (env, key) = signed();
        let bytes = env.encode().unwrap();
        let raw = RawEnvelope::from_bytes(&bytes).unwrap();
        let (signed_bytes, sig) = split_signed(&bytes).unwrap();
        assert_eq!(signed_bytes, raw.signing_bytes().unwrap());
        assert_eq!(Some(sig), env.signature);
        verify_batch_encoded(&[(&bytes, key.verifying_key())]).unwrap();
        let other = SigningKey::generate(&mut OsRng);
        assert!(verify_batch_encoded(&[(&bytes, other.verifying_key())]).is_err());
        let unsigned = example_envelope(example_payloads().remove(0))
            .encode()
            .unwrap();
        assert!(split_signed(&unsigned).is_none());
    }

    #[test]
    fn wrong_key_fails() {
        let (env, _) = signed();
        let other = SigningKey::generate(&mut OsRng);
        assert_eq!(
            env.verify(&other.verifying_key()),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn any_changed_byte_fails() {
        let (env, key) = signed();
        let bytes = env.encode().unwrap();
        let vk = key.verifying_key();
        let mut checked = 0;
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            // A flipped byte either breaks the CBOR or fails verification; it never verifies.
            if let Ok(raw) = RawEnvelope::from_bytes(&b) {
                assert!(raw.verify(&vk).is_err(), "byte {i} flipped still verifies");
                checked += 1;
            }
        }
        assert!(
            checked > bytes.len() / 2,
            "too few mutations decoded ({checked})"
        );
    }

    #[test]
    fn unsigned_is_missing() {
        let env = example_envelope(example_payloads().remove(0));
        let key = SigningKey::generate(&mut OsRng);
        assert_eq!(
            env.verify(&key.verifying_key()),
            Err(SignatureError::Missing)
        );
    }
}
