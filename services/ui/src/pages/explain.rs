//! `GET /ui/explain?id=`: why an object is as it is — its summary, the
//! "why" sentence with links to the events, and the causal graph of its
//! events (`svg#graph`, laid out in `explain_graph.rs`), then the events
//! as a table for reading in order.
//!
//! An id the account does not hold is the backend's 404 `not_found`,
//! shown with the form and nothing else.

#[path = "explain_graph.rs"]
pub mod graph;

use super::events::with_status;
use crate::layout::{self, Page};
use crate::session::Ctx;
use axum::extract::Query;
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;

/// The query of `/ui/explain`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ExplainQuery {
    /// The object's id (cluster, VIP, instance, approval, node, network,
    /// peer or template).
    #[serde(default)]
    pub id: Option<String>,
}

/// `GET /ui/explain?id=`.
pub async fn page(ctx: Ctx, Query(q): Query<ExplainQuery>) -> Response {
    let id = super::events::nonblank(q.id);
    let Some(id) = id else {
        let body = html! {
            (form(None))
            p.hint { "Enter the id of a cluster, virtual IP, instance, approval, node, network, peer or template: "
                "the page answers why it is as it is, with the events that made it so." }
        };
        return answer(&ctx, "Explain".into(), body);
    };
    match ctx.ui.backend.explain(&ctx.who, &id).await {
        Ok(ex) => answer(&ctx, format!("Explain {id}"), explanation(&id, &ex)),
        Err(r) if r.needs_login() => layout::refusal(&ctx, &r),
        Err(r) => {
            let body = html! { (form(Some(&id))) (layout::refusal_box(&r)) };
            with_status(answer(&ctx, "Explain".into(), body), r.status)
        }
    }
}

fn answer(ctx: &Ctx, title: String, body: Markup) -> Response {
    layout::page(
        ctx,
        Page {
            title,
            nav: "explain",
            body,
            live: None,
        },
    )
}

/// `form#explain`.
fn form(id: Option<&str>) -> Markup {
    html! {
        form #explain method="get" action="/ui/explain" {
            label for="explain-id" { "Object id" }
            input #explain-id name="id" type="text" required value=[id] placeholder="vip-…, cluster-…, inst-…, appr-…" autocomplete="off";
            button type="submit" { "Explain" }
        }
    }
}

/// The explanation `ex` of `id`: summary, why, graph, events.
pub fn explanation(id: &str, ex: &Value) -> Markup {
    let obj = &ex["object"];
    let g = graph::Graph::from_explanation(ex);
    let label = format!(
        "Causal graph of {id}: {} events, {} causation links",
        g.nodes.len(),
        g.edges.len()
    );
    let steps = ex["events"].as_array().cloned().unwrap_or_default();
    html! {
        (form(Some(id)))
        section #object aria-labelledby="object-h" {
            h2 #object-h { (obj["type"].as_str().unwrap_or("object").replace('_', " ")) " " code { (id) } }
            p data-field="summary" { (obj["summary"].as_str().unwrap_or("")) }
            p.muted.small {
                "As of seq " (ex["as_of"]["seq"].as_u64().unwrap_or(0))
                " (" (ex["records"].as_u64().unwrap_or(0)) " events read, "
                (ex["refused"].as_u64().unwrap_or(0)) " refused by admission)."
            }
        }
        section #why-section aria-labelledby="why-h" {
            h2 #why-h { "Why" }
            (why(&ex["why"]))
        }
        section #graph-section aria-labelledby="graph-h" {
            h2 #graph-h { "Causal graph" }
            p.hint { "Events about the object in log order, top to bottom; arrows go from cause to effect. "
                "Highlighted: the why chain; dashed: causes and effects that are not about the object. Each box links to its event." }
            div.scroll.graph tabindex="0" aria-label="Causal graph (scrolls)" {
                (g.svg(&label))
            }
        }
        section #steps-section aria-labelledby="steps-h" {
            h2 #steps-h { "Events about it" }
            (steps_table(&steps))
        }
    }
}

/// `p#why`: the answer, then each step of the chain with a link to its
/// event.
fn why(w: &Value) -> Markup {
    let answer = w["answer"].as_str().unwrap_or("no answer");
    let steps = w["steps"].as_array().cloned().unwrap_or_default();
    html! {
        p #why {
            (answer)
            @if steps.is_empty() { "." } @else { ": " }
            @for (i, s) in steps.iter().enumerate() {
                @if i > 0 { "; " }
                (s["relation"].as_str().unwrap_or("by")) " "
                @match s["seq"].as_u64() {
                    Some(seq) => a href={ "/ui/events/" (seq) } { "seq " (seq) " " code { (s["kind"].as_str().unwrap_or("?")) } },
                    None => code { (s["kind"].as_str().unwrap_or("?")) },
                }
                @if let Some(t) = s["text"].as_str().filter(|t| !t.is_empty()) { " (" (t) ")" }
                @if i + 1 == steps.len() { "." }
            }
        }
    }
}

/// The explanation's events as a table.
fn steps_table(steps: &[Value]) -> Markup {
    html! {
        table.data #steps {
            caption.sr-only { "Events about the object, in log order" }
            thead { tr {
                th scope="col" { "Seq" } th scope="col" { "Kind" } th scope="col" { "Actor" }
                th scope="col" { "What it did" } th scope="col" { "Cause" }
            } }
            tbody {
                @for s in steps {
                    @let seq = s["seq"].as_u64().unwrap_or(0);
                    tr data-seq=(seq) {
                        td { a href={ "/ui/events/" (seq) } { (seq) } }
                        td.kind { code { (s["kind"].as_str().unwrap_or("?")) } }
                        td { (s["actor"].as_str().unwrap_or("-")) }
                        td {
                            (s["text"].as_str().unwrap_or(""))
                            @if let Some(via) = s["via"].as_str() { " " span.muted { "(via " (via) ")" } }
                            @if let Some(r) = s["refused"].as_str() { " " strong { "refused: " (r) } }
                        }
                        td {
                            @match s["cause"]["seq"].as_u64() {
                                Some(c) => a href={ "/ui/events/" (c) } { "seq " (c) },
                                None => @if s["cause"]["id"].is_string() { "outside the log read" } @else { "-" },
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "explain_tests.rs"]
mod tests;
