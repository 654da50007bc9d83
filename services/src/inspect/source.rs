//! Where the inspection commands (`replay`, `events explain`, `events
//! export`) read the log from: a JetStream stream, the embedded log of a
//! stopped node, or an export file. Every source yields the same
//! [`Record`]s in sequence order, up to a [`Bound`].

use crate::archive;
use crate::log::embedded::EmbeddedLog;
use crate::log::jetstream::{JetStreamConfig, JetStreamLog, DEFAULT_STREAM};
use crate::log::{Filter, Record, SharedLog, StartAt};
use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::StreamExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
                 export it through the API with `powernode events export -o FILE` and use --file)",
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
                let sub = log.subscribe(StartAt::Seq(from.max(1)), filter).await?;
                Ok(sub
                    .map(|r| r.map_err(anyhow::Error::from))
                    .take_while(move |r| {
                        let keep = match r {
                            Ok(rec) => rec.seq <= end && !until.is_past(rec),
                            Err(_) => true,
                        };
                        futures::future::ready(keep)
                    })
                    .boxed())
            }
            Self::File(path) => {
                let reader = archive::Reader::open(path)?;
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

/// Flattens chunks from a channel into a record stream.
fn tokio_stream_from(
    rx: tokio::sync::mpsc::Receiver<anyhow::Result<Vec<Record>>>,
) -> RecordStream {
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
