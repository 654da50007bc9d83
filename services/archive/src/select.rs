//! Which records an export holds: `--since` (a sequence or a time),
//! `--until` (a [`Bound`]), an account and a kind prefix, read from any
//! [`Source`] in sequence order. Shared by `powernode events export` and
//! the API's `GET /v1/events/export`.

use super::Header;
use crate::{Bound, RecordStream, Source};
use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use powernode_log::{Filter, SharedLog, StartAt};
use std::time::Duration;

/// Where an export starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// From this sequence (inclusive).
    Seq(u64),
    /// From the first record stored at or after this time.
    Time(DateTime<Utc>),
}

impl Since {
    /// Parses `--since`: a sequence number or an RFC 3339 time.
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        Ok(match Bound::parse(s)? {
            Bound::Seq(n) => Self::Seq(n),
            Bound::Time(t) => Self::Time(t),
            Bound::End => bail!("{s:?} is not a start"),
        })
    }
}

/// What an export contains.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// First record (`None`: from the start).
    pub since: Option<Since>,
    /// Last record (`None`: through the last one present when reading starts).
    pub until: Option<Bound>,
    /// Account and kind prefix.
    pub filter: Filter,
}

/// Records selected from a source.
pub struct Selected {
    /// The records, in order.
    pub records: RecordStream,
    /// The sequences the read covers, when the source is a log (for a
    /// progress bar); `None` for a file or when nothing is selected.
    pub span: Option<(u64, u64)>,
}

impl Selection {
    /// Parses the textual options (empty strings count as absent).
    pub fn parse(
        since: Option<&str>,
        until: Option<&str>,
        kind_prefix: Option<&str>,
        account: Option<&str>,
    ) -> anyhow::Result<Self> {
        let account = match present(account) {
            Some(a) => Some(
                powernode_events::AccountId::new(a)
                    .map_err(|e| anyhow::anyhow!("account {a:?}: {e}"))?,
            ),
            None => None,
        };
        Ok(Self {
            since: present(since)
                .map(Since::parse)
                .transpose()
                .context("since")?,
            until: present(until)
                .map(Bound::parse)
                .transpose()
                .context("until")?,
            filter: Filter {
                account,
                kind_prefix: present(kind_prefix).map(str::to_string),
            },
        })
    }

    /// The header of an export of this selection from `source`.
    pub fn header(&self, source: String) -> Header {
        Header {
            version: super::FORMAT_VERSION,
            created_at: Some(Utc::now()),
            source,
            account: self.filter.account.as_ref().map(|a| a.to_string()),
            kind_prefix: self.filter.kind_prefix.clone(),
            since: self.since.map(|s| match s {
                Since::Seq(n) => n.to_string(),
                Since::Time(t) => t.to_rfc3339(),
            }),
            until: self.until.and_then(|u| match u {
                Bound::Seq(n) => Some(n.to_string()),
                Bound::Time(t) => Some(t.to_rfc3339()),
                Bound::End => None,
            }),
        }
    }

    /// The selected records of `source`, in order.
    pub async fn records(&self, source: &Source) -> anyhow::Result<Selected> {
        let until = self.until.unwrap_or(Bound::End);
        let filter = self.filter.clone();
        match (source, self.since) {
            (Source::Log(log), since) => {
                let from = match since {
                    None => 1,
                    Some(Since::Seq(n)) => n.max(1),
                    Some(Since::Time(t)) => match first_seq_at(log, t).await? {
                        Some(seq) => seq,
                        None => {
                            return Ok(Selected {
                                records: futures::stream::empty().boxed(),
                                span: None,
                            })
                        }
                    },
                };
                let last = log.last_seq().await?;
                let end = match until {
                    Bound::Seq(s) => s.min(last),
                    _ => last,
                };
                let records = source.records(from, until, filter).await?;
                Ok(Selected {
                    records,
                    span: (end >= from).then_some((from, end)),
                })
            }
            (Source::File(_), Some(Since::Time(t))) => {
                let records = source
                    .records(1, until, filter)
                    .await?
                    .skip_while(move |r| {
                        futures::future::ready(matches!(r, Ok(rec) if rec.stored_at < t))
                    })
                    .boxed();
                Ok(Selected {
                    records,
                    span: None,
                })
            }
            (Source::File(_), since) => {
                let from = match since {
                    Some(Since::Seq(n)) => n,
                    _ => 1,
                };
                Ok(Selected {
                    records: source.records(from, until, filter).await?,
                    span: None,
                })
            }
        }
    }
}

/// `s` trimmed, unless empty.
fn present(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

/// The sequence of the first record stored at or after `t`, if any.
async fn first_seq_at(log: &SharedLog, t: DateTime<Utc>) -> anyhow::Result<Option<u64>> {
    let last = log.last_seq().await?;
    if last == 0 {
        return Ok(None);
    }
    match log.read(last, 1, &Filter::all()).await?.first() {
        Some(r) if r.stored_at >= t => {}
        _ => return Ok(None),
    }
    // Some record at or after `t` exists, so the subscription yields one.
    let mut sub = log.subscribe(StartAt::Time(t), Filter::all()).await?;
    match tokio::time::timeout(Duration::from_secs(30), sub.next()).await {
        Ok(Some(Ok(r))) => Ok(Some(r.seq)),
        Ok(Some(Err(e))) => Err(e.into()),
        Ok(None) => bail!("{}: the log ended while looking for {t}", log.describe()),
        Err(_) => bail!("{}: no record at or after {t} within 30 s", log.describe()),
    }
}
