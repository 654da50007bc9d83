//! `GET /ui/events/{seq}`: one event's envelope — its kind, time, account,
//! aggregate, actor and pretty payload, its causation and correlation as
//! links, and what it caused.
//!
//! The log is addressed by sequence and events name their cause by id, so
//! the causation's sequence (and the events this one caused) come from
//! the explanation of the event's aggregate when there is one (`explain`
//! answers every event about an object with its cause and effects); when
//! there is none the causation links to the events of the same flow.

use super::typed;
use crate::layout::{self, Page};
use crate::session::{urlencode, Ctx};
use axum::response::Response;
use maud::{html, Markup};
use powernode_actions::events::RecordedEvent;
use serde_json::Value;

/// Another event as the explanation links it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LinkedEvent {
    /// Event id.
    pub id: String,
    /// Its sequence, when known.
    pub seq: Option<u64>,
    /// Its kind, when known.
    pub kind: Option<String>,
}

impl LinkedEvent {
    fn from_json(v: &Value) -> Option<Self> {
        Some(Self {
            id: v["id"].as_str()?.to_string(),
            seq: v["seq"].as_u64(),
            kind: v["kind"].as_str().map(str::to_string),
        })
    }
}

/// The cause and effects of the event `seq` as the explanation `ex` of
/// its aggregate lists them (`None` when the explanation does not list
/// it).
pub(crate) fn links_of(ex: &Value, seq: u64) -> Option<(Option<LinkedEvent>, Vec<LinkedEvent>)> {
    let step = ex["events"]
        .as_array()?
        .iter()
        .find(|s| s["seq"].as_u64() == Some(seq))?;
    let cause = LinkedEvent::from_json(&step["cause"]);
    let caused = step["caused"]
        .as_array()
        .map(|a| a.iter().filter_map(LinkedEvent::from_json).collect())
        .unwrap_or_default();
    Some((cause, caused))
}

/// The page.
pub(super) async fn one(ctx: Ctx, seq: String) -> Response {
    let seq = match super::parse_seq_arg("event", &seq) {
        Ok(s) => s,
        Err(r) => return layout::refusal(&ctx, &r),
    };
    let backend = &ctx.ui.backend;
    let raw = match backend.event(&ctx.who, seq).await {
        Ok(v) => v,
        Err(mut r) => {
            if r.code == "not_found" {
                if let Ok(head) = backend.head(&ctx.who).await {
                    if seq > head.last_seq {
                        r.message = format!(
                            "seq {seq} is beyond the head {} (the newest event is seq {})",
                            head.last_seq, head.last_seq
                        );
                    }
                }
            }
            return layout::refusal(&ctx, &r);
        }
    };
    let body = match typed::<RecordedEvent>("the event", raw.clone()) {
        Ok(e) => {
            let links = match backend.explain(&ctx.who, &e.aggregate.id).await {
                Ok(ex) => links_of(&ex, seq),
                Err(_) => None,
            };
            envelope(&e, &raw, links)
        }
        Err(r) => html! {
            (layout::refusal_box(&r))
            section #envelope {
                h2 { "Envelope as answered" }
                pre #payload { (pretty(&raw)) }
            }
        },
    };
    layout::page(
        &ctx,
        Page {
            title: format!("Event {seq}"),
            nav: "events",
            body,
            live: None,
        },
    )
}

/// Pretty JSON.
pub(crate) fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// `section#envelope` of the event `e` (`raw` is its JSON as answered).
pub(crate) fn envelope(
    e: &RecordedEvent,
    raw: &Value,
    links: Option<(Option<LinkedEvent>, Vec<LinkedEvent>)>,
) -> Markup {
    let (cause, caused) = match links {
        Some((c, effects)) => (c, Some(effects)),
        None => (None, None),
    };
    let correlation = e.correlation_id.to_string();
    let flow = format!("/ui/events?correlation={}", urlencode(&correlation));
    let explain = format!("/ui/explain?id={}", urlencode(&e.aggregate.id));
    let payload = raw.get("payload").cloned().unwrap_or(Value::Null);
    html! {
        section #envelope aria-labelledby="envelope-h" {
            h2 #envelope-h { code { (e.kind) } }
            dl.kv {
                dt { "Seq" } dd data-field="seq" { (e.seq)
                    " · "
                    @if e.seq > 1 { a rel="prev" href={ "/ui/events/" (e.seq - 1) } { "previous" } " · " }
                    a rel="next" href={ "/ui/events/" (e.seq + 1) } { "next" } }
                dt { "Event id" } dd data-field="id" { code { (e.id) } }
                dt { "Kind" } dd data-field="kind" { code { (e.kind) } " (schema v" (e.schema_version) ")" }
                dt { "Time" } dd data-field="time" { time datetime=(e.occurred_at.to_rfc3339()) { (e.occurred_at.to_rfc3339()) } }
                dt { "Account" } dd data-field="account" { code { (e.account_id.to_string()) } }
                dt { "About" } dd data-field="aggregate" {
                    code { (e.aggregate.to_string()) } " — " a.explain href=(explain) { "explain this object" }
                }
                dt { "Actor" } dd data-field="actor" { code { (e.actor.to_string()) } }
                dt { "Caused by" } dd data-field="causation" {
                    @match (&e.causation_id, &cause) {
                        (None, _) => { "nothing: it starts its flow (a request or a timer)" }
                        (Some(id), Some(LinkedEvent { seq: Some(s), kind, .. })) => {
                            a.causation href={ "/ui/events/" (s) } { "seq " (s) @if let Some(k) = kind { " " (k) } }
                            " " code { (id) }
                        }
                        (Some(id), _) => {
                            code { (id) } " — "
                            a.causation href=(flow) { "find it among the events of its flow" }
                        }
                    }
                }
                dt { "Correlation" } dd data-field="correlation" {
                    a.correlation href=(flow) { code { (correlation) } }
                    " (every event of the same request or flow)"
                }
                @if let Some(sig) = &e.signature {
                    dt { "Signature" } dd data-field="signature" { code title=(sig) { (sig.chars().take(16).collect::<String>()) "…" } " (ed25519, the agent's)" }
                }
                @if let Some(effects) = &caused {
                    dt { "Caused" } dd data-field="caused" {
                        @if effects.is_empty() { "nothing (as far as its object's explanation shows)" }
                        ul.caused {
                            @for c in effects {
                                li { @match c.seq {
                                    Some(s) => { a.caused href={ "/ui/events/" (s) } { "seq " (s) " " (c.kind.as_deref().unwrap_or("")) } }
                                    None => { code { (c.id) } }
                                } }
                            }
                        }
                    }
                }
            }
            h3 { "Payload" }
            pre #payload tabindex="0" aria-label="Payload (JSON)" { (pretty(&payload)) }
        }
    }
}
