//! `powernode events import FILE`: a full check of the file first (so a
//! damaged export imports nothing), then its records, byte for byte, into
//! an empty log in order ([`powernode_log::EventLog::append_raw`]).

use super::super::output::{emit, print_json};
use super::ImportArgs;
use anyhow::{bail, Context};
use powernode_archive::{Reader, Summary};
use powernode_events::seal::{SealSummary, SealVerifier};
use powernode_events::{RawEnvelope, VerifyingKey};
use powernode_inspect::Progress;
use powernode_log::embedded::EmbeddedLog;
use powernode_log::jetstream::{JetStreamConfig, JetStreamLog};
use powernode_log::{RawRecord, SharedLog};
use serde_json::json;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use uuid::Uuid;

/// Records appended per call.
const CHUNK: usize = 1000;

/// What the check found besides the summary: records whose event id was
/// already seen earlier in the file (stored twice in the source log, e.g.
/// re-sent after JetStream's duplicate window): they are imported without
/// an id, so they are not taken for duplicates.
struct Checked {
    summary: Summary,
    repeated_ids: HashSet<u64>,
    /// The export's seals, each checked against the records it covers.
    seals: SealSummary,
}

/// Runs the import.
pub async fn run(args: ImportArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let path = args.file.clone();
    let key = args.seal.resolve(&args.data_dir)?;
    let checked = tokio::task::spawn_blocking(move || check(&path, key))
        .await
        .context("the check stopped")??;
    let summary = &checked.summary;
    let log = open_target(&args).await?;
    let present = log.last_seq().await?;
    if present != 0 {
        bail!(
            "{} already holds {present} events; import only into an empty log (a new --stream, \
             or a new --data-dir)",
            log.describe()
        );
    }
    let imported = load(&args.file, &log, &checked)
        .await
        .map_err(|(done, e)| {
            e.context(format!(
                "import stopped after {done} of {} records; {} now holds a partial import: \
             remove it before trying again",
                summary.records,
                log.describe()
            ))
        })?;
    report(&args, &checked, &log.describe(), imported, started);
    Ok(())
}

/// Reads the whole file: header, every record's checksum and order, the
/// trailer, and every seal against the records it covers (a changed,
/// missing, reordered or inserted record, or a forged seal, is named by
/// seq and nothing is imported).
fn check(path: &Path, key: Option<VerifyingKey>) -> anyhow::Result<Checked> {
    let mut seals = SealVerifier::new(key);
    let mut reader = Reader::open(path).context("nothing was imported")?;
    let mut progress = Progress::new(None, "checking");
    let mut seen: HashSet<Uuid> = HashSet::new();
    let mut repeated_ids = HashSet::new();
    let mut n = 0;
    for item in reader.by_ref() {
        let record = item.context("nothing was imported")?;
        n += 1;
        seals
            .record(record.seq, &record.subject, &record.bytes)
            .map_err(|e| {
                anyhow::anyhow!("the export was tampered with: {e}; nothing was imported")
            })?;
        if let Some(id) = event_id(&record.bytes) {
            if !seen.insert(id) {
                repeated_ids.insert(record.seq);
            }
        }
        progress.set(n);
    }
    progress.finish();
    let summary = reader
        .summary()
        .cloned()
        .context("the export ended without a summary")?;
    Ok(Checked {
        summary,
        repeated_ids,
        seals: seals.summary(),
    })
}

fn event_id(bytes: &[u8]) -> Option<Uuid> {
    RawEnvelope::from_bytes(bytes).ok().map(|e| e.id)
}

async fn open_target(args: &ImportArgs) -> anyhow::Result<SharedLog> {
    Ok(match &args.nats {
        Some(url) => {
            let mut config = JetStreamConfig::new(url);
            config.stream = args.stream.clone();
            config.auth = args.nats_auth.client_auth()?;
            config.replicas = args.replicas;
            Arc::new(
                JetStreamLog::connect(config)
                    .await
                    .with_context(|| format!("cannot open stream {} at {url}", args.stream))?,
            )
        }
        None => {
            let dir = args.data_dir.join("log");
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            Arc::new(EmbeddedLog::open(&dir).with_context(|| {
                format!(
                    "cannot open the embedded log at {} (stop a `powernode up` running on it)",
                    dir.display()
                )
            })?)
        }
    })
}

/// Appends every record in order; the count, or how many were stored
/// before the failure.
async fn load(
    file: &Path,
    log: &SharedLog,
    checked: &Checked,
) -> Result<u64, (u64, anyhow::Error)> {
    let total = checked.summary.records;
    let (tx, mut rx) = mpsc::channel::<anyhow::Result<Vec<RawRecord>>>(4);
    let path = file.to_path_buf();
    let repeated = checked.repeated_ids.clone();
    let reading = tokio::task::spawn_blocking(move || {
        let reader = match Reader::open(&path) {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.blocking_send(Err(e.into()));
                return;
            }
        };
        let mut chunk = Vec::with_capacity(CHUNK);
        for item in reader {
            match item {
                Ok(record) => {
                    let event_id = if repeated.contains(&record.seq) {
                        None
                    } else {
                        event_id(&record.bytes)
                    };
                    chunk.push(RawRecord {
                        subject: record.subject,
                        bytes: record.bytes,
                        event_id,
                    });
                    if chunk.len() == CHUNK
                        && tx.blocking_send(Ok(std::mem::take(&mut chunk))).is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e.into()));
                    return;
                }
            }
        }
        if !chunk.is_empty() {
            let _ = tx.blocking_send(Ok(chunk));
        }
    });
    let mut progress = Progress::new(Some(total), "importing");
    let mut done = 0u64;
    while let Some(chunk) = rx.recv().await {
        let chunk = chunk.map_err(|e| (done, e))?;
        let seqs = log
            .append_raw(&chunk)
            .await
            .map_err(|e| (done, anyhow::Error::from(e)))?;
        for seq in seqs {
            done += 1;
            if seq != done {
                return Err((
                    done,
                    anyhow::anyhow!("record {done} was stored at seq {seq}, not {done}"),
                ));
            }
        }
        progress.set(done);
    }
    progress.finish();
    let _ = reading.await;
    if done != total {
        return Err((
            done,
            anyhow::anyhow!("the file changed while importing: {done} of {total} records read"),
        ));
    }
    Ok(done)
}

fn report(args: &ImportArgs, checked: &Checked, target: &str, imported: u64, started: Instant) {
    let summary = &checked.summary;
    let seals = &checked.seals;
    let took = started.elapsed().as_secs_f64();
    let rate = if took > 0.0 {
        imported as f64 / took
    } else {
        0.0
    };
    let renumbered = summary.renumbers();
    if args.output.is_data() {
        print_json(&json!({
            "file": args.file.display().to_string(),
            "events": imported,
            "into": target,
            "first_seq": (imported > 0).then_some(1),
            "last_seq": (imported > 0).then_some(imported),
            "export_first_seq": summary.seq_range.map(|r| r.0),
            "export_last_seq": summary.seq_range.map(|r| r.1),
            "renumbered": renumbered,
            "seconds": took,
            "events_per_second": rate,
            "seals": seals.seals,
            "sealed_through": seals.sealed_through,
            "seal_key_pinned": seals.pinned,
        }));
        return;
    }
    let mut text = format!(
        "imported {} from {} into {target} in {took:.1} s ({rate:.0} events/s)\n",
        super::events(imported),
        args.file.display()
    );
    text.push_str(&format!(
        "checked: {} seal(s) over seq 1-{} by digest ({}); signatures past the last seal are \
         checked by the consumers as they fold the imported log\n",
        seals.seals,
        seals.sealed_through,
        if seals.pinned {
            "seal key pinned"
        } else {
            "seal key NOT pinned: pass --seal-key"
        }
    ));
    if let (true, Some((a, b))) = (renumbered, summary.seq_range) {
        text.push_str(&format!(
            "note: the export's records (seq {a}-{b}) do not start at 1 or have gaps (a \
             filtered export): they were given new, contiguous sequences 1-{imported}\n"
        ));
    }
    emit(&text);
}
