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
//! Every service of a process admits the same records: a signature that
//! verified once is remembered ([`Verified`], by a digest of key and bytes)
//! so the other services of the process do not verify it again.

use ed25519_dalek::{Verifier, VerifyingKey};
use powernode_events::payloads::fleet::AgentEnrolled;
use powernode_events::signing::{split_signed, verify_batch_encoded};
use powernode_events::{Envelope, EventPayload};
use powernode_log::Record;
use powernode_projections::Projection;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::{LazyLock, Mutex};

/// Signatures that verified in this process, by a digest of the key and the
/// record's bytes: a pure function's memo, so sharing it is safe. Two
/// generations of at most [`Verified::GENERATION`] entries each bound it.
#[derive(Default)]
struct Verified {
    current: HashSet<[u8; 32]>,
    previous: HashSet<[u8; 32]>,
}

impl Verified {
    const GENERATION: usize = 100_000;

    fn digest(key: &[u8; 32], bytes: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(key);
        h.update(bytes);
        h.finalize().into()
    }

    fn contains(&self, d: &[u8; 32]) -> bool {
        self.current.contains(d) || self.previous.contains(d)
    }

    fn insert(&mut self, d: [u8; 32]) {
        if self.current.len() >= Self::GENERATION {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(d);
    }
}

static VERIFIED: LazyLock<Mutex<Verified>> = LazyLock::new(Mutex::default);

fn verified() -> std::sync::MutexGuard<'static, Verified> {
    // The set holds plain digests: a panic elsewhere cannot leave it inconsistent.
    VERIFIED.lock().unwrap_or_else(|e| e.into_inner())
}

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
    key: [u8; 32],
    ok: bool,
}

/// Decodes a record (payload included, old versions upcast).
pub fn decode(record: &Record) -> Result<Envelope, Refusal> {
    let envelope = Envelope::decode(&record.bytes).map_err(|e| Refusal::of(e.to_string(), None))?;
    if envelope.kind() != record.kind() {
        return Err(Refusal::of(
            format!(
                "subject says kind {:?} but the envelope says {:?}",
                record.kind(),
                envelope.kind()
            ),
            Some((envelope.kind(), envelope.id.to_string())),
        ));
    }
    Ok(envelope)
}

/// Raw bytes of a hex public key.
fn key_bytes(hex_key: &str) -> Option<[u8; 32]> {
    hex::decode(hex_key).ok()?.try_into().ok()
}

/// The key an agent event must verify with: an enrollment's own key, else
/// the key the agent enrolled with.
fn expected_key<S: Projection>(
    instance: &str,
    envelope: &Envelope,
    state: &S,
) -> Result<[u8; 32], String> {
    match &envelope.payload {
        EventPayload::AgentEnrolled(AgentEnrolled {
            public_key,
            instance_id,
        }) => {
            if instance_id != instance {
                return Err(format!("tried to enroll instance {instance_id}"));
            }
            key_bytes(public_key)
                .ok_or_else(|| format!("enrolls a malformed public key {public_key:?}"))
        }
        _ => state
            .agent_key(instance)
            .ok_or_else(|| "has no enrolled key; its events cannot be verified".to_string()),
    }
}

/// Admits a decoded record, using a pre-verified signature verdict when it
/// was reached with the very key admission uses.
pub fn admit_decoded<S: Projection>(
    record: &Record,
    decoded: Result<Envelope, Refusal>,
    verdict: Option<Verdict>,
    state: &S,
) -> Result<Envelope, Refusal> {
    let envelope = decoded?;
    let Some(instance) = envelope.actor.agent_instance() else {
        return Ok(envelope);
    };
    let refuse = |reason: String| {
        Refusal::of(
            format!("agent {instance}: {reason}"),
            Some((envelope.kind(), envelope.id.to_string())),
        )
    };
    let key = expected_key(instance, &envelope, state).map_err(refuse)?;
    if envelope.signature.is_none() {
        return Err(refuse("event is not signed".into()));
    }
    let ok = match verdict {
        Some(v) if v.key == key => v.ok,
        _ => {
            let digest = Verified::digest(&key, &record.bytes);
            if verified().contains(&digest) {
                true
            } else {
                let vk = VerifyingKey::from_bytes(&key)
                    .map_err(|e| refuse(format!("invalid public key: {e}")))?;
                let ok = verify_one(&record.bytes, &envelope, &vk);
                if ok {
                    verified().insert(digest);
                }
                ok
            }
        }
    };
    if !ok {
        return Err(refuse(
            "signature does not verify against the enrolled key".into(),
        ));
    }
    Ok(envelope)
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

/// Signatures per ed25519 batch.
const BATCH: usize = 64;

/// Agent keys seen in enrollments, kept across batches so pre-verification
/// can run ahead of the projection (e.g. in a replay pipeline), and the
/// decompressed form of every key met (decompressing costs more than a hash
/// lookup).
#[derive(Debug, Default)]
pub struct KeyHints {
    enrolled: HashMap<String, [u8; 32]>,
    decompressed: HashMap<[u8; 32], Option<VerifyingKey>>,
}

/// Verifies the agent signatures of a batch of records ahead of admission,
/// spread over the machine's cores. Keys are guessed as admission will
/// resolve them (enrollments seen so far, then `lookup`, normally the
/// projection); admission re-checks any verdict whose key turns out different.
pub fn preverify(
    records: &[Record],
    decoded: &[Result<Envelope, Refusal>],
    hints: &mut KeyHints,
    lookup: impl Fn(&str) -> Option<[u8; 32]>,
) -> Vec<Option<Verdict>> {
    let mut jobs: Vec<(usize, &[u8], [u8; 32], VerifyingKey)> = Vec::new();
    let mut digests: Vec<[u8; 32]> = Vec::new();
    let mut verdicts = vec![None; records.len()];
    for (i, (record, envelope)) in records.iter().zip(decoded).enumerate() {
        let Ok(envelope) = envelope else { continue };
        let Some(instance) = envelope.actor.agent_instance() else {
            continue;
        };
        if envelope.signature.is_none() {
            continue;
        }
        let key = if let EventPayload::AgentEnrolled(p) = &envelope.payload {
            let Some(k) = key_bytes(&p.public_key) else {
                continue;
            };
            hints.enrolled.insert(instance.to_string(), k);
            Some(k)
        } else {
            hints
                .enrolled
                .get(instance)
                .copied()
                .or_else(|| lookup(instance))
        };
        let Some(key) = key else { continue };
        let digest = Verified::digest(&key, &record.bytes);
        if verified().contains(&digest) {
            verdicts[i] = Some(Verdict { key, ok: true });
            continue;
        }
        let decompressed = *hints
            .decompressed
            .entry(key)
            .or_insert_with(|| VerifyingKey::from_bytes(&key).ok());
        if let Some(vk) = decompressed {
            jobs.push((i, &record.bytes, key, vk));
            digests.push(digest);
        }
    }
    if jobs.is_empty() {
        return verdicts;
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4);
    let per_thread = jobs.len().div_ceil(threads).max(BATCH);
    let results: Vec<Vec<(usize, Verdict)>> = if jobs.len() <= BATCH {
        vec![verify_jobs(&jobs)]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = jobs
                .chunks(per_thread)
                .map(|part| s.spawn(|| verify_jobs(part)))
                .collect();
            // A panicking verifier thread is a bug in ed25519-dalek; fall back to no verdicts.
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        })
    };
    let job_of: HashMap<usize, usize> =
        jobs.iter().enumerate().map(|(j, job)| (job.0, j)).collect();
    let mut memo = verified();
    for (i, v) in results.into_iter().flatten() {
        if v.ok {
            memo.insert(digests[job_of[&i]]);
        }
        verdicts[i] = Some(v);
    }
    verdicts
}

fn verify_jobs(jobs: &[(usize, &[u8], [u8; 32], VerifyingKey)]) -> Vec<(usize, Verdict)> {
    let mut out = Vec::with_capacity(jobs.len());
    for chunk in jobs.chunks(BATCH) {
        let items: Vec<(&[u8], VerifyingKey)> = chunk.iter().map(|(_, b, _, k)| (*b, *k)).collect();
        let all_ok = verify_batch_encoded(&items).is_ok();
        for (i, bytes, raw_key, key) in chunk {
            // A record not in canonical shape gets no verdict: admission re-encodes it.
            let ok = if all_ok {
                true
            } else {
                let Some((signed, sig)) = split_signed(bytes) else {
                    continue;
                };
                key.verify(&signed, &ed25519_dalek::Signature::from_bytes(&sig.0))
                    .is_ok()
            };
            out.push((*i, Verdict { key: *raw_key, ok }));
        }
    }
    out
}
