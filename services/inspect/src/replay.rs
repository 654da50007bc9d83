//! The fleet rebuilt from a [`Source`] up to a [`Bound`]: what `powernode
//! replay` prints ([`fold`]), its digest ([`state_hash`]) and what each event
//! of a range changed ([`diff`]).
//!
//! The fold runs the consumers' own pipeline
//! ([`powernode_runtime::replay::rebuild_from`]), so a replay admits exactly the
//! records a live projection applied: the same log to the same point gives
//! the same [`FleetState`], byte for byte. Records are streamed from the
//! source; only the fleet is held.

use super::jsondiff::{self, Change};
use crate::Progress;
use anyhow::Context as _;
use futures::StreamExt;
use powernode_archive::{Bound, Source};
use powernode_events::subject::parse_subject;
use powernode_events::{Envelope, EventKind, EventPayload};
use powernode_log::{Filter, Record};
use powernode_projections::{FleetState, Projection};
use powernode_runtime::replay::{self as pipeline, RebuildOptions, ReplayStats, Signatures};
use serde::Serialize;
use serde_json::Value;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// The kind live consumers record a refused record as.
const REJECTED_KIND: &str = EventKind::RecordRejected.as_str();

pub use powernode_projections::state_hash;

/// A fold's result.
#[derive(Debug, Clone)]
pub struct Folded {
    /// The fleet as of the last record read.
    pub state: FleetState,
    /// What was read, applied and refused.
    pub stats: ReplayStats,
    /// The admission used, to continue the fold with the same ([`diff`]);
    /// with trusted signatures, it carries every refusal the log records.
    pub signatures: Signatures,
}

/// Every `system.log.record_rejected` in the source from sequence `from`
/// on, whatever the bound: a consumer records a refusal after it met the
/// record, so the refusal of a record before a bound may lie after it.
/// Rejected sequence → reason.
pub async fn recorded_rejections(
    source: &Source,
    from: u64,
) -> anyhow::Result<BTreeMap<u64, String>> {
    let filter = Filter {
        account: None,
        kind_prefix: Some(REJECTED_KIND.to_string()),
    };
    let mut records = source.records(from, Bound::End, filter).await?;
    let mut out = BTreeMap::new();
    while let Some(record) = records.next().await {
        let record = record?;
        // A rejection that does not decode is itself refused by admission
        // and says nothing about other records.
        if let Ok(Envelope {
            payload: EventPayload::RecordRejected(r),
            ..
        }) = Envelope::decode(&record.bytes)
        {
            out.entry(r.rejected_seq).or_insert(r.reason);
        }
    }
    Ok(out)
}

/// How many records a read through `until` will see at most, when it can
/// be known cheaply (for the progress bar).
async fn expected_records(source: &Source, until: Bound) -> Option<u64> {
    match (source, until) {
        (Source::Log(log), _) => {
            let last = log.last_seq().await.ok()?;
            Some(match until {
                Bound::Seq(s) => s.min(last),
                Bound::Time(_) | Bound::End => last,
            })
        }
        (Source::File(_), Bound::Seq(s)) => Some(s),
        (Source::File(_), _) => None,
    }
}

/// Folds the source from its first record through `until` into a fresh
/// fleet; a progress bar (stderr, after a second, on a terminal) when
/// `progress`.
///
/// With `trust_signatures`, agent signatures are not re-verified
/// ([`Signatures::Trust`]) and the refusals are the ones the log records.
/// Those are collected during the fold itself (plus a filtered read of
/// what lies past the bound), so the source is read once; only when a
/// record the fold applied turns out to be recorded as refused (a forged
/// signature the trusted fold could not see) is it folded again, refusing
/// those records.
pub async fn fold(
    source: &Source,
    until: Bound,
    trust_signatures: bool,
    progress: bool,
) -> anyhow::Result<Folded> {
    if !trust_signatures {
        return fold_with(source, until, Signatures::Verify, progress).await;
    }
    let trusted = Signatures::Trust(Arc::default());
    let mut folded = fold_with(source, until, trusted, progress).await?;
    let mut recorded = std::mem::take(&mut folded.stats.recorded_rejections);
    if until != Bound::End {
        recorded.extend(recorded_rejections(source, folded.stats.last_seq + 1).await?);
    }
    let (first, last) = (folded.stats.first_seq, folded.stats.last_seq);
    let refused: BTreeSet<u64> = folded.stats.refused.iter().map(|(s, _)| *s).collect();
    let missed = recorded
        .keys()
        .any(|s| (first..=last).contains(s) && !refused.contains(s));
    let recorded = Arc::new(recorded);
    if missed {
        return fold_with(source, until, Signatures::Trust(recorded), progress).await;
    }
    // The same refusals; say why as the consumers recorded it.
    for (seq, reason) in &mut folded.stats.refused {
        if let Some(r) = recorded.get(seq) {
            reason.clone_from(r);
        }
    }
    folded.stats.recorded_rejections = (*recorded).clone();
    folded.signatures = Signatures::Trust(recorded);
    Ok(folded)
}

async fn fold_with(
    source: &Source,
    until: Bound,
    signatures: Signatures,
    progress: bool,
) -> anyhow::Result<Folded> {
    let records = source.records(1, until, Filter::all()).await?;
    fold_stream(source, records, until, signatures, progress).await
}

/// Folds `records` (read from `source` through `until`) into a fresh
/// fleet with the admission `signatures`.
pub(crate) async fn fold_stream(
    source: &Source,
    records: powernode_archive::RecordStream,
    until: Bound,
    signatures: Signatures,
    progress: bool,
) -> anyhow::Result<Folded> {
    let mut bar = match progress {
        true => Some(Progress::new(
            expected_records(source, until).await,
            "replaying",
        )),
        false => None,
    };
    let options = RebuildOptions {
        until: match until {
            Bound::Seq(s) => s,
            Bound::Time(_) | Bound::End => u64::MAX,
        },
        signatures: signatures.clone(),
    };
    let (state, stats) =
        pipeline::rebuild_from(records, FleetState::new(), options, |s: &ReplayStats| {
            if let Some(bar) = bar.as_mut() {
                bar.set(s.records);
            }
        })
        .await
        .with_context(|| format!("replaying {}", source.describe()))?;
    if let Some(bar) = bar {
        bar.finish();
    }
    Ok(Folded {
        state,
        stats,
        signatures,
    })
}

/// What one event of a `--diff` range did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventDiff {
    /// Log sequence.
    pub seq: u64,
    /// Kind (from the envelope, or the subject when it did not decode).
    pub kind: String,
    /// `type/id` of the aggregate.
    pub aggregate: String,
    /// Who caused it (`service:sdwan`, …), when it decoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The account it belongs to.
    pub account: String,
    /// Why admission refused it (it then changed nothing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// What it changed in its account's state, as dotted paths relative to
    /// the account (`clusters.<id>.status`); empty when nothing.
    pub changes: Vec<Change>,
}

/// Totals of a `--diff` range.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DiffTotals {
    /// Records in the range.
    pub records: u64,
    /// Records that changed their account's state.
    pub changed: u64,
    /// Records admission refused.
    pub refused: u64,
    /// Sequence of the last record of the range (0: none).
    pub last_seq: u64,
}

/// Continues a fold with every record after it through `until`, with the
/// fold's admission (signatures, when verified, checked one by one),
/// calling `each` with what each record changed. The state at the end.
pub async fn diff(
    source: &Source,
    folded: Folded,
    until: Bound,
    mut each: impl FnMut(&EventDiff),
) -> anyhow::Result<(FleetState, DiffTotals)> {
    let Folded {
        mut state,
        stats,
        signatures,
    } = folded;
    let after = stats.last_seq;
    let mut records = source.records(after + 1, until, Filter::all()).await?;
    let mut totals = DiffTotals::default();
    // The account's JSON after the last event that touched it: the next
    // event's "before", so each account is serialized once per event.
    let mut latest: HashMap<String, Value> = HashMap::new();
    while let Some(record) = records.next().await {
        let record = record?;
        if record.seq <= after {
            continue;
        }
        if let Bound::Seq(s) = until {
            if record.seq > s {
                break;
            }
        }
        totals.records += 1;
        totals.last_seq = record.seq;
        let d = match pipeline::admit_one(&record, &signatures, &state) {
            Ok(event) => {
                let account = event.account_id.to_string();
                let before = match latest.remove(&account) {
                    Some(v) => v,
                    None => account_json(&state, &event)?,
                };
                state.apply(record.seq, &event);
                let after_json = account_json(&state, &event)?;
                let changes = jsondiff::diff(&before, &after_json);
                latest.insert(account.clone(), after_json);
                if !changes.is_empty() {
                    totals.changed += 1;
                }
                EventDiff {
                    seq: record.seq,
                    kind: event.kind().to_string(),
                    aggregate: event.aggregate.to_string(),
                    actor: Some(event.actor.to_string()),
                    account,
                    refused: None,
                    changes,
                }
            }
            Err(refusal) => {
                totals.refused += 1;
                refused_diff(&record, refusal.kind, refusal.reason)
            }
        };
        each(&d);
    }
    Ok((state, totals))
}

/// The JSON of the account `event` belongs to (`{}` before it exists).
fn account_json(state: &FleetState, event: &Envelope) -> anyhow::Result<Value> {
    Ok(match state.account(&event.account_id) {
        Some(a) => serde_json::to_value(a).context("cannot show an account's state")?,
        None => Value::Object(serde_json::Map::new()),
    })
}

/// A refused record, described from its subject where the envelope could
/// not be read.
fn refused_diff(record: &Record, kind: Option<String>, reason: String) -> EventDiff {
    let parts = parse_subject(&record.subject);
    EventDiff {
        seq: record.seq,
        kind: kind.unwrap_or_else(|| record.kind().to_string()),
        aggregate: parts.as_ref().map_or_else(String::new, |p| {
            format!("{}/{}", p.aggregate_type, p.aggregate_id)
        }),
        actor: None,
        account: record.account().to_string(),
        refused: Some(reason),
        changes: Vec::new(),
    }
}

#[cfg(test)]
mod tests;
