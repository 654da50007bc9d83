//! The snapshot format: a short header followed by the canonical CBOR of a
//! projection's state.
//!
//! ```text
//! magic (4 bytes, per projection) | format version (u16, big endian) | CBOR
//! ```
//!
//! The header lets [`decode`] refuse bytes that belong to another projection
//! or to an older, incompatible layout of this one with a typed error, so a
//! service can fall back to replaying from the start instead of running on a
//! misread state. States hold only `BTreeMap`s, `Vec`s and plain values, so
//! equal states always encode to equal bytes.

use serde::{de::DeserializeOwned, Serialize};

/// Why a snapshot could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The state could not be encoded (a value CBOR cannot represent).
    #[error("cannot encode snapshot: {0}")]
    Encode(String),
    /// The bytes do not start with this projection's snapshot header.
    #[error("not a {expected} snapshot (bad or missing header)")]
    BadHeader {
        /// The projection that was expected.
        expected: &'static str,
    },
    /// A snapshot of this projection, but of a format this build cannot read.
    #[error(
        "{projection} snapshot format {found} is not supported (this build reads {supported})"
    )]
    UnsupportedFormat {
        /// The projection.
        projection: &'static str,
        /// Format version in the bytes.
        found: u16,
        /// Format version this build reads and writes.
        supported: u16,
    },
    /// The header is fine but the body is truncated, corrupted or mis-shaped.
    #[error("corrupt {projection} snapshot: {reason}")]
    Corrupt {
        /// The projection.
        projection: &'static str,
        /// What the decoder said.
        reason: String,
    },
}

/// Identifies one projection's snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotFormat {
    /// Human name used in errors, e.g. `fleet`.
    pub projection: &'static str,
    /// Four magic bytes that start every snapshot of this projection.
    pub magic: [u8; 4],
    /// Layout version; bump it when the state's shape changes incompatibly.
    pub version: u16,
}

const HEADER_LEN: usize = 6;

/// Encodes `state` with `format`'s header.
pub fn encode<T: Serialize>(format: SnapshotFormat, state: &T) -> Result<Vec<u8>, SnapshotError> {
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(&format.magic);
    out.extend_from_slice(&format.version.to_be_bytes());
    ciborium::into_writer(state, &mut out).map_err(|e| SnapshotError::Encode(e.to_string()))?;
    Ok(out)
}

/// Decodes bytes written by [`encode`] with the same `format`. Never panics.
pub fn decode<T: DeserializeOwned>(
    format: SnapshotFormat,
    bytes: &[u8],
) -> Result<T, SnapshotError> {
    if bytes.len() < HEADER_LEN || bytes[..4] != format.magic {
        return Err(SnapshotError::BadHeader {
            expected: format.projection,
        });
    }
    let found = u16::from_be_bytes([bytes[4], bytes[5]]);
    if found != format.version {
        return Err(SnapshotError::UnsupportedFormat {
            projection: format.projection,
            found,
            supported: format.version,
        });
    }
    let mut body = &bytes[HEADER_LEN..];
    let state = ciborium::from_reader(&mut body).map_err(|e| SnapshotError::Corrupt {
        projection: format.projection,
        reason: e.to_string(),
    })?;
    if !body.is_empty() {
        return Err(SnapshotError::Corrupt {
            projection: format.projection,
            reason: format!("{} trailing bytes after the state", body.len()),
        });
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const FORMAT: SnapshotFormat = SnapshotFormat {
        projection: "test",
        magic: *b"PNts",
        version: 1,
    };

    #[test]
    fn round_trips_and_refuses_garbage() {
        let state: BTreeMap<String, u64> = [("a".to_string(), 1), ("b".to_string(), 2)].into();
        let bytes = encode(FORMAT, &state).unwrap();
        assert_eq!(
            decode::<BTreeMap<String, u64>>(FORMAT, &bytes).unwrap(),
            state
        );

        assert!(matches!(
            decode::<BTreeMap<String, u64>>(FORMAT, b"junk"),
            Err(SnapshotError::BadHeader { .. })
        ));
        let mut newer = bytes.clone();
        newer[5] = 9;
        assert!(matches!(
            decode::<BTreeMap<String, u64>>(FORMAT, &newer),
            Err(SnapshotError::UnsupportedFormat { found: 9, .. })
        ));
        for cut in HEADER_LEN..bytes.len() {
            assert!(matches!(
                decode::<BTreeMap<String, u64>>(FORMAT, &bytes[..cut]),
                Err(SnapshotError::Corrupt { .. })
            ));
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(
            decode::<BTreeMap<String, u64>>(FORMAT, &trailing),
            Err(SnapshotError::Corrupt { .. })
        ));
    }
}
