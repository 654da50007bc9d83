//! The data-path check on the sensor's side: from the probes the
//! cluster's other agents made through a VIP ([`crate::liveness`]), is
//! the holder reachable, and if not, since when?
//!
//! A prober's view is good when its newest report reached the holder at
//! the VIP's generation (see [`ProbeReport::reached_holder`]); bad since
//! the first of its trailing run of failed reports otherwise. The VIP is
//! unreachable when every prober heard lately is bad, since the moment the
//! last of them turned bad. Probers not heard for [`STALE_AFTER`]
//! thresholds (an agent that stopped, a worker that left) do not count.

use crate::liveness::dataplane::ProbeReport;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::time::Duration;

/// A prober whose newest report is older than this many thresholds is not
/// counted.
pub const STALE_AFTER: u32 = 4;

/// What the probes of a VIP say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataPath {
    /// Nobody probed lately: no evidence either way.
    Unknown,
    /// At least one prober reached the holder; the newest such report was
    /// heard at this time.
    Reachable(DateTime<Utc>),
    /// Every prober heard lately fails, all of them since this time.
    Unreachable(DateTime<Utc>),
}

/// What `probes` (prober instance → reports, oldest first) say about the
/// VIP held by `holder` (its instance) at `generation`, at `now`. Only
/// `members` count as probers (instances of the VIP's account), never the
/// holder itself, and only reports heard after `since` (the holder's
/// promotion: earlier ones were about another holder).
pub fn assess(
    probes: &HashMap<String, Vec<ProbeReport>>,
    holder: &str,
    generation: u64,
    members: impl Fn(&str) -> bool,
    since: Option<DateTime<Utc>>,
    threshold: Duration,
    now: DateTime<Utc>,
) -> DataPath {
    let stale = chrono::Duration::from_std(threshold * STALE_AFTER)
        .unwrap_or_else(|_| chrono::Duration::seconds(60));
    let mut newest_good: Option<DateTime<Utc>> = None;
    let mut all_bad_since: Option<DateTime<Utc>> = None;
    let mut probers = 0;
    for (prober, reports) in probes {
        if prober == holder || !members(prober) {
            continue;
        }
        let recent: Vec<&ProbeReport> = reports
            .iter()
            .filter(|r| since.is_none_or(|s| r.heard_at >= s))
            .collect();
        let Some(last) = recent.last() else {
            continue;
        };
        if now - last.heard_at > stale {
            continue;
        }
        probers += 1;
        if last.reached_holder(holder, generation) {
            newest_good = newest_good.max(Some(last.heard_at));
            continue;
        }
        let bad_since = recent
            .iter()
            .rev()
            .take_while(|r| !r.reached_holder(holder, generation))
            .last()
            .map_or(last.heard_at, |r| r.heard_at);
        all_bad_since = all_bad_since.max(Some(bad_since));
    }
    match (newest_good, all_bad_since) {
        (Some(good), _) => DataPath::Reachable(good),
        (None, Some(bad)) if probers > 0 => DataPath::Unreachable(bad),
        _ => DataPath::Unknown,
    }
}
