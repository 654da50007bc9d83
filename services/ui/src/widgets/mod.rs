//! Small pieces of markup the pages share: status badges, the flash
//! message after an action, durations, links that keep the request's
//! `?at=` sequence.

use crate::backend::At;
use crate::session::{urlencode, Ctx};
use maud::{html, Markup};

/// The tone of a status badge (`.badge.ok`, `.badge.warn`, `.badge.bad`,
/// `.badge.off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Healthy: active, ready, allocated, granted.
    Ok,
    /// On its way or waiting: bootstrapping, joining, requested.
    Warn,
    /// Something is wrong: failed, rejected, silent, split.
    Bad,
    /// Over: decommissioned, released, expired, superseded.
    Off,
}

impl Tone {
    fn class(self) -> &'static str {
        match self {
            Tone::Ok => "ok",
            Tone::Warn => "warn",
            Tone::Bad => "bad",
            Tone::Off => "off",
        }
    }

    /// The tone of a status word (clusters, nodes, VIPs, approvals,
    /// executions).
    pub fn of(status: &str) -> Tone {
        match status {
            "active" | "ready" | "allocated" | "granted" | "completed" | "succeeded" => Tone::Ok,
            "bootstrapping" | "joining" | "requested" | "pending" | "running" | "paused" => {
                Tone::Warn
            }
            "decommissioned" | "released" | "expired" | "superseded" | "cancelled" => Tone::Off,
            _ => Tone::Bad,
        }
    }
}

/// A status badge: the status word itself, coloured by [`Tone::of`].
pub fn badge(status: &str) -> Markup {
    badge_as(status, Tone::of(status))
}

/// A badge with an explicit tone.
pub fn badge_as(text: &str, tone: Tone) -> Markup {
    html! { span class={ "badge " (tone.class()) } { (text) } }
}

/// The snake_case word serde writes for a unit enum (`Active` → `active`).
pub fn word<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// `/ui/<path>`, with `at=<seq>` when the request reads a past sequence.
pub fn href_at(ctx: &Ctx, path: &str) -> String {
    match ctx.at {
        At::Head => path.to_string(),
        At::Seq(seq) => {
            let sep = if path.contains('?') { '&' } else { '?' };
            format!("{path}{sep}at={seq}")
        }
    }
}

/// What an action that redirected here did (`?done=<what>&subject=<id>`).
/// Only the known words are shown, so a link cannot put text of its own on
/// the page.
pub fn flash(done: Option<&str>, subject: Option<&str>) -> Markup {
    let subject = subject.unwrap_or_default();
    let text = match done {
        Some("decommissioned") => format!("Cluster {subject} was decommissioned: its nodes are gone, its instances kept, its virtual IP released."),
        Some("approved") => format!("Approval {subject} granted: the failover is carried out; the holder and generation below follow it live."),
        Some("rejected") => format!("Approval {subject} rejected; nothing was promoted."),
        _ => return html! {},
    };
    html! { p.flash id="flash" role="status" data-done=[done] { (text) } }
}

/// The query string `?done=<what>&subject=<id>` of a redirect after an
/// action.
pub fn done_query(what: &str, subject: &str) -> String {
    format!("done={what}&subject={}", urlencode(subject))
}

/// A duration as `4m 10s` / `2h 5m` / `3d 4h`.
pub fn duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// How long until `rfc3339` from now: `in 4m 10s`, or `expired`.
pub fn countdown(rfc3339: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    match chrono::DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) => {
            let left = (t.with_timezone(&chrono::Utc) - now).num_seconds();
            if left <= 0 {
                "expired".to_string()
            } else {
                format!("in {}", duration(left))
            }
        }
        Err(_) => String::new(),
    }
}

/// A value or a muted dash.
pub fn or_dash(v: Option<&str>) -> Markup {
    match v.filter(|s| !s.is_empty()) {
        Some(s) => html! { (s) },
        None => html! { span.muted { "—" } },
    }
}

/// A link to one event's envelope.
pub fn seq_link(seq: u64) -> Markup {
    html! { a.seq href={ "/ui/events/" (seq) } { "#" (seq) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tones_follow_the_status_words() {
        assert_eq!(Tone::of("active"), Tone::Ok);
        assert_eq!(Tone::of("bootstrapping"), Tone::Warn);
        assert_eq!(Tone::of("decommissioned"), Tone::Off);
        assert_eq!(Tone::of("failed"), Tone::Bad);
        assert!(badge("active").into_string().contains("badge ok"));
    }

    #[test]
    fn durations_and_countdowns_read_short() {
        assert_eq!(duration(42), "42s");
        assert_eq!(duration(250), "4m 10s");
        assert_eq!(duration(7500), "2h 5m");
        assert_eq!(duration(3 * 86_400 + 4 * 3600), "3d 4h");
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(countdown("2026-01-01T00:04:10Z", now), "in 4m 10s");
        assert_eq!(countdown("2025-12-31T23:00:00Z", now), "expired");
    }

    #[test]
    fn a_flash_shows_only_known_words_and_escapes_the_subject() {
        assert_eq!(flash(Some("<script>"), Some("x")).into_string(), "");
        let f = flash(Some("rejected"), Some("<b>apr</b>")).into_string();
        assert!(f.contains("id=\"flash\""));
        assert!(f.contains("&lt;b&gt;apr&lt;/b&gt;"));
    }
}
