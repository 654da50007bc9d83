//! `GET /ui/travel?seq=&from=&to=`: time travel.
//!
//! * Without `seq`: the form (`form#travel`: a number box and a slider
//!   over the log's extent) and the live head (`#head[data-seq]`).
//! * With `seq`: the fleet rebuilt by replay through that sequence (the
//!   clusters, with links to each cluster as of then, and the approvals),
//!   or a 422 naming the head when `seq` is beyond it.
//! * With `from` and `to`: what changed between them (`section#changes`,
//!   in `travel_diff.rs`): each event, the object it is about and the
//!   fields it changed, old → new.
//!
//! The slider and the number box are kept in step by `events.js` (no
//! inline script); without JavaScript the number box is what is sent.

#[path = "travel_diff.rs"]
pub mod diff;

use super::events::{nonblank, typed, wire, with_status};
use crate::backend::{At, Head, Refusal};
use crate::layout::{self, Page};
use crate::session::{urlencode, Ctx};
use axum::extract::Query;
use axum::response::Response;
use maud::{html, Markup};
use powernode_actions::approvals::ListApprovalsAnswer;
use powernode_actions::clusters::ListClustersAnswer;
use powernode_actions::ActionName;
use serde::Deserialize;
use serde_json::json;

/// The query of `/ui/travel`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TravelQuery {
    /// Rebuild the fleet as of this sequence.
    #[serde(default)]
    pub seq: Option<String>,
    /// "What changed": from this sequence (exclusive) …
    #[serde(default)]
    pub from: Option<String>,
    /// … through this one.
    #[serde(default)]
    pub to: Option<String>,
}

/// A sequence of the query, checked against the head: 422 when it is not
/// a number or lies beyond the head.
pub fn check_seq(what: &str, s: &str, head: &Head) -> Result<u64, Refusal> {
    let seq = super::events::parse_seq_arg(what, s)?;
    if seq > head.last_seq {
        return Err(Refusal::new(
            422,
            "invalid_arguments",
            format!(
                "{what}: seq {seq} is beyond the head {} (the log ends there)",
                head.last_seq
            ),
        ));
    }
    Ok(seq)
}

/// `GET /ui/travel`.
pub async fn page(ctx: Ctx, Query(q): Query<TravelQuery>) -> Response {
    let head = match ctx.ui.backend.head(&ctx.who).await {
        Ok(h) => h,
        Err(r) if r.needs_login() => return layout::refusal(&ctx, &r),
        Err(r) => {
            let body = html! { (layout::refusal_box(&r)) };
            return with_status(answer(&ctx, "Time travel".into(), body), r.status);
        }
    };
    let (seq_s, from_s, to_s) = (nonblank(q.seq), nonblank(q.from), nonblank(q.to));
    let mut status = 200;
    let mut refusals: Vec<Refusal> = Vec::new();
    let seq = match seq_s.as_deref().map(|s| check_seq("seq", s, &head)) {
        Some(Ok(s)) => Some(s),
        Some(Err(r)) => {
            refusals.push(r);
            None
        }
        None => None,
    };
    let fleet = match seq {
        Some(seq) => Some(fleet_at(&ctx, seq).await),
        None => None,
    };
    let changes = match (from_s.as_deref(), to_s.as_deref()) {
        (Some(f), Some(t)) => match (check_seq("from", f, &head), check_seq("to", t, &head)) {
            (Ok(a), Ok(b)) if a > b => {
                refusals.push(Refusal::new(
                    422,
                    "invalid_arguments",
                    format!("from {a} comes after to {b}: from must be the earlier point"),
                ));
                None
            }
            (Ok(a), Ok(b)) => Some((a, b, ctx.ui.backend.diff(&ctx.who, a, b).await)),
            (Err(r), _) | (_, Err(r)) => {
                refusals.push(r);
                None
            }
        },
        (None, None) => None,
        _ => {
            refusals.push(Refusal::new(
                422,
                "invalid_arguments",
                "\"what changed\" needs both from and to",
            ));
            None
        }
    };
    if let Some(r) = refusals.first() {
        status = r.status;
    }
    let later = [
        fleet.as_ref().and_then(|f| f.as_ref().err()),
        changes.as_ref().and_then(|c| c.2.as_ref().err()),
    ];
    for r in later.into_iter().flatten() {
        if r.needs_login() {
            return layout::refusal(&ctx, r);
        }
        if status == 200 {
            status = r.status;
        }
    }
    let body = html! {
        @for r in &refusals { (layout::refusal_box(r)) }
        (travel_form(&head, seq))
        @if let Some(fleet) = &fleet {
            @match fleet {
                Ok(m) => { (m) }
                Err(r) => { (layout::refusal_box(r)) }
            }
        }
        (diff_form(&head, from_s.as_deref(), to_s.as_deref(), seq))
        @if let Some((a, b, d)) = &changes {
            @match d {
                Ok(v) => { (diff::changes(*a, *b, v)) }
                Err(r) => { (layout::refusal_box(r)) }
            }
        }
    };
    let title = match seq {
        Some(s) => format!("Time travel: the fleet as of seq {s}"),
        None => "Time travel".to_string(),
    };
    with_status(answer(&ctx, title, body), status)
}

fn answer(ctx: &Ctx, title: String, body: Markup) -> Response {
    layout::page(
        ctx,
        Page {
            title,
            nav: "travel",
            body,
            live: None,
        },
    )
}

/// `form#travel` and the live-head marker.
fn travel_form(head: &Head, seq: Option<u64>) -> Markup {
    let value = seq.unwrap_or(head.last_seq);
    html! {
        p #head data-seq=(head.last_seq) {
            "Live head: seq " strong { (head.last_seq) }
            " (the log holds seq " (head.first_seq) "–" (head.last_seq) "). "
            a href="/ui/fleet" { "The fleet now" }
        }
        form #travel method="get" action="/ui/travel" {
            fieldset {
                legend { "Rebuild the fleet as of a point of the log" }
                label for="seq" { "Sequence" }
                input #seq name="seq" type="number" min="0" max=(head.last_seq) step="1" required value=(value);
                label for="seq-slider" { "or slide" }
                input #seq-slider type="range" min="0" max=(head.last_seq) step="1" value=(value)
                    aria-describedby="slider-hint" list="head-mark";
                datalist #head-mark { option value=(head.last_seq) label="head" {} }
                button type="submit" { "Rebuild" }
                p #slider-hint .hint { "The slider moves the number (with JavaScript); the right end is the live head." }
            }
        }
        script src=(crate::assets::href("events.js")) defer {}
    }
}

/// `form#diff`.
fn diff_form(head: &Head, from: Option<&str>, to: Option<&str>, seq: Option<u64>) -> Markup {
    let from_v = from
        .map(str::to_string)
        .unwrap_or_else(|| seq.unwrap_or(0).to_string());
    let to_v = to
        .map(str::to_string)
        .unwrap_or_else(|| head.last_seq.to_string());
    html! {
        form #diff method="get" action="/ui/travel" {
            fieldset {
                legend { "What changed between two points" }
                label for="diff-from" { "From seq (exclusive)" }
                input #diff-from name="from" type="number" min="0" max=(head.last_seq) step="1" required value=(from_v);
                label for="diff-to" { "to seq" }
                input #diff-to name="to" type="number" min="0" max=(head.last_seq) step="1" required value=(to_v);
                button type="submit" { "Show changes" }
            }
        }
    }
}

/// The fleet as of `seq`: clusters and approvals, read by replay.
async fn fleet_at(ctx: &Ctx, seq: u64) -> Result<Markup, Refusal> {
    let backend = &ctx.ui.backend;
    let clusters = backend
        .call(
            &ctx.who,
            At::Seq(seq),
            ActionName::ListClusters,
            json!({"include_decommissioned": true}),
        )
        .await
        .and_then(|v| typed::<ListClustersAnswer>("kubernetes_list_clusters", v))?;
    let approvals = backend
        .call(
            &ctx.who,
            At::Seq(seq),
            ActionName::ListApprovals,
            json!({"status": "all"}),
        )
        .await
        .and_then(|v| typed::<ListApprovalsAnswer>("system_list_approvals", v));
    Ok(html! {
        section #as-of-fleet aria-labelledby="as-of-h" {
            h2 #as-of-h { "The fleet as of seq " (seq) }
            p #as-of role="status" data-seq=(seq) {
                "Rebuilt by replay through seq " strong { (seq) } ". "
                a href={ "/ui/fleet?at=" (seq) } { "Open the fleet page as of then" }
            }
            // The fleet page's table; its links follow the context's `at`.
            (super::fleet::clusters_table(&Ctx { at: At::Seq(seq), ..ctx.clone() }, &clusters))
            h3 { "Approvals as of seq " (seq) }
            @match &approvals {
                Ok(a) if a.approvals.is_empty() => p.muted { "None." },
                Ok(a) => (approvals_table(seq, a)),
                Err(r) => (layout::refusal_box(r)),
            }
        }
    })
}

/// The approvals as of `seq`.
fn approvals_table(seq: u64, a: &ListApprovalsAnswer) -> Markup {
    html! {
        div.scroll {
            table.data #approvals-as-of {
                caption.sr-only { "Approvals as of seq " (seq) }
                thead { tr {
                    th scope="col" { "Approval" } th scope="col" { "Status" } th scope="col" { "What" }
                    th scope="col" { "Requested" } th scope="col" { "Decided" }
                } }
                tbody {
                    @for ap in &a.approvals {
                        tr data-approval-id=(ap.id) {
                            td { a href={ "/ui/explain?id=" (urlencode(&ap.id)) } { (ap.id) } }
                            td.status { (wire(&ap.status)) }
                            td { (ap.summary) }
                            td { a href={ "/ui/events/" (ap.requested_seq) } { "seq " (ap.requested_seq) } }
                            td { @match ap.decided_seq {
                                Some(d) => a href={ "/ui/events/" (d) } { "seq " (d) },
                                None => "—",
                            } }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "travel_tests.rs"]
mod tests;
