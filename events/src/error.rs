//! The crate's error types for encoding and decoding. This module depends on
//! nothing else in the crate, so every other module can use it.

/// Why bytes could not be turned into an `Envelope`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not CBOR, truncated, or not shaped like an envelope.
    #[error("malformed CBOR envelope: {0}")]
    Cbor(String),
    /// The kind is not in this build's kind table.
    #[error("unknown event kind {0:?}")]
    UnknownKind(String),
    /// Written by a newer build than this one.
    #[error("{kind} schema version {version} is newer than this build knows ({known})")]
    FutureVersion {
        /// Kind.
        kind: String,
        /// Stored version.
        version: u16,
        /// Newest version this build knows.
        known: u16,
    },
    /// An old version with no upcaster to the next one.
    #[error("no upcaster for {kind} from schema version {from}")]
    NoUpcaster {
        /// Kind.
        kind: String,
        /// Stored version.
        from: u16,
    },
    /// The payload does not match the kind's type (missing field, wrong type …).
    #[error("invalid {kind} payload: {reason}")]
    Payload {
        /// Kind.
        kind: String,
        /// What was wrong.
        reason: String,
    },
}

/// Encoding failed (only possible for values CBOR cannot represent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode event: {0}")]
pub struct EncodeError(pub String);

/// A string that is not a kind in this build's kind table (the error of
/// `EventKind`'s `FromStr`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event kind {0:?}")]
pub struct UnknownKindError(pub String);

impl From<UnknownKindError> for DecodeError {
    fn from(e: UnknownKindError) -> Self {
        DecodeError::UnknownKind(e.0)
    }
}
