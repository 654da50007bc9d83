//! `powernode events explain <id>`: the history of a cluster, VIP,
//! instance or approval (or a node, network, peer or template) as a causal
//! chain — each event with who caused it, its cause, what it caused and the
//! change it made to the object — and a short "why" for its current state.
//! The work is [`powernode_inspect::explain`]; this file parses and prints.

use super::output::{emit, print_data};
use crate::ApiArgs;
use chrono::{DateTime, Utc};
use powernode_archive::{Bound, SourceArgs};
use powernode_inspect::explain::{self, Explanation, Link, Step};
use powernode_inspect::jsondiff::Change;
use std::fmt::Write as _;

/// Changes printed per event (the rest with `-o json`).
const MAX_CHANGES: usize = 12;
/// Caused events printed per event.
const MAX_CAUSED: usize = 6;

/// `powernode events explain`.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// Id of a cluster, virtual IP, instance or approval (a node, network,
    /// peer or template works too).
    #[arg(value_name = "ID")]
    pub id: String,
    /// Explain as of this point: a sequence number or an RFC 3339 time.
    #[arg(long, value_name = "SEQ|TIME")]
    pub until: Option<String>,
    /// Where to read the log.
    #[command(flatten)]
    pub source: SourceArgs,
}

/// Runs `powernode events explain`.
pub async fn run(api: &ApiArgs, args: ExplainArgs) -> anyhow::Result<()> {
    let until = match args.until.as_deref() {
        Some(u) => Bound::parse(u)?,
        None => Bound::End,
    };
    // Without --file or --nats: the embedded log of a stopped node, or the
    // running node's log through its API.
    let source =
        powernode_inspect::open_source(&args.source, &api.data_dir(), || api.client()).await?;
    let mut e = explain::explain(&source, args.id.trim(), until).await?;
    e.source = source.describe();
    match api.output {
        f if f.is_data() => print_data(f, &serde_json::to_value(&e)?),
        _ => emit(&render(&e)),
    }
    Ok(())
}

fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// `#12 kind (actor)`, or the bare id of an event not in the log.
fn link(l: &Link) -> String {
    match (l.seq, &l.kind) {
        (Some(seq), Some(kind)) => format!("#{seq} {kind} ({})", l.actor.as_deref().unwrap_or("?")),
        _ => format!("{} (not in the log)", l.id),
    }
}

fn changes(out: &mut String, pad: &str, list: &[Change]) {
    for c in list.iter().take(MAX_CHANGES) {
        let _ = writeln!(out, "{pad}{}", c.render());
    }
    if list.len() > MAX_CHANGES {
        let _ = writeln!(out, "{pad}… {} more (-o json)", list.len() - MAX_CHANGES);
    }
}

fn step(out: &mut String, s: &Step, label: &str) {
    let via = s
        .via
        .as_deref()
        .map_or(String::new(), |v| format!("  via {v}"));
    let _ = writeln!(
        out,
        "#{:<5} {}  {}  {}{via}",
        s.seq,
        time(&s.occurred_at),
        s.kind,
        s.actor
    );
    let pad = "       ";
    if !s.changes_by_other_events.is_empty() {
        let _ = writeln!(
            out,
            "{pad}before it, events that do not name the {label} changed:"
        );
        changes(out, &format!("{pad}  "), &s.changes_by_other_events);
    }
    let _ = writeln!(out, "{pad}{}", s.text);
    if let Some(c) = &s.cause {
        let _ = writeln!(out, "{pad}cause:  {}", link(c));
    }
    if !s.caused.is_empty() {
        let mut shown: Vec<String> = s.caused.iter().take(MAX_CAUSED).map(link).collect();
        if s.caused.len() > MAX_CAUSED {
            shown.push(format!("… {} more", s.caused.len() - MAX_CAUSED));
        }
        let _ = writeln!(out, "{pad}caused: {}", shown.join(", "));
    }
    if s.refused.is_some() {
        let _ = writeln!(out, "{pad}(refused: changed nothing)");
    } else if s.created {
        let _ = writeln!(out, "{pad}+ created the {label}");
    } else if s.changes.is_empty() {
        let _ = writeln!(out, "{pad}(no change to the {label})");
    } else {
        changes(out, pad, &s.changes);
    }
}

/// The explanation as text: header, chain, why.
pub fn render(e: &Explanation) -> String {
    let o = &e.object;
    let label = o.kind.label();
    let mut out = String::new();
    let _ = writeln!(out, "{label} {} in account {}", o.id, o.account_id);
    let _ = writeln!(out, "  {}", o.summary);
    let stored = e
        .as_of
        .stored_at
        .as_ref()
        .map_or(String::new(), |t| format!(" ({})", time(t)));
    let _ = writeln!(
        out,
        "  as of #{}{stored}: {} record(s) from {}, {} refused",
        e.as_of.seq, e.records, e.source, e.refused
    );
    let _ = writeln!(out, "\nHistory ({} event(s)):", e.events.len());
    for s in &e.events {
        step(&mut out, s, label);
    }
    if !e.changes_by_other_events.is_empty() {
        let _ = writeln!(
            out,
            "since then, events that do not name the {label} changed:"
        );
        changes(&mut out, "  ", &e.changes_by_other_events);
    }
    let _ = writeln!(out, "\nWhy: {}", e.why.answer);
    for w in &e.why.steps {
        let at = match (w.seq, &w.kind) {
            (Some(seq), Some(kind)) => {
                format!("#{seq} {kind} ({})", w.actor.as_deref().unwrap_or("?"))
            }
            _ => w.id.to_string(),
        };
        if w.relation == "set it" {
            let _ = writeln!(out, "  {at}: {}", w.text);
        } else {
            let _ = writeln!(out, "  ← {} {at}: {}", w.relation, w.text);
        }
    }
    out
}
