//! `recent_events({kind_prefix?, limit?})`: the newest events of the
//! operator's account, oldest first. Events never carry secrets (only
//! fingerprints), so nothing needs redacting here.

use super::ActionContext;
use crate::api::error::ApiError;
use crate::log::{Filter, Record};
use powernode_events::Envelope;
use serde::Deserialize;
use serde_json::{json, Value};

/// Default and largest `limit`.
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 1000;

/// Arguments of `recent_events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecentEvents {
    #[serde(default)]
    kind_prefix: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

pub async fn recent_events(ctx: &ActionContext<'_>, a: RecentEvents) -> Result<Value, ApiError> {
    let limit = a.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(
            "invalid_arguments",
            format!("limit: must be 1-{MAX_LIMIT}"),
        ));
    }
    let filter = Filter {
        account: Some(ctx.operator.account.clone()),
        kind_prefix: a.kind_prefix.filter(|p| !p.is_empty()),
    };
    let records = newest(ctx, &filter, limit).await?;
    let mut events = Vec::with_capacity(records.len());
    for r in records {
        // A record that does not decode was recorded as rejected; skip it here.
        if let Ok(e) = Envelope::decode(&r.bytes) {
            let mut v = serde_json::to_value(&e).map_err(|e| {
                ApiError::new(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "encode",
                    e.to_string(),
                )
            })?;
            v["seq"] = json!(r.seq);
            events.push(v);
        }
    }
    Ok(json!({ "events": events }))
}

/// The newest `limit` records matching `filter`, oldest first: reads a
/// window back from the end of the log, widening it until it holds enough.
async fn newest(
    ctx: &ActionContext<'_>,
    filter: &Filter,
    limit: usize,
) -> Result<Vec<Record>, ApiError> {
    let log = ctx.log();
    let last = log.last_seq().await?;
    let mut window = (limit as u64 * 4).max(256);
    loop {
        let from = last.saturating_sub(window) + 1;
        let mut found = Vec::new();
        let mut next = from;
        while next <= last {
            let page = log.read(next, 1000, filter).await?;
            let Some(tail) = page.last() else { break };
            next = tail.seq + 1;
            found.extend(page.into_iter().filter(|r| r.seq <= last));
            if found.len() > limit * 4 {
                found.drain(..found.len() - limit);
            }
        }
        if found.len() >= limit || from == 1 {
            let skip = found.len().saturating_sub(limit);
            return Ok(found.split_off(skip));
        }
        window = window.saturating_mul(4);
    }
}
