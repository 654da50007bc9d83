//! `powernode events tail`: a catch-up through `recent_events` (the last
//! `-n` events, or the events from `--since`: every one, or the first
//! `-n`), then, with `--follow`, the live events from
//! `GET /v1/events/stream` (after the last one printed).
//!
//! No gap and no duplicate at the switch: `recent_events` answers
//! `through`, the log position its answer is complete up to, and the
//! stream is opened with `Last-Event-ID: <through>`. After a dropped
//! connection or an API restart the stream is reopened, with back-off,
//! from the last sequence received (the server's opening `id:` gives it
//! even before the first event), and anything at or below it is skipped.

use super::{render_styled, summary, time};
use crate::output::{cell, emit, Ctx};
use crate::ApiArgs;
use powernode_actions::ActionName;
use powernode_client::{Api, EventsQuery};
use serde_json::{json, Map, Value};
use std::io::IsTerminal;
use std::time::Duration;

/// The most `recent_events` answers at once.
const PAGE: usize = 1000;
/// `-n` without `--since`, when not given.
const DEFAULT_LIMIT: usize = 20;
/// Longest wait between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// `powernode events tail`.
#[derive(Debug, Clone, clap::Args)]
pub struct TailArgs {
    /// Only kinds starting with this plain prefix (`system.k3s.handshake.join`
    /// matches `…join_request` and `…join_token_issued`).
    #[arg(long, value_name = "P")]
    pub kind_prefix: Option<String>,
    /// Only events about this cluster (its own, and those naming it).
    #[arg(long, value_name = "ID")]
    pub cluster: Option<String>,
    /// Only events about this instance (its own, and those naming it).
    #[arg(long, value_name = "ID")]
    pub instance: Option<String>,
    /// Start here instead of the last -n events: a sequence number, an
    /// RFC 3339 time, or a duration back from now (`30s`, `10m`, `2h`).
    #[arg(long, value_name = "SEQ|TIME|DURATION")]
    pub since: Option<String>,
    /// How many events to print first. Without --since: the N newest
    /// (default 20; 1-1000; with --follow, 0 prints only what comes next).
    /// With --since: the first N from that point, oldest first (default:
    /// all of them); --follow then carries on after the last one printed.
    #[arg(long, short = 'n', value_name = "N")]
    pub limit: Option<usize>,
    /// Keep printing events as they are appended (a server-sent-events
    /// stream that reconnects on its own, resuming where it stopped).
    #[arg(long, short = 'f')]
    pub follow: bool,
}

/// Runs `powernode events tail`.
pub async fn run(api: &ApiArgs, args: TailArgs) -> anyhow::Result<()> {
    match (args.limit, &args.since) {
        (Some(n), None) if n > PAGE || (n == 0 && !args.follow) => {
            anyhow::bail!("-n/--limit must be 1-{PAGE} (0 only with --follow), got {n}")
        }
        (Some(0), Some(_)) if !args.follow => {
            anyhow::bail!("-n/--limit 0 with --since prints nothing: give 1 or more (or --follow)")
        }
        _ => {}
    }
    let ctx = Ctx::new(api)?;
    let mut out = Printer::new(ctx.json(), args.follow);
    let mut filters = Map::new();
    for (key, value) in [
        ("kind_prefix", &args.kind_prefix),
        ("cluster", &args.cluster),
        ("instance", &args.instance),
    ] {
        if let Some(v) = value {
            filters.insert(key.to_string(), json!(v));
        }
    }
    let position = catch_up(&ctx.api, &args, &filters, &mut out).await?;
    if !args.follow {
        out.finish();
        return Ok(());
    }
    follow(&ctx.api, &args, position, &mut out).await
}

/// Prints the catch-up; answers the log position it is complete up to
/// (`None` with `-n 0`: nothing read, the stream starts from now).
async fn catch_up(
    api: &Api,
    args: &TailArgs,
    filters: &Map<String, Value>,
    out: &mut Printer,
) -> anyhow::Result<Option<u64>> {
    let ask = |since: Option<Value>, limit: usize| {
        let mut a = filters.clone();
        a.insert("limit".into(), json!(limit));
        if let Some(s) = since {
            a.insert("since".into(), s);
        }
        Value::Object(a)
    };
    let Some(since) = &args.since else {
        let limit = args.limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 {
            return Ok(None);
        }
        let data = api
            .call(ActionName::RecentEvents.as_str(), &ask(None, limit))
            .await?;
        out.events(events_of(&data));
        return Ok(data["through"].as_u64());
    };
    // With -n, the first N from `since`: pages of at most what is still
    // wanted; once N are printed, the position is the last one's seq (the
    // answer's `through` when more follow), so --follow goes on after it.
    let mut left = args.limit;
    let mut since = json!(since);
    loop {
        let page = left.map_or(PAGE, |l| l.min(PAGE));
        if page == 0 {
            // `-n 0 --since X --follow`: nothing printed, follow from X.
            return Ok(start_of(&since));
        }
        let data = api
            .call(ActionName::RecentEvents.as_str(), &ask(Some(since), page))
            .await?;
        let events = events_of(&data);
        out.events(events);
        let through = data["through"].as_u64().unwrap_or(0);
        left = left.map(|l| l.saturating_sub(events.len()));
        if data["more"] != json!(true) || left == Some(0) {
            return Ok(Some(through));
        }
        since = json!(through + 1);
    }
}

/// The position just before `since` when it is a sequence number (the
/// stream then starts at it); `None` (from now) for a time or duration.
fn start_of(since: &Value) -> Option<u64> {
    let seq = match since {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse::<u64>().ok(),
        _ => None,
    }?;
    Some(seq.saturating_sub(1))
}

fn events_of(data: &Value) -> &[Value] {
    data["events"].as_array().map_or(&[][..], |v| v)
}

/// Reads the stream for ever, reconnecting after a drop.
async fn follow(
    api: &Api,
    args: &TailArgs,
    mut position: Option<u64>,
    out: &mut Printer,
) -> anyhow::Result<()> {
    let path = EventsQuery {
        kind_prefix: args.kind_prefix.clone(),
        cluster: args.cluster.clone(),
        instance: args.instance.clone(),
        since: None,
    }
    .path();
    let mut failures: u32 = 0;
    loop {
        let why = match api.events(&path, position).await {
            Ok(mut stream) => loop {
                match stream.next().await {
                    Ok(Some(event)) => {
                        failures = 0;
                        let Some(seq) = event.seq() else { continue };
                        if position.is_some_and(|p| seq <= p) {
                            continue;
                        }
                        position = Some(seq);
                        if let Some(data) = &event.data {
                            match serde_json::from_str::<Value>(data) {
                                Ok(v) => out.events(std::slice::from_ref(&v)),
                                Err(e) => note(&format!("event {seq} is not JSON ({e}); skipped")),
                            }
                        }
                    }
                    Ok(None) => break "the API ended the stream".to_string(),
                    Err(e) => break format!("{:#}", anyhow::Error::from(e)),
                }
            },
            // A refusal (bad token, bad filter) will not go away by retrying.
            Err(e) if e.refusal().is_some_and(|r| r.status < 500) => return Err(e.into()),
            Err(e) => format!("{:#}", anyhow::Error::from(e)),
        };
        failures = failures.saturating_add(1);
        let wait = backoff(failures);
        let after = position.map_or("now".to_string(), |p| format!("seq {p}"));
        note(&format!(
            "{why}; reconnecting in {} ms (resuming after {after})",
            wait.as_millis()
        ));
        tokio::time::sleep(wait).await;
    }
}

/// 250 ms, doubling, at most [`MAX_BACKOFF`].
fn backoff(failures: u32) -> Duration {
    let ms = 250u64.saturating_mul(1 << failures.saturating_sub(1).min(5));
    Duration::from_millis(ms).min(MAX_BACKOFF)
}

/// A dim `powernode: …` note on stderr.
fn note(text: &str) {
    let text = format!("powernode: {text}");
    if colour_allowed(std::io::stderr().is_terminal()) {
        eprintln!("\x1b[2m{text}\x1b[0m");
    } else {
        eprintln!("{text}");
    }
}

/// Colour on a terminal unless `NO_COLOR` is set (to anything non-empty)
/// or `TERM=dumb`.
pub fn colour_allowed(is_terminal: bool) -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
    is_terminal && !no_color && !dumb
}

/// The ANSI colour of a kind: rejections and failures red, silences and
/// what waits for someone yellow, endings magenta, successes green.
pub fn kind_colour(kind: &str) -> Option<&'static str> {
    let has = |words: &[&str]| words.iter().any(|w| kind.contains(w));
    if has(&["rejected", "failed", "no_candidate", "refused"]) {
        Some("31")
    } else if has(&[
        "silent",
        "suppressed",
        "expired",
        "superseded",
        "ignored",
        "requested",
        "proposed",
    ]) {
        Some("33")
    } else if has(&[
        "decommissioned",
        "terminated",
        "drained",
        "released",
        "revoked",
    ]) {
        Some("35")
    } else if has(&[
        "ready",
        "activated",
        "bootstrapped",
        "granted",
        "promoted",
        "registered",
    ]) {
        Some("32")
    } else {
        None
    }
}

/// `text` in colour `code` (already padded: escapes do not count as width).
pub fn paint(colour: bool, code: Option<&str>, text: &str) -> String {
    match code {
        Some(c) if colour => format!("\x1b[{c}m{text}\x1b[0m"),
        _ => text.to_string(),
    }
}

/// Prints events as they come: one compact JSON object per line, a table
/// at the end (no --follow, at most a page of events), or fixed-width
/// table rows as they arrive (--follow, or more than a page).
struct Printer {
    json: bool,
    streaming: bool,
    colour: bool,
    header_done: bool,
    held: Vec<Value>,
}

/// Column widths of the streaming table.
const WIDTHS: [usize; 4] = [7, 20, 42, 48];

impl Printer {
    fn new(json: bool, streaming: bool) -> Self {
        Self {
            json,
            streaming,
            colour: colour_allowed(std::io::stdout().is_terminal()),
            header_done: false,
            held: Vec::new(),
        }
    }

    fn events(&mut self, events: &[Value]) {
        if self.json {
            let mut text = String::new();
            for e in events {
                text.push_str(&e.to_string());
                text.push('\n');
            }
            if !text.is_empty() {
                emit(&text);
            }
        } else if self.streaming {
            self.rows(events);
        } else {
            self.held.extend_from_slice(events);
            if self.held.len() > PAGE {
                // Too many to hold for one aligned table: rows as they come.
                self.streaming = true;
                let held = std::mem::take(&mut self.held);
                self.rows(&held);
            }
        }
    }

    /// Streaming rows with fixed widths (the header first).
    fn rows(&mut self, events: &[Value]) {
        let mut text = String::new();
        if !self.header_done {
            self.header_done = true;
            let header = self.row(["SEQ", "TIME", "KIND", "AGGREGATE", "SUMMARY"], None);
            text.push_str(&paint(self.colour, Some("1"), &header));
            text.push('\n');
        }
        for e in events {
            let kind = cell(&e["kind"]);
            let aggregate = format!(
                "{}/{}",
                cell(&e["aggregate"]["type"]),
                cell(&e["aggregate"]["id"])
            );
            let cells = [&cell(&e["seq"]), &time(e), &kind, &aggregate, &summary(e)];
            text.push_str(&self.row(cells.map(String::as_str), kind_colour(&kind)));
            text.push('\n');
        }
        emit(&text);
    }

    fn row(&self, cells: [&str; 5], kind_colour: Option<&str>) -> String {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            let Some(&w) = WIDTHS.get(i) else {
                out.push_str(c);
                break;
            };
            let padded = format!("{c:<w$}  ");
            let code = match i {
                0 | 1 => Some("2"),
                2 => kind_colour,
                _ => None,
            };
            out.push_str(&paint(self.colour, code, &padded));
        }
        out.trim_end().to_string()
    }

    /// The held events as one aligned table (without --follow).
    fn finish(&mut self) {
        if self.json || self.streaming {
            return;
        }
        emit(&render_styled(&self.held, self.colour));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_are_red_and_silences_yellow() {
        assert_eq!(
            kind_colour("system.k3s.handshake.join_rejected"),
            Some("31")
        );
        assert_eq!(kind_colour("system.sdwan.failover.suppressed"), Some("33"));
        assert_eq!(kind_colour("system.sdwan.vip_holder_silent"), Some("33"));
        assert_eq!(kind_colour("system.k3s.handshake.ready"), Some("32"));
        assert_eq!(kind_colour("system.template.created"), None);
        assert_eq!(paint(false, Some("31"), "x"), "x");
        assert_eq!(paint(true, Some("31"), "x"), "\x1b[31mx\x1b[0m");
    }

    #[test]
    fn since_a_sequence_follows_from_just_before_it() {
        assert_eq!(start_of(&json!("7")), Some(6));
        assert_eq!(start_of(&json!(1)), Some(0));
        assert_eq!(start_of(&json!("30s")), None);
    }

    #[test]
    fn backoff_doubles_to_a_ceiling() {
        assert_eq!(backoff(1), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_millis(500));
        assert_eq!(backoff(20), MAX_BACKOFF);
    }
}
