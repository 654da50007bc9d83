//! Where the inspection commands (`replay`, `events explain`, `events
//! export`) read the log from: a JetStream stream, the embedded log of a
//! stopped node, or an export file. Every source yields the same
//! [`Record`]s in sequence order, up to a [`Bound`].

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::StreamExt;
use powernode_log::embedded::EmbeddedLog;
use powernode_log::jetstream::{JetStreamConfig, JetStreamLog, DEFAULT_STREAM};
use powernode_log::{Filter, Record, SharedLog};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Records read from a log per request.
const READ_PAGE: usize = 4096;

/// Records in sequence order; ends at the bound (or the source's end).
pub type RecordStream = BoxStream<'static, anyhow::Result<Record>>;

/// Options naming the log to read.
#[derive(Debug, Clone, clap::Args)]
pub struct SourceArgs {
    /// Read an export file (`powernode events export`); no network.
    #[arg(long, value_name = "FILE", conflicts_with = "nats")]
    pub file: Option<PathBuf>,
    /// Read the JetStream stream of this NATS server.
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
    /// NATS credentials and TLS.
    #[command(flatten)]
    pub nats_auth: powernode_log::nats::connect::NatsClientArgs,
    /// JetStream stream name (with --nats).
    #[arg(long, env = "POWERNODE_STREAM", default_value = DEFAULT_STREAM)]
    pub stream: String,
}

/// The last record a read includes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// Through this sequence (inclusive).
    Seq(u64),
    /// Through the last record stored at or before this time.
    Time(DateTime<Utc>),
    /// Through the last record present when the read started.
    End,
}

impl Bound {
    /// Parses `--until`: a sequence number or an RFC 3339 time.
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        let s = s.trim();
        if let Ok(seq) = s.parse::<u64>() {
            return Ok(Self::Seq(seq));
        }
        match DateTime::parse_from_rfc3339(s) {
            Ok(t) => Ok(Self::Time(t.with_timezone(&Utc))),
            Err(_) => bail!(
                "{s:?} is neither a sequence number nor an RFC 3339 time (like 2026-11-21T10:00:00Z)"
            ),
        }
    }

    /// True when `record` lies beyond the bound.
    pub fn is_past(&self, record: &Record) -> bool {
        match self {
            Self::Seq(s) => record.seq > *s,
            Self::Time(t) => record.stored_at > *t,
            Self::End => false,
        }
    }
}

/// An opened source.
pub enum Source {
    /// A log (JetStream or embedded).
    Log(SharedLog),
    /// An export file.
    File(PathBuf),
}

impl Source {
    /// Opens what `args` name; without --file or --nats, the embedded log
    /// in `data_dir` (of a node that is not running: export a running one
    /// through the API with `powernode events export`). `--data-dir` is not
    /// part of [`SourceArgs`] because the command groups already take it.
    pub async fn open(args: &SourceArgs, data_dir: &Path) -> anyhow::Result<Self> {
        if let Some(file) = &args.file {
            if !file.is_file() {
                bail!("{}: no such export file", file.display());
            }
            return Ok(Self::File(file.clone()));
        }
        if let Some(url) = &args.nats {
            let mut config = JetStreamConfig::new(url);
            config.stream = args.stream.clone();
            config.auth = args.nats_auth.client_auth()?;
            let log = JetStreamLog::connect(config)
                .await
                .with_context(|| format!("cannot open stream {} at {url}", args.stream))?;
            return Ok(Self::Log(Arc::new(log)));
        }
        let dir = data_dir.join("log");
        if !dir.is_dir() {
            bail!(
                "no embedded log at {} (pass --file FILE, --nats URL or --data-dir DIR)",
                dir.display()
            );
        }
        let log = EmbeddedLog::open(&dir).with_context(|| {
            format!(
                "cannot open the embedded log at {} (if `powernode up` is running on it, \
                 export it through the API with `powernode events export --out FILE` and use --file)",
                dir.display()
            )
        })?;
        Ok(Self::Log(Arc::new(log)))
    }

    /// A short description (`file x.pnlog`, `jetstream nats://…`).
    pub fn describe(&self) -> String {
        match self {
            Self::Log(log) => log.describe(),
            Self::File(path) => format!("file {}", path.display()),
        }
    }

    /// The records matching `filter` from sequence `from` through `until`,
    /// in order. A log source stops at the last record present when the read
    /// starts, so a live log does not keep the stream open.
    pub async fn records(
        &self,
        from: u64,
        until: Bound,
        filter: Filter,
    ) -> anyhow::Result<RecordStream> {
        match self {
            Self::Log(log) => {
                let last = log.last_seq().await?;
                let end = match until {
                    Bound::Seq(s) => s.min(last),
                    _ => last,
                };
                if end < from.max(1) {
                    return Ok(futures::stream::empty().boxed());
                }
                // Pages of reads, not a live subscription: a subscription
                // would wait for a record past `end` to learn it is done
                // (forever, at the end of the log or under a filter).
                let log = log.clone();
                let pages = futures::stream::unfold(Some(from.max(1)), move |next| {
                    let (log, filter) = (log.clone(), filter.clone());
                    async move {
                        let next = next?;
                        let page = match log.read(next, READ_PAGE, &filter).await {
                            Ok(page) => page,
                            Err(e) => return Some((vec![Err(e.into())], None)),
                        };
                        let mut out = Vec::with_capacity(page.len());
                        let mut after = None;
                        for rec in page {
                            if rec.seq > end || until.is_past(&rec) {
                                return Some((out, None));
                            }
                            after = Some(rec.seq + 1);
                            out.push(Ok(rec));
                        }
                        let after = after.filter(|&n| n <= end);
                        if out.is_empty() {
                            return None;
                        }
                        Some((out, after))
                    }
                });
                Ok(pages.flat_map(futures::stream::iter).boxed())
            }
            Self::File(path) => {
                let reader = crate::Reader::open(path)?;
                let (tx, rx) = tokio::sync::mpsc::channel::<anyhow::Result<Vec<Record>>>(4);
                tokio::task::spawn_blocking(move || {
                    let mut chunk = Vec::with_capacity(1024);
                    for item in reader {
                        match item {
                            Ok(rec) if rec.seq < from || !filter.matches_subject(&rec.subject) => {}
                            Ok(rec) if until.is_past(&rec) => break,
                            Ok(rec) => {
                                chunk.push(rec);
                                if chunk.len() == 1024
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
                Ok(tokio_stream_from(rx))
            }
        }
    }
}

/// What [`open_embedded`] found.
pub enum Local {
    /// The embedded log of a stopped node.
    Log(SharedLog),
    /// Why it cannot be read (missing, or held by a running node).
    Unavailable(String),
}

/// Opens the embedded log in `data_dir` if it exists and no running node
/// holds it.
pub fn open_embedded(data_dir: &Path) -> Local {
    let dir = data_dir.join("log");
    if !dir.is_dir() {
        return Local::Unavailable(format!("no embedded log at {}", dir.display()));
    }
    match EmbeddedLog::open(&dir) {
        Ok(log) => Local::Log(Arc::new(log)),
        Err(e) => Local::Unavailable(e.to_string()),
    }
}

/// An opened [`Source`] that may own a temporary download (a running
/// node's log fetched through its API); derefs to the [`Source`]. Keep it
/// while reading: a download is a temporary file deleted on drop.
pub struct OpenedSource {
    source: Source,
    description: Option<String>,
    _download: Option<tempfile::TempPath>,
}

impl OpenedSource {
    /// An export file downloaded from `description` (the API it came from),
    /// deleted when this is dropped.
    pub fn downloaded(download: tempfile::TempPath, description: String) -> Self {
        Self {
            source: Source::File(download.to_path_buf()),
            description: Some(description),
            _download: Some(download),
        }
    }
}

impl From<Source> for OpenedSource {
    fn from(source: Source) -> Self {
        Self {
            source,
            description: None,
            _download: None,
        }
    }
}

impl OpenedSource {
    /// A short description; for a download, the API it came from.
    pub fn describe(&self) -> String {
        self.description
            .clone()
            .unwrap_or_else(|| self.source.describe())
    }
}

impl std::ops::Deref for OpenedSource {
    type Target = Source;

    fn deref(&self) -> &Source {
        &self.source
    }
}

/// Flattens chunks from a channel into a record stream.
fn tokio_stream_from(rx: tokio::sync::mpsc::Receiver<anyhow::Result<Vec<Record>>>) -> RecordStream {
    futures::stream::unfold(rx, |mut rx| async move {
        let item = rx.recv().await?;
        let items: Vec<anyhow::Result<Record>> = match item {
            Ok(chunk) => chunk.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        };
        Some((futures::stream::iter(items), rx))
    })
    .flatten()
    .boxed()
}
