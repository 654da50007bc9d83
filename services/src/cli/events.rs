//! `powernode events tail`: the account's newest events (recent_events),
//! optionally following new ones; and the one-line event summaries the
//! demo prints too.

use super::client::{Api, ApiArgs};
use super::output::{cell, emit, line, ClientOpts, Ctx, Table};
use serde_json::{json, Value};
use std::time::Duration;

/// `powernode events`.
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// Output and token options.
    #[command(flatten)]
    pub opts: ClientOpts,
    /// What to do.
    #[command(subcommand)]
    pub command: EventsCommand,
}

/// Subcommands of `powernode events`.
#[derive(Debug, clap::Subcommand)]
pub enum EventsCommand {
    /// Print the newest events, oldest first (recent_events).
    Tail {
        /// Only kinds starting with this, e.g. `system.k3s.handshake`.
        #[arg(long, value_name = "P")]
        kind_prefix: Option<String>,
        /// How many (1-1000).
        #[arg(long, short = 'n', default_value_t = 20)]
        limit: usize,
        /// Keep polling every second and print new events as they come
        /// (with -o json: one JSON object per line).
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Write events to a portable file (length-prefixed CBOR).
    Export(super::export::ExportArgs),
    /// Load an export into an empty log (embedded or JetStream).
    Import(super::export::ImportArgs),
    /// The history of a cluster, VIP, instance or approval as a causal chain.
    Explain(super::explain::ExplainArgs),
}

/// The most `recent_events` answers at once.
const MAX_LIMIT: usize = 1000;
/// What `--follow` asks for each second (widened when that is not enough).
const POLL_LIMIT: usize = 100;

/// Runs `powernode events …`.
pub async fn run(api: &ApiArgs, args: EventsArgs) -> anyhow::Result<()> {
    let (kind_prefix, limit, follow) = match args.command {
        EventsCommand::Tail {
            kind_prefix,
            limit,
            follow,
        } => (kind_prefix, limit, follow),
        EventsCommand::Export(a) => return super::export::export(api, a).await,
        EventsCommand::Import(a) => return super::export::import(a).await,
        EventsCommand::Explain(a) => return super::explain::run(api, a).await,
    };
    let ctx = Ctx::new(api, &args.opts)?;
    let prefix = kind_prefix.unwrap_or_default();
    let data = ctx
        .api
        .call(
            "recent_events",
            &json!({ "kind_prefix": prefix, "limit": limit }),
        )
        .await?;
    let events = data["events"].as_array().cloned().unwrap_or_default();
    let mut last = events.iter().map(seq).max().unwrap_or(0);
    if !follow {
        ctx.show(&data, |d| {
            render(d["events"].as_array().map_or(&[][..], |v| v), 0)
        });
        return Ok(());
    }
    print_follow(&ctx, &events, true);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (new, truncated) = since(&ctx.api, &prefix, last).await?;
        if truncated {
            eprintln!(
                "powernode: more than {MAX_LIMIT} events arrived within a second; some were skipped"
            );
        }
        if let Some(max) = new.iter().map(seq).max() {
            last = max;
        }
        print_follow(&ctx, &new, false);
    }
}

fn print_follow(ctx: &Ctx, events: &[Value], header: bool) {
    if ctx.json() {
        for e in events {
            line(&e.to_string());
        }
        return;
    }
    let text = render(events, 0);
    let body = if header || events.is_empty() {
        text
    } else {
        // Only the header line differs between polls; drop it after the first.
        text.split_once('\n')
            .map(|(_, rest)| rest.to_string())
            .unwrap_or_default()
    };
    if !events.is_empty() || header {
        emit(&body);
    }
}

/// The event's log sequence (0 when absent).
pub fn seq(e: &Value) -> u64 {
    e["seq"].as_u64().unwrap_or(0)
}

/// Events with a sequence above `after`, oldest first, and whether some
/// may be missing (more than the API answers at once arrived).
pub async fn since(api: &Api, kind_prefix: &str, after: u64) -> anyhow::Result<(Vec<Value>, bool)> {
    for limit in [POLL_LIMIT, MAX_LIMIT] {
        let data = api
            .call(
                "recent_events",
                &json!({ "kind_prefix": kind_prefix, "limit": limit }),
            )
            .await?;
        let events = data["events"].as_array().cloned().unwrap_or_default();
        let complete = events.len() < limit || events.first().is_some_and(|e| seq(e) <= after);
        let new: Vec<Value> = events.into_iter().filter(|e| seq(e) > after).collect();
        if complete {
            return Ok((new, false));
        }
        if limit == MAX_LIMIT {
            return Ok((new, true));
        }
    }
    unreachable!("the last limit returns")
}

/// Events as a table: SEQ TIME KIND AGGREGATE SUMMARY.
pub fn render(events: &[Value], indent: usize) -> String {
    let mut t = Table::new(&["SEQ", "TIME", "KIND", "AGGREGATE", "SUMMARY"]);
    for e in events {
        t.row(vec![
            cell(&e["seq"]),
            time(e),
            cell(&e["kind"]),
            format!(
                "{}/{}",
                cell(&e["aggregate"]["type"]),
                cell(&e["aggregate"]["id"])
            ),
            summary(e),
        ]);
    }
    t.render_indented(indent, "No events.")
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
        .map(|(k, v)| format!("{k}={v}"))
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
