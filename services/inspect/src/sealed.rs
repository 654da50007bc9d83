//! Replay verified by the log's seals: records inside a sealed range are
//! checked by the seal's digest (one signature per seal, see
//! [`powernode_events::seal`]); only the agent signatures of records past
//! the last seal are checked one by one.
//!
//! One pass: the records stream through a [`SealVerifier`] on their way
//! into the fold, which admits them as `--trust-signatures` does (the
//! refusals the log records are refused). A seal that does not match its
//! records fails the replay, naming the record by sequence. Records no
//! seal covers are kept (their bytes are shared, not copied) and, after the
//! fold, their signatures are checked against the keys admission would use;
//! should one fail that the fold applied, the source is folded again with
//! every signature verified ([`Mode::Verified`]). A source without seals
//! (or with a longer unsealed tail than [`MAX_UNSEALED`]) is folded with
//! every signature verified too.

use crate::replay::{fold, fold_stream, Folded};
use anyhow::anyhow;
use futures::StreamExt;
use powernode_archive::{Bound, Source};
use powernode_events::seal::{SealSummary, SealVerifier};
use powernode_events::VerifyingKey;
use powernode_log::{Filter, Record};
use powernode_projections::FleetState;
use powernode_runtime::admission::{self, KeyHints};
use powernode_runtime::replay::Signatures;
use serde::Serialize;
use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

/// Unsealed records kept for their signature checks at most; past this the
/// source is folded again with every signature verified.
pub const MAX_UNSEALED: usize = 262_144;

/// How a fold checked the records' integrity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Mode {
    /// Sealed ranges by digest, agent signatures past the last seal one by one.
    Sealed {
        /// Seals checked.
        seals: u64,
        /// Records inside them.
        sealed_records: u64,
        /// The last sealed sequence.
        sealed_through: u64,
        /// Agent signatures checked past the last seal.
        signatures: u64,
        /// The seal key (hex).
        key: String,
        /// True when the key was given (`--seal-key` or the data directory),
        /// false when taken from the first seal (the file vouches for itself).
        pinned: bool,
    },
    /// Every agent signature checked (no seals, or a fallback).
    Verified {
        /// Why not sealed.
        reason: String,
    },
    /// No signature checked (`--trust-signatures`).
    Trusted,
}

impl Mode {
    /// One line for humans: `verified: 1,000,000 events by 12 seals + 340
    /// signatures past the last seal (seal key 3d…, pinned)`.
    pub fn describe(&self, records: u64) -> String {
        match self {
            Self::Sealed { seals, sealed_records, signatures, key, pinned, .. } => format!(
                "verified: {records} events, {sealed_records} by {seals} seal(s) + {signatures} signature(s) past the last seal (seal key {}…, {})",
                &key[..key.len().min(16)],
                if *pinned { "pinned" } else { "NOT pinned: taken from the log itself; pass --seal-key" }
            ),
            Self::Verified { reason } => format!("verified: {records} events, every signature checked ({reason})"),
            Self::Trusted => format!("trusted: {records} events, signatures not re-verified (--trust-signatures)"),
        }
    }
}

/// What the seal check saw while the records streamed.
#[derive(Debug)]
struct Watch {
    verifier: SealVerifier,
    unsealed: VecDeque<Record>,
    overflow: bool,
}

/// Folds `source` through `until`, trusting what seals cover (by a key
/// `trusted`, or unpinned the first seal's) and checking the rest.
pub async fn fold_sealed(
    source: &Source,
    until: Bound,
    trusted: Option<VerifyingKey>,
    progress: bool,
) -> anyhow::Result<(Folded, Mode)> {
    let watch = Arc::new(Mutex::new(Watch {
        verifier: SealVerifier::new(trusted),
        unsealed: VecDeque::new(),
        overflow: false,
    }));
    let records = source.records(1, until, Filter::all()).await?;
    let w = watch.clone();
    let checked = records
        .ready_chunks(1024)
        .map(move |chunk| {
            let mut w = w.lock().unwrap_or_else(|e| e.into_inner());
            let mut out = Vec::with_capacity(chunk.len());
            for item in chunk {
                let record = match item {
                    Ok(r) => r,
                    Err(e) => {
                        out.push(Err(e));
                        break;
                    }
                };
                if let Err(e) = w
                    .verifier
                    .record(record.seq, &record.subject, &record.bytes)
                {
                    out.push(Err(anyhow!("the log was tampered with: {e}")));
                    break;
                }
                let through = w.verifier.summary().sealed_through;
                while w.unsealed.front().is_some_and(|r| r.seq <= through) {
                    w.unsealed.pop_front();
                }
                if !w.overflow {
                    if w.unsealed.len() >= MAX_UNSEALED {
                        w.overflow = true;
                        w.unsealed.clear();
                    } else {
                        w.unsealed.push_back(record.clone());
                    }
                }
                out.push(Ok(record));
            }
            futures::stream::iter(out)
        })
        .flatten()
        .boxed();
    let mut folded = fold_stream(
        source,
        checked,
        until,
        Signatures::Trust(Arc::default()),
        progress,
    )
    .await?;
    let (summary, key, unsealed, overflow) = {
        let mut w = watch.lock().unwrap_or_else(|e| e.into_inner());
        let through = w.verifier.summary().sealed_through;
        let unsealed: Vec<Record> = std::mem::take(&mut w.unsealed)
            .into_iter()
            .filter(|r| r.seq > through && r.seq <= folded.stats.last_seq)
            .collect();
        let key = w.verifier.key().map(|k| hex::encode(k.as_bytes()));
        (w.verifier.summary(), key, unsealed, w.overflow)
    };
    let verify_all = |reason: String| async move {
        let folded = fold(source, until, false, progress).await?;
        Ok::<_, anyhow::Error>((folded, Mode::Verified { reason }))
    };
    if summary.seals == 0 {
        return verify_all("the log has no seals".into()).await;
    }
    if overflow {
        return verify_all(format!(
            "more than {MAX_UNSEALED} records past the last seal"
        ))
        .await;
    }
    // The trusted fold's refusals: the ones the log records.
    let recorded = std::mem::take(&mut folded.stats.recorded_rejections);
    let refused: BTreeSet<u64> = folded.stats.refused.iter().map(|(s, _)| *s).collect();
    let missed_recorded = recorded.keys().any(|s| {
        (folded.stats.first_seq..=folded.stats.last_seq).contains(s) && !refused.contains(s)
    });
    if missed_recorded {
        return verify_all("a record the log records as refused was applied".into()).await;
    }
    folded.stats.recorded_rejections = recorded;
    let (signatures, differs) = check_tail(&unsealed, &folded.state, &refused);
    if let Some(seq) = differs {
        return verify_all(format!(
            "the signature of seq {seq}, past the last seal, does not verify"
        ))
        .await;
    }
    folded.signatures = Signatures::Verify;
    let mode = Mode::Sealed {
        seals: summary.seals,
        sealed_records: summary.sealed_records,
        sealed_through: summary.sealed_through,
        signatures,
        key: key.unwrap_or_default(),
        pinned: summary.pinned,
    };
    Ok((folded, mode))
}

/// Checks the agent signatures of the unsealed records against the keys
/// the fold ended with: how many were checked, and the first record whose
/// verdict differs from the fold's (applied but bad, or refused but good).
fn check_tail(
    records: &[Record],
    state: &FleetState,
    refused: &BTreeSet<u64>,
) -> (u64, Option<u64>) {
    use powernode_projections::Projection as _;
    let decoded: Vec<_> = records.iter().map(admission::decode).collect();
    let mut hints = KeyHints::default();
    let verdicts = admission::preverify(records, &decoded, &mut hints, |i| state.agent_key(i));
    let mut checked = 0;
    for ((record, envelope), verdict) in records.iter().zip(decoded).zip(verdicts) {
        let signed = envelope
            .as_ref()
            .is_ok_and(|e| e.actor.agent_instance().is_some());
        if signed {
            checked += 1;
        }
        let ok = admission::admit_decoded(record, envelope, verdict, state).is_ok();
        if ok == refused.contains(&record.seq) && signed {
            return (checked, Some(record.seq));
        }
    }
    (checked, None)
}

/// The summary of a seal check (for `events verify`).
pub fn summary_line(s: &SealSummary) -> String {
    format!("{} seal(s) over seq 1-{}", s.seals, s.sealed_through)
}

/// The seal key a verifier pins.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SealKeyArgs {
    /// The platform's seal public key (hex) to check the log's seals with:
    /// printed by `powernode up` and kept in `<data-dir>/keys/seal.pub`
    /// (read from there when this is not given). Without either, the
    /// first seal's key is used and the output says the key is not pinned.
    #[arg(long, env = "POWERNODE_SEAL_KEY", value_name = "HEX")]
    pub seal_key: Option<String>,
}

impl SealKeyArgs {
    /// The pinned key: `--seal-key`, else `<data_dir>/keys/seal.pub`.
    pub fn resolve(&self, data_dir: &std::path::Path) -> anyhow::Result<Option<VerifyingKey>> {
        let (text, from) = match &self.seal_key {
            Some(k) => (k.clone(), "--seal-key".to_string()),
            None => {
                let path = data_dir.join("keys").join("seal.pub");
                match std::fs::read_to_string(&path) {
                    Ok(t) => (t, path.display().to_string()),
                    Err(_) => return Ok(None),
                }
            }
        };
        powernode_events::signing::verifying_key_from_hex(text.trim())
            .map(Some)
            .map_err(|e| anyhow!("the seal key in {from} is not usable: {e}"))
    }
}
