//! `powernode events export` and `powernode events import`: the log to a
//! portable file ([`powernode_archive`]) and back into an empty log, so a bug
//! seen in production can be replayed on a laptop.
//!
//! * [`export`] here: pick the source (JetStream, an export file, the
//!   embedded log of a stopped node, or the running node's API), write or
//!   download the file, print a summary;
//! * `import` — check the whole file, then load it into an empty log.

use super::output::{emit, print_json, Format};
use crate::ApiArgs;
use anyhow::{bail, Context};
use futures::StreamExt;
use powernode_archive::select::Selection;
use powernode_archive::source::{open_embedded, Local};
use powernode_archive::{Source, SourceArgs};
use powernode_archive::{Summary, Writer};
use powernode_client::ExportQuery;
use powernode_inspect::Progress;
use powernode_log::jetstream::DEFAULT_STREAM;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How sequences change on import; said in both `--help`s and the summaries.
macro_rules! renumbering {
    () => {
        "An export that does not start at seq 1 or has gaps (--since, --kind-prefix, \
         --account, or a token scoped to one account) gives its records new, contiguous \
         sequences from 1 when imported."
    };
}

mod import;

/// `powernode events export`.
#[derive(Debug, clap::Args)]
#[command(after_help = concat!(
    "Reads, in this order: --file or --nats when given; otherwise the embedded log in \
     --data-dir of a stopped node; otherwise (no local log, or `powernode up` is running on \
     it) the running node through its API (--url, --token): a token exports its own account, \
     the admin token the whole log.\n\nSecrets are never in an export: the log holds \
     fingerprints only.\n\n",
    renumbering!()
))]
pub struct ExportArgs {
    /// Where to write the export (`-` for stdout).
    #[arg(long = "out", short = 'f', value_name = "FILE")]
    pub out: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
    /// First record: a sequence number or an RFC 3339 time.
    #[arg(long, value_name = "SEQ|TIME")]
    pub since: Option<String>,
    /// Last record: a sequence number or an RFC 3339 time (default: the
    /// last one when the export starts).
    #[arg(long, value_name = "SEQ|TIME")]
    pub until: Option<String>,
    /// Only kinds starting with this, e.g. `system.k3s.handshake`.
    #[arg(long, value_name = "P")]
    pub kind_prefix: Option<String>,
    /// Only this account's events.
    #[arg(long, value_name = "ACCOUNT")]
    pub account: Option<String>,
    /// The log to read (default: see below).
    #[command(flatten)]
    pub source: SourceArgs,
    /// Export through the running node's API even when a local log exists.
    #[arg(long, conflicts_with_all = ["file", "nats"])]
    pub api: bool,
    /// `--data-dir` of the `events` group.
    #[arg(skip)]
    pub data_dir: PathBuf,
    /// `-o` of the `events` group.
    #[arg(skip = Format::Table)]
    pub output: Format,
}

/// `powernode events import`.
#[derive(Debug, clap::Args)]
#[command(after_help = concat!(
    "The whole file is checked first (header, every record's checksum, the trailer); a \
     damaged file is refused with the byte offset where it broke and nothing is imported. \
     The target log must be empty.\n\n",
    renumbering!()
))]
pub struct ImportArgs {
    /// The export file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Import into the JetStream stream of this NATS server (created if
    /// missing) instead of the embedded log in --data-dir.
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
    /// NATS credentials and TLS.
    #[command(flatten)]
    pub nats_auth: powernode_log::nats::connect::NatsClientArgs,
    /// JetStream stream name (with --nats).
    #[arg(long, env = "POWERNODE_STREAM", default_value = DEFAULT_STREAM)]
    pub stream: String,
    /// JetStream replicas for a new stream (with --nats).
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
    /// The seal key the export's seals are checked with.
    #[command(flatten)]
    pub seal: powernode_inspect::sealed::SealKeyArgs,
    /// `--data-dir` of the `events` group: the embedded log goes to `<DIR>/log`.
    #[arg(skip)]
    pub data_dir: PathBuf,
    /// `-o` of the `events` group.
    #[arg(skip = Format::Table)]
    pub output: Format,
}

/// Runs `powernode events export`.
pub async fn export(api: &ApiArgs, args: ExportArgs) -> anyhow::Result<()> {
    let selection = Selection::parse(
        args.since.as_deref(),
        args.until.as_deref(),
        args.kind_prefix.as_deref(),
        args.account.as_deref(),
    )?;
    let to_stdout = args.out.as_os_str() == "-";
    if to_stdout && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        bail!("the export is binary: redirect stdout to a file or pass --out FILE");
    }
    if !to_stdout && args.out.exists() && !args.force {
        bail!("{} exists; pass --force to replace it", args.out.display());
    }
    let started = Instant::now();
    let explicit = args.source.file.is_some() || args.source.nats.is_some();
    // Why the API is used when it was not asked for (for errors).
    let mut fallback = None;
    let local = if explicit {
        Some(Source::open(&args.source, &args.data_dir).await?)
    } else if args.api {
        None
    } else {
        match open_embedded(&args.data_dir) {
            Local::Log(log) => Some(Source::Log(log)),
            Local::Unavailable(why) => {
                tracing::debug!(%why, "exporting through the API");
                fallback = Some(why);
                None
            }
        }
    };
    let (summary, from) = match local {
        Some(source) => {
            let summary =
                to_file(&args.out, to_stdout, |w| write_from(&source, &selection, w)).await?;
            (summary, source.describe())
        }
        None => {
            let query = ExportQuery {
                since: args.since.clone(),
                until: args.until.clone(),
                kind_prefix: args.kind_prefix.clone(),
                account: args.account.clone(),
            };
            let summary = fetch(api, &args.data_dir, &query, &args.out, to_stdout)
                .await
                .with_context(|| match &fallback {
                    Some(why) => format!("{why}; exporting through the API at {}", api.url()),
                    None => format!("exporting through the API at {}", api.url()),
                })?;
            (summary, format!("the API at {}", api.url()))
        }
    };
    report(&args, &summary, &from, started.elapsed());
    Ok(())
}

/// Runs `powernode events import`.
pub async fn import(args: ImportArgs) -> anyhow::Result<()> {
    import::run(args).await
}

/// Writes an export to `out` (through `<out>.partial`, renamed when
/// complete) or to stdout.
async fn to_file<F, Fut>(out: &Path, to_stdout: bool, write: F) -> anyhow::Result<Summary>
where
    F: FnOnce(Box<dyn Write + Send>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Summary>>,
{
    if to_stdout {
        return write(Box::new(std::io::BufWriter::new(std::io::stdout()))).await;
    }
    let partial = partial_path(out);
    let file = std::fs::File::create(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    match write(Box::new(std::io::BufWriter::with_capacity(
        256 * 1024,
        file,
    )))
    .await
    {
        Ok(summary) => {
            std::fs::rename(&partial, out).with_context(|| {
                format!("cannot rename {} to {}", partial.display(), out.display())
            })?;
            Ok(summary)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out.with_file_name(name)
}

/// Writes the selected records of `source` as an export into `sink`.
async fn write_from(
    source: &Source,
    selection: &Selection,
    sink: Box<dyn Write + Send>,
) -> anyhow::Result<Summary> {
    let header = selection.header(source.describe());
    let selected = selection.records(source).await?;
    let mut records = selected.records;
    let mut writer = Writer::with_header(sink, header.clone())?;
    let mut progress = Progress::new(selected.span.map(|(a, b)| b - a + 1), "exporting");
    while let Some(record) = records.next().await {
        let record = record?;
        writer.write(&record)?;
        progress.set(match selected.span {
            Some((first, _)) => record.seq.saturating_sub(first) + 1,
            None => writer.records(),
        });
    }
    progress.finish();
    let (records, seq_range) = (writer.records(), writer.seq_range());
    let (_, bytes) = writer.finish_with_len()?;
    Ok(Summary {
        header,
        records,
        seq_range,
        bytes,
    })
}

/// Downloads the export from the API into `out` (or to stdout, through a
/// temporary file: only a complete, checked export is printed).
async fn fetch(
    api: &ApiArgs,
    data_dir: &Path,
    query: &ExportQuery,
    out: &Path,
    to_stdout: bool,
) -> anyhow::Result<Summary> {
    let client = {
        let _ = data_dir;
        api.client()?
    };
    let progress = Arc::new(Mutex::new(Some(Progress::new(None, "exporting"))));
    let shown = progress.clone();
    let mut n = 0u64;
    let on_record = move |_: &powernode_log::Record| {
        n += 1;
        if let Some(p) = shown.lock().ok().as_mut().and_then(|p| p.as_mut()) {
            p.set(n);
        }
    };
    // Keeps a temporary file alive (deleted on drop) when printing to stdout.
    let temp = if to_stdout {
        Some(
            tempfile::Builder::new()
                .prefix("powernode-export-")
                .tempfile()?
                .into_temp_path(),
        )
    } else {
        None
    };
    let target = match &temp {
        Some(t) => t.to_path_buf(),
        None => partial_path(out),
    };
    let result = powernode_inspect::download_export(&client, query, &target, on_record).await;
    if let Some(p) = progress.lock().ok().and_then(|mut p| p.take()) {
        p.finish();
    }
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&target);
            return Err(e);
        }
    };
    if to_stdout {
        let copied = std::fs::File::open(&target).and_then(|mut f| {
            let mut stdout = std::io::stdout().lock();
            std::io::copy(&mut f, &mut stdout)?;
            stdout.flush()
        });
        let _ = std::fs::remove_file(&target);
        copied.context("cannot write the export to stdout")?;
    } else {
        std::fs::rename(&target, out)
            .with_context(|| format!("cannot rename {} to {}", target.display(), out.display()))?;
    }
    Ok(summary)
}

/// `1 event`, `2 events`.
fn events(n: u64) -> String {
    if n == 1 {
        "1 event".to_string()
    } else {
        format!("{n} events")
    }
}

/// `12.3 KiB`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn seq_text(summary: &Summary) -> String {
    match summary.seq_range {
        Some((a, b)) => format!("seq {a}-{b}"),
        None => "no records".to_string(),
    }
}

fn report(args: &ExportArgs, summary: &Summary, from: &str, took: Duration) {
    let file = if args.out.as_os_str() == "-" {
        "stdout".to_string()
    } else {
        args.out.display().to_string()
    };
    if args.output.is_data() {
        let v = json!({
            "file": file,
            "events": summary.records,
            "bytes": summary.bytes,
            "first_seq": summary.seq_range.map(|r| r.0),
            "last_seq": summary.seq_range.map(|r| r.1),
            "source": from,
            "seconds": took.as_secs_f64(),
            "renumbered_on_import": summary.renumbers(),
        });
        if args.out.as_os_str() == "-" {
            eprintln!("{v}");
        } else {
            print_json(&v);
        }
        return;
    }
    let mut text = format!(
        "exported {} ({}) to {file}, {}, from {from} in {:.1} s\n",
        events(summary.records),
        seq_text(summary),
        human_bytes(summary.bytes),
        took.as_secs_f64()
    );
    if summary.renumbers() {
        text.push_str(concat!("note: ", renumbering!(), "\n"));
    }
    if args.out.as_os_str() == "-" {
        eprint!("{text}");
    } else {
        emit(&text);
    }
}
