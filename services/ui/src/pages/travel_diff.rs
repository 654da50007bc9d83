//! "What changed between A and B": the `replay --diff` data as
//! `section#changes`, one row per event (`tr[data-seq]`): its sequence
//! (a link), kind, the object it is about (a link to its explanation),
//! its actor and each changed field, old → new.
//!
//! The backend answers what `powernode replay --diff A B -o json` prints:
//! one object per event (`seq`, `kind`, `aggregate`, `actor`, `account`,
//! `refused`, `changes: [{path, before, after}]`). Both an array of them
//! and an object holding them under `events` (with optional `totals`) are
//! read.

use crate::session::urlencode;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;

/// At most this many events are listed (the rest are counted).
pub const MAX_ROWS: usize = 1000;

/// One changed field.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Change {
    /// Dotted path relative to the account (`clusters.<id>.status`).
    pub path: String,
    /// The old value (absent: the field was added).
    #[serde(default)]
    pub before: Option<Value>,
    /// The new value (absent: the field was removed).
    #[serde(default)]
    pub after: Option<Value>,
}

/// One event of the range.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EventDiff {
    /// Log sequence.
    pub seq: u64,
    /// Kind.
    pub kind: String,
    /// `type/id` of the aggregate.
    #[serde(default)]
    pub aggregate: String,
    /// Who caused it.
    #[serde(default)]
    pub actor: Option<String>,
    /// Why admission refused it.
    #[serde(default)]
    pub refused: Option<String>,
    /// What it changed.
    #[serde(default)]
    pub changes: Vec<Change>,
}

/// The events of a diff answer (see the module docs for the shapes).
pub fn events_of(v: &Value) -> Result<Vec<EventDiff>, String> {
    let list = match v {
        Value::Array(a) => a.clone(),
        Value::Object(o) => match o.get("events").or_else(|| o.get("changes")) {
            Some(Value::Array(a)) => a.clone(),
            _ => return Err("the answer holds no list of events".into()),
        },
        _ => return Err("the answer is neither a list nor an object".into()),
    };
    list.into_iter()
        .map(|e| serde_json::from_value(e).map_err(|e| e.to_string()))
        .collect()
}

/// A value in one line (strings without quotes, long ones cut).
fn show(v: &Option<Value>) -> String {
    let s = match v {
        None => return "∅".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) => "null".to_string(),
        Some(v) => v.to_string(),
    };
    if s.chars().count() > 160 {
        let mut t: String = s.chars().take(159).collect();
        t.push('…');
        t
    } else {
        s
    }
}

/// `section#changes` for the range (`from`, `to`].
pub fn changes(from: u64, to: u64, v: &Value) -> Markup {
    let events = match events_of(v) {
        Ok(e) => e,
        Err(e) => {
            let r = crate::Refusal::new(
                502,
                "bad_answer",
                format!("the diff could not be read: {e}"),
            );
            return html! { section #changes { (crate::layout::refusal_box(&r)) } };
        }
    };
    let changed = events.iter().filter(|e| !e.changes.is_empty()).count();
    let refused = events.iter().filter(|e| e.refused.is_some()).count();
    html! {
        section #changes aria-labelledby="changes-h" {
            h2 #changes-h { "What changed after seq " (from) " through seq " (to) }
            p role="status" {
                (events.len()) " event(s): " (changed) " changed the state, "
                (events.len() - changed - refused) " changed nothing, " (refused) " refused."
                @if events.len() > MAX_ROWS { " The first " (MAX_ROWS) " are listed." }
            }
            div.scroll {
                table.data #changes-table {
                    caption.sr-only { "Events and the fields they changed" }
                    thead { tr {
                        th scope="col" { "Seq" } th scope="col" { "Kind" } th scope="col" { "Object" }
                        th scope="col" { "Actor" } th scope="col" { "Changed (old → new)" }
                    } }
                    tbody {
                        @for e in events.iter().take(MAX_ROWS) { (row(e)) }
                        @if events.is_empty() { tr.empty { td colspan="5" { "No events in the range." } } }
                    }
                }
            }
        }
    }
}

fn row(e: &EventDiff) -> Markup {
    let object_id = e.aggregate.split_once('/').map(|(_, id)| id).unwrap_or("");
    html! {
        tr data-seq=(e.seq) {
            td.seq { a href={ "/ui/events/" (e.seq) } { (e.seq) } }
            td.kind { code { (e.kind) } }
            td.object {
                @if object_id.is_empty() { (e.aggregate) }
                @else { a href={ "/ui/explain?id=" (urlencode(object_id)) } { (e.aggregate) } }
            }
            td.actor { (e.actor.as_deref().unwrap_or("-")) }
            td.fields {
                @if let Some(r) = &e.refused { strong { "refused: " } (r) " (changed nothing)" }
                @else if e.changes.is_empty() { span.muted { "changed nothing" } }
                @else {
                    ul {
                        @for c in &e.changes {
                            li data-path=(c.path) {
                                code { (c.path) } ": "
                                span.before { (show(&c.before)) } " → " span.after { (show(&c.after)) }
                            }
                        }
                    }
                }
            }
        }
    }
}
