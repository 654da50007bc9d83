//! `powernode events …`: `tail` (in [`tail`]: the newest events or those
//! since a point, then with `--follow` the live stream), the dispatch to
//! export, import, explain and verify (in [`verify`]), and the event tables and one-line
//! summaries the demo prints too.

mod tail;
mod verify;

pub use tail::TailArgs;

use super::output::{cell, Table};
use crate::ApiArgs;
use powernode_actions::ActionName;
use powernode_client::Api;
use serde_json::{json, Value};

/// `powernode events`.
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: EventsCommand,
}

/// Subcommands of `powernode events`.
#[derive(Debug, clap::Subcommand)]
pub enum EventsCommand {
    /// Print the newest events (or those since a point), oldest first;
    /// with --follow, keep printing new ones as they are appended.
    Tail(tail::TailArgs),
    /// Write events to a portable file (length-prefixed CBOR).
    Export(super::export::ExportArgs),
    /// Load an export into an empty log (embedded or JetStream).
    Import(super::export::ImportArgs),
    /// The history of a cluster, VIP, instance or approval as a causal chain.
    Explain(super::explain::ExplainArgs),
    /// Check a log is intact: sealed ranges by digest, signatures past the
    /// last seal one by one; names a tampered record by seq.
    Verify(verify::VerifyArgs),
}

/// The most `recent_events` answers at once.
const MAX_LIMIT: usize = 1000;

/// Runs `powernode events …`.
pub async fn run(api: &ApiArgs, args: EventsArgs) -> anyhow::Result<()> {
    let tail = match args.command {
        EventsCommand::Tail(a) => a,
        EventsCommand::Export(mut a) => {
            (a.data_dir, a.output) = (api.data_dir(), api.output);
            return super::export::export(api, a).await;
        }
        EventsCommand::Import(mut a) => {
            (a.data_dir, a.output) = (api.data_dir(), api.output);
            return super::export::import(a).await;
        }
        EventsCommand::Explain(a) => return super::explain::run(api, a).await,
        EventsCommand::Verify(mut a) => {
            (a.data_dir, a.output) = (api.data_dir(), api.output);
            return verify::run(a).await;
        }
    };
    tail::run(api, tail).await
}

/// The event's log sequence (0 when absent).
pub fn seq(e: &Value) -> u64 {
    e["seq"].as_u64().unwrap_or(0)
}

/// Events with a sequence above `after`, oldest first, page by page
/// (`recent_events` with `since`), and whether some may be missing
/// (never: the pages carry on until the end).
pub async fn since(api: &Api, kind_prefix: &str, after: u64) -> anyhow::Result<(Vec<Value>, bool)> {
    let mut out = Vec::new();
    let mut from = after + 1;
    loop {
        let data = api
            .call(
                ActionName::RecentEvents.as_str(),
                &json!({ "kind_prefix": kind_prefix, "since": from, "limit": MAX_LIMIT }),
            )
            .await?;
        out.extend(data["events"].as_array().cloned().unwrap_or_default());
        match data["through"].as_u64() {
            Some(through) if data["more"] == json!(true) => from = through + 1,
            _ => return Ok((out, false)),
        }
    }
}

/// Events as a table: SEQ TIME KIND AGGREGATE SUMMARY.
pub fn render(events: &[Value], indent: usize) -> String {
    let mut t = Table::new(&["SEQ", "TIME", "KIND", "AGGREGATE", "SUMMARY"]);
    for e in events {
        t.row(columns(e).to_vec());
    }
    t.render_indented(indent, "No events.")
}

/// The table cells of an event.
fn columns(e: &Value) -> [String; 5] {
    [
        cell(&e["seq"]),
        time(e),
        cell(&e["kind"]),
        format!(
            "{}/{}",
            cell(&e["aggregate"]["type"]),
            cell(&e["aggregate"]["id"])
        ),
        summary(e),
    ]
}

/// [`render`] with colour (when `colour`): the header bold, sequence and
/// time dim, the kind by [`tail::kind_colour`].
pub fn render_styled(events: &[Value], colour: bool) -> String {
    if !colour || events.is_empty() {
        return render(events, 0);
    }
    const HEADER: [&str; 5] = ["SEQ", "TIME", "KIND", "AGGREGATE", "SUMMARY"];
    let rows: Vec<[String; 5]> = events.iter().map(columns).collect();
    let mut widths = HEADER.map(|h| h.chars().count());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: [&str; 5], codes: [Option<&str>; 5]| {
        let mut text = String::new();
        for (i, c) in cells.iter().enumerate() {
            let padded = if i + 1 == cells.len() {
                c.to_string()
            } else {
                format!("{c:<w$}  ", w = widths[i])
            };
            text.push_str(&tail::paint(colour, codes[i], &padded));
        }
        text.push('\n');
        text
    };
    let mut out = line(HEADER, [Some("1"); 5]);
    for r in &rows {
        out.push_str(&line(
            [&r[0], &r[1], &r[2], &r[3], &r[4]].map(String::as_str),
            [Some("2"), Some("2"), tail::kind_colour(&r[2]), None, None],
        ));
    }
    out
}

/// `occurred_at` to the second, UTC.
fn time(e: &Value) -> String {
    e["occurred_at"]
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string()
        })
        .unwrap_or_else(|| cell(&e["occurred_at"]))
}

/// Payload fields shown first, in this order; the rest follow.
const FIRST: &[&str] = &[
    "name",
    "hostname",
    "module_name",
    "target_cluster_id",
    "cluster_id",
    "instance_id",
    "role",
    "node_name",
    "api_endpoint",
    "vip",
    "purpose",
    "reason",
];

/// Payload fields never worth a summary: secrets' fingerprints, keys, noise.
fn boring(key: &str) -> bool {
    key.contains("fingerprint")
        || matches!(
            key,
            "public_key" | "server_flags" | "assignment_id" | "handle" | "vip_range" | "extra"
        )
}

/// A short `key=value …` summary of an event's payload: the aggregate's own
/// id, fingerprints and empty fields left out, nested objects flattened.
pub fn summary(e: &Value) -> String {
    summarize(e, false)
}

/// [`summary`] without the ids of templates, nodes, networks and peers
/// (clusters and instances stay): for narration, where lines should fit.
pub fn brief_summary(e: &Value) -> String {
    summarize(e, true)
}

fn summarize(e: &Value, brief: bool) -> String {
    let own = e["aggregate"]["id"].as_str().unwrap_or_default();
    let mut pairs: Vec<(String, String)> = Vec::new();
    flatten(&e["payload"], &mut pairs);
    pairs.retain(|(k, v)| !boring(k) && v != own && v != "-");
    if brief {
        pairs.retain(|(k, _)| {
            !k.ends_with("_id")
                || matches!(
                    k.as_str(),
                    "cluster_id" | "instance_id" | "target_cluster_id"
                )
        });
    }
    pairs.sort_by_key(|(k, _)| FIRST.iter().position(|f| f == k).unwrap_or(FIRST.len()));
    let text = pairs
        .iter()
        .map(|(k, v)| format!("{}={v}", super::output::printable(k)))
        .collect::<Vec<_>>()
        .join(" ");
    const MAX: usize = 160;
    if text.chars().count() > MAX {
        format!("{}…", text.chars().take(MAX - 1).collect::<String>())
    } else {
        text
    }
}

fn flatten(v: &Value, out: &mut Vec<(String, String)>) {
    if let Value::Object(map) = v {
        for (k, v) in map {
            match v {
                Value::Object(_) if !boring(k) => flatten(v, out),
                _ => out.push((k.clone(), cell(v))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_lead_with_what_matters_and_skip_the_aggregate_and_secrets() {
        let e = json!({
            "kind": "system.k3s.handshake.join_rejected",
            "aggregate": {"type": "instance", "id": "inst-1"},
            "payload": {
                "instance_id": "inst-1",
                "reason": "cluster_not_found: no cluster c-9",
                "target_cluster_id": "c-9",
            },
        });
        assert_eq!(
            summary(&e),
            "target_cluster_id=c-9 reason=cluster_not_found: no cluster c-9"
        );
        let e = json!({
            "aggregate": {"type": "template", "id": "t"},
            "payload": {
                "assignment_id": "a", "template_id": "t", "module_name": "k3s-agent",
                "config": {"extra": {}, "target_cluster_id": "c-1"},
                "token_fingerprint": "sha256:x",
            },
        });
        assert_eq!(summary(&e), "module_name=k3s-agent target_cluster_id=c-1");
    }
}
