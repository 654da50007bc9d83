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
//!   or named in the payload; see [`powernode_archive::concerns`]). Served
//!   from the events index ([`crate::api::index`], [`indexed`]): the id's
//!   records are read by sequence, so the cost follows the answer, not the
//!   account's history; the answer is the scan's ([`scan`]).
//! * `through`: the answer covers every matching event up to this log
//!   sequence; a follower (`GET /v1/events/stream` with `Last-Event-ID:
//!   <through>`) carries on from there with no gap and no duplicate.
//!
//! Events never carry secrets (only fingerprints), so nothing is redacted.

mod indexed;
mod scan;

use super::{handlers, ActionContext};
use crate::api::error::{ApiError, ErrorCode};
use crate::api::sse::query::{Scope, Since};
use chrono::Utc;
use powernode_actions::events::{
    RecentEventsAnswer, RecentEventsArgs, RecordedEvent, StateHashAnswer, StateHashArgs,
};
use serde_json::Value;

handlers! {
    RecentEvents => recent_events,
    StateHash => state_hash,
}

/// Default and largest `limit`.
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 1000;

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
    let index = indexed::indexed_id(&scope).map(|id| (ctx.events_index().as_ref(), id));
    let last = log.last_seq().await?;
    let Some(since) = since else {
        let events = match index {
            Some((index, id)) => indexed::newest(log, index, &scope, id, limit, last).await?,
            None => scan::newest_in(log, &scope, limit, 1, last).await?,
        };
        return Ok(RecentEventsAnswer {
            events: recorded(events)?,
            through: last,
            more: None,
        });
    };
    let from = match since {
        Since::Seq(s) => s.max(1),
        Since::Time(t) => scan::first_stored_at_or_after(log, t, last).await?,
    };
    // One more than shown, to know whether more follow.
    let mut events = match index {
        Some((index, id)) => indexed::oldest(log, index, &scope, id, from, last, limit + 1).await?,
        None => scan::oldest_in(log, &scope, from, last, limit + 1).await?,
    };
    let more = events.len() > limit;
    events.truncate(limit);
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
mod tests;
