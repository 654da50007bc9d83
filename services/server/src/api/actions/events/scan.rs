//! `recent_events` by scanning: the log read with the account and kind
//! prefix as a server-side filter, each record checked against the scope.
//! Serves every query the index does not (no cluster or instance, or one
//! that cannot be an id), and the parts of an indexed query outside the
//! index (past its last folded record, or older than an id's ring).

use crate::api::error::ApiError;
use crate::api::sse::query::Scope;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use powernode_log::{EventLog, Filter, Record, StartAt};
use serde_json::Value;
use std::time::Duration;
use tracing::warn;

/// Most records one log read asks for.
const PAGE: usize = 10_000;
/// The first window read back from the end holds this many records at least.
pub(super) const FIRST_WINDOW: u64 = 256;
/// How long the subscription that finds a `since` time may take.
const FIRST_AT_TIME_WAIT: Duration = Duration::from_secs(5);

/// Matching records kept while reading: the records themselves when the
/// subject decides, the decoded events when the payload must be looked at
/// (`cluster` / `instance`), so only what is shown gets decoded.
struct Kept<'a> {
    scope: &'a Scope,
    records: Vec<Record>,
    events: Vec<Value>,
}

impl<'a> Kept<'a> {
    fn new(scope: &'a Scope) -> Self {
        Self {
            scope,
            records: Vec::new(),
            events: Vec::new(),
        }
    }

    fn by_payload(&self) -> bool {
        self.scope.cluster.is_some() || self.scope.instance.is_some()
    }

    fn push(&mut self, r: Record) {
        if !self.scope.filter.matches_subject(&r.subject) {
            return;
        }
        if self.by_payload() {
            self.events.extend(self.scope.event_json(&r));
        } else {
            self.records.push(r);
        }
    }

    fn len(&self) -> usize {
        self.records.len() + self.events.len()
    }

    /// Drops all but the newest `n`.
    fn keep_newest(&mut self, n: usize) {
        let r = self.records.len().saturating_sub(n);
        self.records.drain(..r);
        let e = self.events.len().saturating_sub(n);
        self.events.drain(..e);
    }

    fn truncate(&mut self, n: usize) {
        self.records.truncate(n);
        self.events.truncate(n);
    }

    fn into_events(self) -> Vec<Value> {
        let Self {
            scope,
            records,
            mut events,
        } = self;
        events.extend(records.iter().filter_map(|r| scope.event_json(r)));
        events
    }
}

/// The newest `limit` events in scope in `floor..=top`, oldest first:
/// windows back from `top`, each read once ([`next_window`] sizes them).
pub(super) async fn newest_in(
    log: &dyn EventLog,
    scope: &Scope,
    limit: usize,
    floor: u64,
    top: u64,
) -> Result<Vec<Value>, ApiError> {
    let floor = floor.max(1);
    let mut found: Vec<Value> = Vec::new();
    let mut hi = top;
    let mut window = (limit as u64 * 4).max(FIRST_WINDOW);
    while hi >= floor && found.len() < limit {
        let lo = hi.saturating_sub(window).max(floor - 1) + 1;
        let need = limit - found.len();
        let mut kept = Kept::new(scope);
        let mut next = lo;
        while next <= hi {
            let want = usize::try_from(hi - next + 1).map_or(PAGE, |n| n.min(PAGE));
            let page = log.read(next, want, &scope.filter).await?;
            let Some(tail) = page.last().map(|r| r.seq) else {
                break;
            };
            next = tail + 1;
            for r in page.into_iter().take_while(|r| r.seq <= hi) {
                kept.push(r);
            }
            if kept.len() > need * 2 {
                kept.keep_newest(need);
            }
        }
        kept.keep_newest(need);
        let mut chunk = kept.into_events();
        chunk.append(&mut found);
        found = chunk;
        hi = lo - 1;
        window = next_window(window, found.len(), limit, top - hi);
    }
    Ok(found)
}

/// The next window back: sized from the matches found so far (`found`
/// in the last `span` records) to hold the rest with a margin, so a rare
/// kind does not make the last window overshoot (a filtered read costs
/// the server about the records it covers); four times the last window
/// at most, or exactly that while nothing matched yet.
pub(super) fn next_window(window: u64, found: usize, limit: usize, span: u64) -> u64 {
    let most = window.saturating_mul(4);
    if found == 0 {
        return most;
    }
    let per_match = span as f64 / found as f64;
    let wanted = (limit.saturating_sub(found) as f64 * per_match * 1.25) as u64;
    wanted.clamp(FIRST_WINDOW, most)
}

/// The first `want` events in scope in `from..=last`, oldest first.
pub(super) async fn oldest_in(
    log: &dyn EventLog,
    scope: &Scope,
    from: u64,
    last: u64,
    want: usize,
) -> Result<Vec<Value>, ApiError> {
    let mut kept = Kept::new(scope);
    let mut next = from.max(1);
    while next <= last && kept.len() < want {
        // Without a payload filter every record read is kept: ask for just
        // what is still wanted.
        let ask = if kept.by_payload() {
            PAGE
        } else {
            want - kept.len()
        };
        let ask = usize::try_from(last - next + 1).map_or(ask, |n| n.min(ask));
        let page = log.read(next, ask, &scope.filter).await?;
        let Some(tail) = page.last().map(|r| r.seq) else {
            break;
        };
        next = tail + 1;
        for r in page.into_iter().take_while(|r| r.seq <= last) {
            kept.push(r);
        }
    }
    kept.truncate(want);
    Ok(kept.into_events())
}

/// The sequence of the first record stored at or after `t` (`last + 1`
/// when there is none). The log finds it: a subscription from that time
/// (JetStream locates the time from its blocks' time ranges; the embedded
/// log from its index), of which only the first record is taken. Should
/// that not answer, a binary search on stored times does (one one-record
/// read per step, about 20 for a million records).
pub(super) async fn first_stored_at_or_after(
    log: &dyn EventLog,
    t: DateTime<Utc>,
    last: u64,
) -> Result<u64, ApiError> {
    match probe(log, last).await? {
        Some(r) if r.stored_at >= t => {}
        _ => return Ok(last + 1),
    }
    // The record at `last` qualifies, so the subscription has one to give at once.
    let mut from_time = log.subscribe(StartAt::Time(t), Filter::all()).await?;
    match tokio::time::timeout(FIRST_AT_TIME_WAIT, from_time.next()).await {
        Ok(Some(Ok(r))) => return Ok(r.seq.min(last + 1)),
        Ok(Some(Err(e))) => return Err(e.into()),
        Ok(None) | Err(_) => {
            warn!(%t, "no record from a subscription by time; searching by sequence")
        }
    }
    let (mut lo, mut hi) = (1, last);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match probe(log, mid).await? {
            Some(r) if r.stored_at >= t => hi = mid,
            Some(r) => lo = (r.seq + 1).min(hi),
            None => lo = mid + 1,
        }
    }
    Ok(lo)
}

/// The first record at or after `seq`, whatever its account.
async fn probe(log: &dyn EventLog, seq: u64) -> Result<Option<Record>, ApiError> {
    Ok(log.read(seq, 1, &Filter::all()).await?.into_iter().next())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_grow_by_four_until_something_matches_then_by_density() {
        assert_eq!(next_window(256, 0, 20, 256), 1024);
        // 12 matches in the last 87 296 records, 8 more wanted: ~58 000 back, with a margin.
        assert_eq!(next_window(65_536, 12, 20, 87_296), 72_746);
        // Dense: never below the first window.
        assert_eq!(next_window(256, 19, 20, 256), FIRST_WINDOW);
        // Sparse: at most four times the last.
        assert_eq!(next_window(1024, 1, 20, 100_000), 4096);
    }
}
