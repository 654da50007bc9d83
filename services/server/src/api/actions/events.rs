//! `recent_events({kind_prefix?, limit?, since?, cluster?, instance?})`:
//! the operator's account's events, oldest first (newest last).
//!
//! * Without `since`: the newest `limit` events. The log is read in
//!   windows back from its end, each window read once with the account and
//!   kind prefix as a server-side filter (a JetStream subject filter) and
//!   sized from the matches found so far, so a rare kind costs a few
//!   filtered reads of the part of the stream that holds its newest
//!   events, never a scan of the whole stream.
//! * With `since` (a sequence, an RFC 3339 time or a duration like `10m`):
//!   the first `limit` events from there, and `more: true` when others
//!   follow (ask again with `since: <last seq + 1>`).
//! * `cluster` / `instance`: only events about that object (its aggregate,
//!   or named in the payload; see [`powernode_inspect::concerns`]).
//! * `through`: the answer covers every matching event up to this log
//!   sequence; a follower (`GET /v1/events/stream` with `Last-Event-ID:
//!   <through>`) carries on from there with no gap and no duplicate.
//!
//! Events never carry secrets (only fingerprints), so nothing is redacted.

use super::{handlers, ActionContext};
use crate::api::error::{ApiError, ErrorCode};
use crate::api::sse::query::{Scope, Since};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use powernode_actions::events::{
    RecentEventsAnswer, RecentEventsArgs, RecordedEvent, StateHashAnswer, StateHashArgs,
};
use powernode_log::{EventLog, Filter, Record, StartAt};
use serde_json::Value;
use std::time::Duration;
use tracing::warn;

handlers! {
    RecentEvents => recent_events,
    StateHash => state_hash,
}

/// Default and largest `limit`.
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 1000;
/// Most records one log read asks for.
const PAGE: usize = 10_000;
/// The first window read back from the end holds this many records at least.
const FIRST_WINDOW: u64 = 256;
/// How long the subscription that finds a `since` time may take.
const FIRST_AT_TIME_WAIT: Duration = Duration::from_secs(5);

/// `recent_events` (see the module's documentation).
pub async fn recent_events(
    ctx: &ActionContext<'_>,
    a: RecentEventsArgs,
) -> Result<RecentEventsAnswer, ApiError> {
    let limit = a.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(invalid(format!(
            "limit: must be 1-{MAX_LIMIT}, got {limit}"
        )));
    }
    for (field, value) in [("cluster", &a.cluster), ("instance", &a.instance)] {
        if value.as_ref().is_some_and(|v| v.trim().is_empty()) {
            return Err(invalid(format!("{field}: must not be empty")));
        }
    }
    let since = a
        .since
        .as_ref()
        .map(|v| Since::from_json(v, Utc::now()))
        .transpose()
        .map_err(|e| invalid(format!("since: {e}")))?;
    let scope = Scope::new(
        ctx.operator.account.clone(),
        a.kind_prefix,
        a.cluster,
        a.instance,
    );
    let log = ctx.log().as_ref();
    let last = log.last_seq().await?;
    let Some(since) = since else {
        let events = newest(log, &scope, limit, last).await?;
        return Ok(RecentEventsAnswer {
            events: recorded(events)?,
            through: last,
            more: None,
        });
    };
    let from = match since {
        Since::Seq(s) => s.max(1),
        Since::Time(t) => first_stored_at_or_after(log, t, last).await?,
    };
    let (events, more) = oldest_from(log, &scope, from, last, limit).await?;
    let through = match (more, events.last()) {
        (true, Some(e)) => e["seq"].as_u64().unwrap_or(last),
        _ => last,
    };
    Ok(RecentEventsAnswer {
        events: recorded(events)?,
        through,
        more: Some(more),
    })
}

fn invalid(message: String) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidArguments, message)
}

/// The events' JSON ([`Scope::event_json`], shared with the event stream)
/// as the answer's type.
fn recorded(events: Vec<Value>) -> Result<Vec<RecordedEvent>, ApiError> {
    events
        .into_iter()
        .map(serde_json::from_value)
        .collect::<Result<_, _>>()
        .map_err(|e| ApiError::unavailable(format!("cannot show an event: {e}")))
}

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

/// The newest `limit` events in scope up to `last`, oldest first: windows
/// back from the end, each read once ([`next_window`] sizes them).
async fn newest(
    log: &dyn EventLog,
    scope: &Scope,
    limit: usize,
    last: u64,
) -> Result<Vec<Value>, ApiError> {
    let mut found: Vec<Value> = Vec::new();
    let mut hi = last;
    let mut window = (limit as u64 * 4).max(FIRST_WINDOW);
    while hi >= 1 && found.len() < limit {
        let lo = hi.saturating_sub(window) + 1;
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
        window = next_window(window, found.len(), limit, last - hi);
    }
    Ok(found)
}

/// The next window back: sized from the matches found so far (`found`
/// in the last `span` records) to hold the rest with a margin, so a rare
/// kind does not make the last window overshoot (a filtered read costs
/// the server about the records it covers); four times the last window
/// at most, or exactly that while nothing matched yet.
fn next_window(window: u64, found: usize, limit: usize, span: u64) -> u64 {
    let most = window.saturating_mul(4);
    if found == 0 {
        return most;
    }
    let per_match = span as f64 / found as f64;
    let wanted = (limit.saturating_sub(found) as f64 * per_match * 1.25) as u64;
    wanted.clamp(FIRST_WINDOW, most)
}

/// The first `limit` events in scope from `from` through `last`, oldest
/// first, and whether more follow.
async fn oldest_from(
    log: &dyn EventLog,
    scope: &Scope,
    from: u64,
    last: u64,
    limit: usize,
) -> Result<(Vec<Value>, bool), ApiError> {
    let mut kept = Kept::new(scope);
    let mut next = from;
    while next <= last && kept.len() <= limit {
        // Without a payload filter every record read is kept: ask for just
        // one more than needed (to know whether more follow).
        let want = if kept.by_payload() {
            PAGE
        } else {
            limit + 1 - kept.len()
        };
        let want = usize::try_from(last - next + 1).map_or(want, |n| n.min(want));
        let page = log.read(next, want, &scope.filter).await?;
        let Some(tail) = page.last().map(|r| r.seq) else {
            break;
        };
        next = tail + 1;
        for r in page.into_iter().take_while(|r| r.seq <= last) {
            kept.push(r);
        }
    }
    let more = kept.len() > limit;
    kept.truncate(limit);
    Ok((kept.into_events(), more))
}

/// The sequence of the first record stored at or after `t` (`last + 1`
/// when there is none). The log finds it: a subscription from that time
/// (JetStream locates the time from its blocks' time ranges; the embedded
/// log from its index), of which only the first record is taken. Should
/// that not answer, a binary search on stored times does (one one-record
/// read per step, about 20 for a million records).
async fn first_stored_at_or_after(
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

/// `system_state_hash({})` (admin only: the fleet digest covers every
/// account): the digest of the API's live fleet state and the sequence it
/// has applied through, read under one lock — `powernode replay --until
/// <seq> --hash` of the same log must print the same digest.
pub async fn state_hash(
    ctx: &ActionContext<'_>,
    _a: StateHashArgs,
) -> Result<StateHashAnswer, ApiError> {
    let fleet = ctx.fleet().await;
    let hash = powernode_projections::state_hash(&fleet);
    Ok(StateHashAnswer {
        seq: fleet.last_seq(),
        applied: fleet.applied(),
        hash: format!("sha256:{hash}"),
    })
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
