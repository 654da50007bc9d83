//! The sealed log: a hash chain over stored records, signed once per range
//! by the platform's seal key.
//!
//! Each stored record becomes a *leaf*: SHA-256 over a domain tag, its
//! sequence, its subject and its bytes (lengths included, so no two records
//! share an encoding). A seal's *digest* is SHA-256 over a domain tag, the
//! range (`from_seq`, `through_seq`) and the leaves of every sequence in the
//! range, in order. A changed byte, a missing, reordered or inserted record
//! changes a leaf or the leaf count, and so the digest. The seal also lists
//! the first [`FINGERPRINT_LEN`] bytes of each leaf: not needed to trust a
//! range, only to name the record that differs when the digest does not
//! match.
//!
//! The signature covers a domain tag, the chain, the range, the digest and a
//! SHA-256 of the fingerprints ([`seal_message`]). Verifiers trust a public
//! key they were given (pinned), never only the key a seal names.
//!
//! [`SealVerifier`] checks a stream of records as it is read: each seal
//! record is checked against the leaves of the records it covers, and the
//! records no seal covers yet are the ones whose per-event signatures still
//! need checking. Pure computation: no I/O, no clock.

use crate::envelope::Envelope;
use crate::kinds::EventPayload;
use crate::payloads::log::LogSealed;
use ed25519_dalek::{Signer, Verifier};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::collections::VecDeque;

/// The one seal chain of a log (the seals' aggregate id).
pub const SEAL_CHAIN: &str = "log";
/// Bytes of each leaf a seal lists to name a differing record.
pub const FINGERPRINT_LEN: usize = 4;
/// The kind suffix of a seal record's subject.
const SEAL_SUBJECT_SUFFIX: &str = ".system.log.sealed";

const LEAF_DOMAIN: &[u8] = b"powernode.log.leaf.v1\0";
const DIGEST_DOMAIN: &[u8] = b"powernode.log.seal.v1\0";
const MESSAGE_DOMAIN: &[u8] = b"powernode.log.seal-signature.v1\0";

/// A record's leaf hash.
pub type Leaf = [u8; 32];

/// The leaf of one stored record.
pub fn leaf(seq: u64, subject: &str, bytes: &[u8]) -> Leaf {
    let mut h = Sha256::new();
    h.update(LEAF_DOMAIN);
    h.update(seq.to_be_bytes());
    h.update((subject.len() as u64).to_be_bytes());
    h.update(subject.as_bytes());
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
    h.finalize().into()
}

/// The digest of the range `from..=through` whose leaves are `leaves`.
pub fn range_digest<'a>(
    from: u64,
    through: u64,
    leaves: impl IntoIterator<Item = &'a Leaf>,
) -> Leaf {
    let mut h = Sha256::new();
    h.update(DIGEST_DOMAIN);
    h.update(from.to_be_bytes());
    h.update(through.to_be_bytes());
    for l in leaves {
        h.update(l);
    }
    h.finalize().into()
}

/// The bytes a seal's signature covers.
pub fn seal_message(
    chain: &str,
    from: u64,
    through: u64,
    digest: &[u8],
    fingerprints: &[u8],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(MESSAGE_DOMAIN.len() + chain.len() + 8 + 16 + 64);
    m.extend_from_slice(MESSAGE_DOMAIN);
    m.extend_from_slice(&(chain.len() as u64).to_be_bytes());
    m.extend_from_slice(chain.as_bytes());
    m.extend_from_slice(&from.to_be_bytes());
    m.extend_from_slice(&through.to_be_bytes());
    m.extend_from_slice(digest);
    m.extend_from_slice(&Sha256::digest(fingerprints));
    m
}

/// True when `subject` is a seal record's subject.
pub fn is_seal_subject(subject: &str) -> bool {
    subject.ends_with(SEAL_SUBJECT_SUFFIX)
}

/// What is wrong with a sealed range. Every variant names the sequence of
/// the seal and, where it can be told, the record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The seal at `seal_seq` is not one the trusted key made: its signature
    /// does not verify, it names another key, or it cannot be read.
    #[error("seal at seq {seal_seq} is forged or damaged: {reason}")]
    Forged {
        /// Sequence of the seal record.
        seal_seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// A record of the sealed range is not there.
    #[error("record seq {seq} is missing: the seal at seq {seal_seq} sealed seq {from}-{through}")]
    Missing {
        /// Sequence of the seal record.
        seal_seq: u64,
        /// The first missing sequence.
        seq: u64,
        /// The seal's range.
        from: u64,
        /// The seal's range.
        through: u64,
    },
    /// The record at `seq` is not the one that was sealed (changed, or
    /// another record reordered or inserted in its place).
    #[error(
        "record seq {seq} differs from what the seal at seq {seal_seq} sealed \
         (changed, reordered or inserted; the seal covers seq {from}-{through})"
    )]
    Changed {
        /// Sequence of the seal record.
        seal_seq: u64,
        /// The first record that differs.
        seq: u64,
        /// The seal's range.
        from: u64,
        /// The seal's range.
        through: u64,
    },
    /// The digest differs but no single record could be named.
    #[error("the records of seq {from}-{through} do not match the seal at seq {seal_seq}")]
    Mismatch {
        /// Sequence of the seal record.
        seal_seq: u64,
        /// The seal's range.
        from: u64,
        /// The seal's range.
        through: u64,
    },
    /// The seal does not start where the previous one ended: a seal is
    /// missing, or two overlap.
    #[error(
        "the seal at seq {seal_seq} starts at seq {from}, but the previous seal ended at seq \
         {previous_through}: a seal is missing or two overlap"
    )]
    Discontinuous {
        /// Sequence of the seal record.
        seal_seq: u64,
        /// Where it starts.
        from: u64,
        /// Where the previous seal ended (0: none).
        previous_through: u64,
    },
}

impl SealError {
    /// The sequence of the record at fault (the seal's for a forged or
    /// misplaced seal).
    pub fn seq(&self) -> u64 {
        match self {
            Self::Forged { seal_seq, .. }
            | Self::Mismatch { seal_seq, .. }
            | Self::Discontinuous { seal_seq, .. } => *seal_seq,
            Self::Missing { seq, .. } | Self::Changed { seq, .. } => *seq,
        }
    }
}

impl LogSealed {
    /// Seals `from..=(from + leaves.len() - 1)` with `key`.
    pub fn seal(key: &SigningKey, from: u64, leaves: &[Leaf]) -> Self {
        let through = from + leaves.len() as u64 - 1;
        let digest = range_digest(from, through, leaves);
        let fingerprints: Vec<u8> = leaves
            .iter()
            .flat_map(|l| l[..FINGERPRINT_LEN].iter().copied())
            .collect();
        let signature = key.sign(&seal_message(
            SEAL_CHAIN,
            from,
            through,
            &digest,
            &fingerprints,
        ));
        Self {
            chain: SEAL_CHAIN.to_string(),
            from_seq: from,
            through_seq: through,
            digest: hex::encode(digest),
            fingerprints: hex::encode(fingerprints),
            key: hex::encode(key.verifying_key().as_bytes()),
            signature: hex::encode(signature.to_bytes()),
        }
    }

    /// Checks the signature with `trusted` (or, unpinned, with the key the
    /// seal names); the key it verified with. `seal_seq` names the seal in
    /// errors.
    pub fn verify_signature(
        &self,
        seal_seq: u64,
        trusted: Option<&VerifyingKey>,
    ) -> Result<VerifyingKey, SealError> {
        let forged = |reason: String| SealError::Forged { seal_seq, reason };
        let named =
            crate::signing::verifying_key_from_hex(&self.key).map_err(|e| forged(e.to_string()))?;
        if let Some(t) = trusted {
            if *t != named {
                return Err(forged(format!(
                    "it is signed by key {}, not the trusted seal key {}",
                    self.key,
                    hex::encode(t.as_bytes())
                )));
            }
        }
        let (digest, fingerprints) = self.decoded().map_err(forged)?;
        let sig: [u8; 64] = hex::decode(&self.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| forged("the signature is not 64 bytes of hex".into()))?;
        let message = seal_message(
            &self.chain,
            self.from_seq,
            self.through_seq,
            &digest,
            &fingerprints,
        );
        named
            .verify(&message, &ed25519_dalek::Signature::from_bytes(&sig))
            .map_err(|_| forged("its signature does not verify".into()))?;
        if self.from_seq == 0 || self.through_seq < self.from_seq || self.through_seq >= seal_seq {
            return Err(forged(format!(
                "it seals seq {}-{}, which is not a range before it",
                self.from_seq, self.through_seq
            )));
        }
        let n = self.through_seq - self.from_seq + 1;
        if fingerprints.len() as u64 != n * FINGERPRINT_LEN as u64 {
            return Err(forged(format!(
                "it lists {} fingerprints for {n} records",
                fingerprints.len() / FINGERPRINT_LEN
            )));
        }
        Ok(named)
    }

    /// The digest and fingerprints as bytes.
    fn decoded(&self) -> Result<([u8; 32], Vec<u8>), String> {
        let digest: [u8; 32] = hex::decode(&self.digest)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("the digest is not 32 bytes of hex")?;
        let fingerprints =
            hex::decode(&self.fingerprints).map_err(|_| "the fingerprints are not hex")?;
        Ok((digest, fingerprints))
    }

    /// Checks the records `range` (sequence, leaf; in order) against this
    /// seal, whose signature was checked.
    pub fn check_range(&self, seal_seq: u64, range: &[(u64, Leaf)]) -> Result<(), SealError> {
        let (from, through) = (self.from_seq, self.through_seq);
        let mut expected = from;
        for (seq, _) in range {
            if *seq != expected {
                return Err(SealError::Missing {
                    seal_seq,
                    seq: expected,
                    from,
                    through,
                });
            }
            expected += 1;
        }
        if expected != through + 1 {
            return Err(SealError::Missing {
                seal_seq,
                seq: expected,
                from,
                through,
            });
        }
        let (digest, fingerprints) = self
            .decoded()
            .map_err(|reason| SealError::Forged { seal_seq, reason })?;
        if range_digest(from, through, range.iter().map(|(_, l)| l)) == digest {
            return Ok(());
        }
        for ((seq, l), fp) in range.iter().zip(fingerprints.chunks(FINGERPRINT_LEN)) {
            if l[..FINGERPRINT_LEN] != *fp {
                return Err(SealError::Changed {
                    seal_seq,
                    seq: *seq,
                    from,
                    through,
                });
            }
        }
        Err(SealError::Mismatch {
            seal_seq,
            from,
            through,
        })
    }
}

/// What a [`SealVerifier`] has established.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SealSummary {
    /// Seals checked.
    pub seals: u64,
    /// Records inside the checked seals' ranges.
    pub sealed_records: u64,
    /// The last sequence a checked seal covers (0: none).
    pub sealed_through: u64,
    /// Whether the key was pinned (given by the verifier's caller) rather
    /// than taken from the first seal.
    pub pinned: bool,
}

/// Checks records as they are read, in sequence order: keeps the leaves of
/// records no seal has covered yet, and checks each seal record against
/// them.
#[derive(Debug)]
pub struct SealVerifier {
    trusted: Option<VerifyingKey>,
    pending: VecDeque<(u64, Leaf)>,
    summary: SealSummary,
}

impl SealVerifier {
    /// A verifier trusting `trusted`; without one, the first seal's key
    /// (and every later seal must use the same).
    pub fn new(trusted: Option<VerifyingKey>) -> Self {
        let pinned = trusted.is_some();
        Self {
            trusted,
            pending: VecDeque::new(),
            summary: SealSummary {
                pinned,
                ..SealSummary::default()
            },
        }
    }

    /// Takes the next record (sequences increase).
    pub fn record(&mut self, seq: u64, subject: &str, bytes: &[u8]) -> Result<(), SealError> {
        self.pending.push_back((seq, leaf(seq, subject, bytes)));
        if !is_seal_subject(subject) {
            return Ok(());
        }
        let sealed = match Envelope::decode(bytes) {
            Ok(Envelope {
                payload: EventPayload::LogSealed(s),
                ..
            }) => s,
            Ok(_) => {
                return Err(SealError::Forged {
                    seal_seq: seq,
                    reason: "its payload is not a seal".into(),
                })
            }
            Err(e) => {
                return Err(SealError::Forged {
                    seal_seq: seq,
                    reason: format!("it does not decode: {e}"),
                })
            }
        };
        self.seal(seq, &sealed)
    }

    /// Checks the seal stored at `seal_seq` against the records read so far.
    pub fn seal(&mut self, seal_seq: u64, sealed: &LogSealed) -> Result<(), SealError> {
        let key = sealed.verify_signature(seal_seq, self.trusted.as_ref())?;
        self.trusted.get_or_insert(key);
        let previous = self.summary.sealed_through;
        let first_read = self.pending.front().map_or(seal_seq, |(s, _)| *s);
        if previous == 0 {
            // The first seal of a read that starts past seq 1 (an export of
            // a later range) may begin before the first record read: only a
            // seal wholly inside the read can be checked.
            if first_read > 1 && sealed.from_seq < first_read {
                return Ok(());
            }
            if first_read <= 1 && sealed.from_seq != 1 {
                return Err(SealError::Discontinuous {
                    seal_seq,
                    from: sealed.from_seq,
                    previous_through: 0,
                });
            }
        } else if sealed.from_seq != previous + 1 {
            return Err(SealError::Discontinuous {
                seal_seq,
                from: sealed.from_seq,
                previous_through: previous,
            });
        }
        while self
            .pending
            .front()
            .is_some_and(|(s, _)| *s < sealed.from_seq)
        {
            self.pending.pop_front();
        }
        let n = self
            .pending
            .iter()
            .take_while(|(s, _)| *s <= sealed.through_seq)
            .count();
        let range: Vec<(u64, Leaf)> = self.pending.drain(..n).collect();
        sealed.check_range(seal_seq, &range)?;
        self.summary.seals += 1;
        self.summary.sealed_records += range.len() as u64;
        self.summary.sealed_through = sealed.through_seq;
        Ok(())
    }

    /// What was established so far.
    pub fn summary(&self) -> SealSummary {
        self.summary
    }

    /// The key seals were checked with (pinned, or the first seal's).
    pub fn key(&self) -> Option<&VerifyingKey> {
        self.trusted.as_ref()
    }
}

#[cfg(test)]
mod tests;
