//! `recent_events` by cluster or instance from the events index
//! ([`crate::api::index`]): the id's sequences from the index, read back by
//! sequence and checked with the scan's own test ([`Scope::event_json`]);
//! the scan covers what the index does not (records past the index's last,
//! and those older than where the id's ring is complete). The answer is
//! the scan's, record for record.

use super::scan::{newest_in, oldest_in};
use crate::api::error::ApiError;
use crate::api::index::EventIndex;
use crate::api::sse::query::Scope;
use powernode_log::EventLog;
use serde_json::Value;

/// The id the index answers by: the cluster, else the instance (the other,
/// when both are given, is checked on every record read).
pub(super) fn indexed_id(scope: &Scope) -> Option<&str> {
    [scope.cluster.as_deref(), scope.instance.as_deref()]
        .into_iter()
        .flatten()
        .find(|id| EventIndex::covers(id))
}

/// What the index is asked about.
struct Query<'a> {
    log: &'a dyn EventLog,
    scope: &'a Scope,
    account: &'a str,
}

impl Query<'_> {
    fn kind(&self) -> Option<&str> {
        self.scope.filter.kind_prefix.as_deref()
    }

    /// The records at `seqs` (in that order) that are in scope, as shown.
    async fn shown(&self, seqs: &[u64]) -> Result<Vec<Value>, ApiError> {
        let records = self.log.read_seqs(seqs).await?;
        Ok(records
            .iter()
            .filter_map(|r| self.scope.event_json(r))
            .collect())
    }
}

/// The newest `limit` events in scope up to `last`, oldest first.
pub(super) async fn newest(
    log: &dyn EventLog,
    index: &EventIndex,
    scope: &Scope,
    id: &str,
    limit: usize,
    last: u64,
) -> Result<Vec<Value>, ApiError> {
    let q = Query {
        log,
        scope,
        account: account(scope),
    };
    let mut c = index.newest(q.account, id, q.kind(), last, limit);
    let indexed_to = c.applied.min(last);
    // Newest first from here on: past the index, then the ring, then below it.
    let mut found: Vec<Value> = Vec::new();
    if indexed_to < last {
        let mut tail = newest_in(log, scope, limit, indexed_to + 1, last).await?;
        tail.reverse();
        found = tail;
    }
    let mut hi = indexed_to;
    while found.len() < limit {
        let asked = limit - found.len();
        if c.seqs.len() > asked {
            c.seqs.truncate(asked);
        }
        let exhausted = c.seqs.len() < asked;
        let lowest = c.seqs.last().copied();
        found.extend(q.shown(&c.seqs).await?);
        if exhausted {
            // Every event of the id in complete_from..=hi was listed; the
            // scan finds those below.
            let below = c.complete_from.saturating_sub(1).min(hi);
            if below >= 1 && found.len() < limit {
                let mut older = newest_in(log, scope, limit - found.len(), 1, below).await?;
                older.reverse();
                found.extend(older);
            }
            break;
        }
        let Some(lowest) = lowest.filter(|s| *s > 1) else {
            break;
        };
        hi = lowest - 1;
        c = index.newest(q.account, id, q.kind(), hi, limit - found.len());
    }
    found.truncate(limit);
    found.reverse();
    Ok(found)
}

/// The first `want` events in scope in `from..=last`, oldest first.
pub(super) async fn oldest(
    log: &dyn EventLog,
    index: &EventIndex,
    scope: &Scope,
    id: &str,
    from: u64,
    last: u64,
    want: usize,
) -> Result<Vec<Value>, ApiError> {
    let q = Query {
        log,
        scope,
        account: account(scope),
    };
    let from = from.max(1);
    let mut out: Vec<Value> = Vec::new();
    let mut c = index.oldest(q.account, id, q.kind(), from, last, want);
    let indexed_to = c.applied.min(last);
    let mut lo = from;
    while out.len() < want && lo <= indexed_to {
        if c.complete_from > lo {
            // Older than the id's ring: scanned.
            let to = (c.complete_from - 1).min(indexed_to);
            out.extend(oldest_in(log, scope, lo, to, want - out.len()).await?);
            lo = to + 1;
        } else {
            let asked = want - out.len();
            c.seqs.truncate(asked);
            let exhausted = c.seqs.len() < asked;
            let highest = c.seqs.last().copied();
            out.extend(q.shown(&c.seqs).await?);
            lo = match highest {
                Some(h) if !exhausted => h + 1,
                _ => indexed_to + 1,
            };
        }
        if out.len() < want && lo <= indexed_to {
            c = index.oldest(q.account, id, q.kind(), lo, indexed_to, want - out.len());
        }
    }
    if out.len() < want && indexed_to < last {
        let tail_from = from.max(indexed_to + 1);
        out.extend(oldest_in(log, scope, tail_from, last, want - out.len()).await?);
    }
    out.truncate(want);
    Ok(out)
}

fn account(scope: &Scope) -> &str {
    scope.filter.account.as_ref().map_or("", |a| a.as_str())
}
