//! What `recent_events` and `GET /v1/events/stream` share: where to start
//! (`since`: a sequence, an RFC 3339 time or a duration back from now) and
//! which events to show (an account, a kind prefix, optionally only the
//! events about one cluster or instance), and the JSON an event is shown as.

use chrono::{DateTime, Utc};
use powernode_archive::concerns;
use powernode_events::{AccountId, Envelope};
use powernode_log::{Filter, Record, StartAt};
use serde_json::{json, Value};
use tracing::warn;

/// Where a read or a stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// From this log sequence (inclusive; 0 reads as 1).
    Seq(u64),
    /// From the first event stored at or after this time (durations like
    /// `10m` are resolved against the clock when parsed).
    Time(DateTime<Utc>),
}

/// What `since` accepts, for error messages.
const SINCE_FORMS: &str =
    "a sequence number, an RFC 3339 time (like 2026-11-21T10:00:00Z) or a duration like 30s, 10m, 2h, 1d";

impl Since {
    /// Parses a sequence number, an RFC 3339 time, or a duration back from
    /// `now` (`30s`, `10m`, `2h`, `1d`, `1h30m`). The error names the input.
    pub fn parse(text: &str, now: DateTime<Utc>) -> Result<Self, String> {
        let t = text.trim();
        if let Ok(seq) = t.parse::<u64>() {
            return Ok(Self::Seq(seq));
        }
        if let Ok(time) = DateTime::parse_from_rfc3339(t) {
            return Ok(Self::Time(time.with_timezone(&Utc)));
        }
        if let Some(d) = parse_duration(t) {
            let back = chrono::Duration::from_std(d).ok();
            let at = back.and_then(|b| now.checked_sub_signed(b));
            return Ok(Self::Time(at.unwrap_or(DateTime::<Utc>::MIN_UTC)));
        }
        Err(format!("expected {SINCE_FORMS}, got {text:?}"))
    }

    /// Parses a JSON argument: a non-negative integer or a string [`Since::parse`] takes.
    pub fn from_json(v: &Value, now: DateTime<Utc>) -> Result<Self, String> {
        match v {
            Value::Number(n) => n
                .as_u64()
                .map(Self::Seq)
                .ok_or_else(|| format!("expected {SINCE_FORMS}, got {n}")),
            Value::String(s) => Self::parse(s, now),
            other => Err(format!("expected {SINCE_FORMS}, got {other}")),
        }
    }

    /// The subscription start.
    pub fn start_at(self) -> StartAt {
        match self {
            Self::Seq(s) => StartAt::Seq(s.max(1)),
            Self::Time(t) => StartAt::Time(t),
        }
    }
}

/// `30s`, `10m`, `2h`, `1d`, `1h30m` (whole numbers, units s/m/h/d).
pub fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut any = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return None,
        };
        let n: u64 = digits.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        digits.clear();
        any = true;
    }
    (any && digits.is_empty()).then(|| std::time::Duration::from_secs(total))
}

/// Which events a read or stream shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// Account and kind prefix (applied by the log, server-side on JetStream).
    pub filter: Filter,
    /// Only events about this cluster ([`concerns`]).
    pub cluster: Option<String>,
    /// Only events about this instance ([`concerns`]).
    pub instance: Option<String>,
}

impl Scope {
    /// The account's events, optionally narrowed; empty strings mean "no filter".
    pub fn new(
        account: AccountId,
        kind_prefix: Option<String>,
        cluster: Option<String>,
        instance: Option<String>,
    ) -> Self {
        let some = |s: Option<String>| s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        Self {
            filter: Filter {
                account: Some(account),
                kind_prefix: kind_prefix.filter(|p| !p.is_empty()),
            },
            cluster: some(cluster),
            instance: some(instance),
        }
    }

    /// The record as the JSON `recent_events` and the stream show (the
    /// envelope plus `seq`), or `None` when it is outside the scope or does
    /// not decode (such a record was recorded as rejected by the services).
    pub fn event_json(&self, record: &Record) -> Option<Value> {
        if !self.filter.matches_subject(&record.subject) {
            return None;
        }
        let event = Envelope::decode(&record.bytes).ok()?;
        if let Some(c) = &self.cluster {
            if !concerns(&event, c) {
                return None;
            }
        }
        if let Some(i) = &self.instance {
            if !concerns(&event, i) {
                return None;
            }
        }
        match serde_json::to_value(&event) {
            Ok(mut v) => {
                v["seq"] = json!(record.seq);
                Some(v)
            }
            Err(e) => {
                warn!(seq = record.seq, error = %e, "event not shown: cannot encode it as JSON");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn since_takes_sequences_times_and_durations() {
        let now = Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap();
        assert_eq!(Since::parse("42", now), Ok(Since::Seq(42)));
        assert_eq!(
            Since::parse("2026-11-21T10:00:00Z", now),
            Ok(Since::Time(
                Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap()
            ))
        );
        assert_eq!(
            Since::parse("10m", now),
            Ok(Since::Time(
                Utc.with_ymd_and_hms(2026, 11, 21, 11, 50, 0).unwrap()
            ))
        );
        assert_eq!(
            Since::parse("1h30m", now),
            Ok(Since::Time(
                Utc.with_ymd_and_hms(2026, 11, 21, 10, 30, 0).unwrap()
            ))
        );
        for bad in ["yesterday", "", "m", "10x", "-5", "1.5h", "10m5"] {
            let e = Since::parse(bad, now).unwrap_err();
            assert!(e.contains("RFC 3339") && e.contains(bad), "{bad}: {e}");
        }
        assert_eq!(Since::from_json(&json!(7), now), Ok(Since::Seq(7)));
        assert!(Since::from_json(&json!(-1), now).is_err());
        assert!(Since::from_json(&json!(true), now).is_err());
        assert_eq!(Since::Seq(0).start_at(), StartAt::Seq(1));
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("30s"),
            Some(std::time::Duration::from_secs(30))
        );
        assert_eq!(
            parse_duration("2h"),
            Some(std::time::Duration::from_secs(7200))
        );
        assert_eq!(
            parse_duration("1d"),
            Some(std::time::Duration::from_secs(86_400))
        );
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration(""), None);
    }
}
