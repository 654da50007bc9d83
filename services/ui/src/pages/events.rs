//! `GET /ui/events`: the live tail; `GET /ui/events/{seq}`: one envelope
//! (in `events_one.rs`).
//!
//! The tail is the newest [`LIMIT`] events (`recent_events`, with the
//! filters of the query), newest first, readable without JavaScript; the
//! form `#event-filters` is a plain GET. `assets/events.js` then follows
//! `/ui/stream` from the newest sequence shown (`main[data-stream-after]`,
//! the URL in `main[data-stream]`) and prepends rows; `<main>` carries no
//! `data-live` (the page is not re-fetched).
//!
//! `?correlation=<id>` lists the events of one flow among the newest
//! [`CORRELATION_SCAN`] (the API has no correlation filter, the page
//! filters); that view is not live.

#[path = "events_one.rs"]
mod one_page;

use crate::backend::At;
use crate::layout::{self, Page};
use crate::session::{urlencode, Ctx};
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use powernode_actions::events::{RecentEventsAnswer, RecordedEvent};
use powernode_actions::ActionName;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// How many events the page shows when it loads.
pub const LIMIT: usize = 100;
/// How many of the newest events `?correlation=` looks through.
pub const CORRELATION_SCAN: usize = 1000;

/// The filters of the tail (the query of `/ui/events`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Filters {
    /// Only kinds starting with this.
    #[serde(default)]
    pub kind_prefix: Option<String>,
    /// Only events about this cluster.
    #[serde(default)]
    pub cluster: Option<String>,
    /// Only events about this instance.
    #[serde(default)]
    pub instance: Option<String>,
    /// Only events of this flow (correlation id).
    #[serde(default)]
    pub correlation: Option<String>,
}

impl Filters {
    /// The filters with blank values dropped and the rest trimmed.
    fn cleaned(self) -> Self {
        Self {
            kind_prefix: nonblank(self.kind_prefix),
            cluster: nonblank(self.cluster),
            instance: nonblank(self.instance),
            correlation: nonblank(self.correlation),
        }
    }

    /// The query string of the stream (`/ui/stream?…&after=<after>`).
    fn stream_url(&self, after: u64) -> String {
        let mut q = Vec::new();
        for (k, v) in [
            ("kind_prefix", &self.kind_prefix),
            ("cluster", &self.cluster),
            ("instance", &self.instance),
        ] {
            if let Some(v) = v {
                q.push(format!("{k}={}", urlencode(v)));
            }
        }
        q.push(format!("after={after}"));
        format!("{}/stream?{}", crate::PATH, q.join("&"))
    }
}

/// `Some(trimmed)` unless blank.
pub(crate) fn nonblank(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// A sequence number given by the human (`what` names it in the
/// refusal): 422 `invalid_arguments` when it is not a whole number.
pub(crate) fn parse_seq_arg(what: &str, s: &str) -> Result<u64, crate::Refusal> {
    s.trim().parse::<u64>().map_err(|_| {
        crate::Refusal::new(
            422,
            "invalid_arguments",
            format!("{what} {s:?} is not a sequence number (a whole number, 0 or more)"),
        )
    })
}

/// The wire name of an enum (its serde string), e.g. `running`.
pub(crate) fn wire<T: Serialize>(t: &T) -> String {
    match serde_json::to_value(t) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(v) => v.to_string(),
        Err(_) => String::new(),
    }
}

/// An answer's JSON read as its typed answer; a refusal (500
/// `bad_answer`) when it does not fit.
pub(crate) fn typed<T: serde::de::DeserializeOwned>(
    what: &str,
    v: serde_json::Value,
) -> Result<T, crate::Refusal> {
    serde_json::from_value(v).map_err(|e| {
        crate::Refusal::new(
            500,
            "bad_answer",
            format!("the answer of {what} could not be read: {e}"),
        )
    })
}

/// A page answered with a status other than 200 (a refusal shown in the
/// page, next to its form).
pub(crate) fn with_status(mut res: Response, status: u16) -> Response {
    *res.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    res
}

/// `GET /ui/events?kind_prefix=&cluster=&instance=&correlation=`.
pub async fn page(ctx: Ctx, Query(filters): Query<Filters>) -> Response {
    let f = filters.cleaned();
    let limit = if f.correlation.is_some() {
        CORRELATION_SCAN
    } else {
        LIMIT
    };
    let answer = ctx
        .call(
            ActionName::RecentEvents,
            json!({
                "kind_prefix": f.kind_prefix,
                "cluster": f.cluster,
                "instance": f.instance,
                "limit": limit,
            }),
        )
        .await
        .and_then(|v| typed::<RecentEventsAnswer>("recent_events", v));
    let answer = match answer {
        Ok(a) => a,
        Err(r) if r.needs_login() => return layout::refusal(&ctx, &r),
        Err(r) => {
            let body = html! { (filter_form(&f)) (layout::refusal_box(&r)) };
            return with_status(page_of(&ctx, body), r.status);
        }
    };
    let mut events: Vec<&RecordedEvent> = answer.events.iter().rev().collect();
    if let Some(c) = &f.correlation {
        events.retain(|e| e.correlation_id.to_string() == *c);
    }
    let live = matches!(ctx.at, At::Head) && f.correlation.is_none();
    let body = html! {
        (filter_form(&f))
        @if let Some(c) = &f.correlation {
            p.hint { "The events of flow " code { (c) } " among the newest " (CORRELATION_SCAN) " (not live). "
                a href="/ui/events" { "All events" } }
        }
        @if live {
            p.hint #tail-status role="status" aria-live="polite" {
                "The newest " (events.len()) " events, newest first; new ones appear at the top while the page is open (with JavaScript)."
            }
            // Hidden until the script runs (a pause button without it would
            // do nothing); the wrapper carries `hidden`, as button styles
            // may set `display`.
            p #pause-wrap hidden { button #pause type="button" aria-pressed="false" { "Pause" } }
        }
        (events_table(&events))
    };
    let title = "Events".to_string();
    let main_attrs = live.then(|| (f.stream_url(answer.through), answer.through));
    page_with_stream(&ctx, title, body, main_attrs)
}

/// The events page (no stream: a refusal or a correlation view).
fn page_of(ctx: &Ctx, body: Markup) -> Response {
    page_with_stream(ctx, "Events".to_string(), body, None)
}

/// The page; with `stream` = (URL, after) the body is wrapped so that
/// `events.js` finds where to follow from. The layout owns `<main>`, so
/// the stream's attributes sit on `div#tail`, and the script is loaded
/// here (only this page needs it).
fn page_with_stream(
    ctx: &Ctx,
    title: String,
    body: Markup,
    stream: Option<(String, u64)>,
) -> Response {
    let body = html! {
        @match &stream {
            Some((url, after)) => {
                div #tail data-stream=(url) data-stream-after=(after) { (body) }
                script src=(crate::assets::href("events.js")) defer {}
            }
            None => { (body) }
        }
    };
    layout::page(
        ctx,
        Page {
            title,
            nav: "events",
            body,
            live: None,
        },
    )
}

/// The filter form (a plain GET).
fn filter_form(f: &Filters) -> Markup {
    html! {
        form.filters #event-filters method="get" action="/ui/events" aria-label="Filter events" {
            div.field {
                label for="f-kind" { "Kind prefix" }
                input #f-kind name="kind_prefix" type="text" placeholder="system.sdwan." value=[f.kind_prefix.as_deref()];
            }
            div.field {
                label for="f-cluster" { "Cluster" }
                input #f-cluster name="cluster" type="text" placeholder="cluster-…" value=[f.cluster.as_deref()];
            }
            div.field {
                label for="f-instance" { "Instance" }
                input #f-instance name="instance" type="text" placeholder="inst-…" value=[f.instance.as_deref()];
            }
            button type="submit" { "Apply" }
            a href="/ui/events" { "Clear" }
        }
    }
}

/// `table#events`: one row per event, in the order given.
pub(crate) fn events_table(events: &[&RecordedEvent]) -> Markup {
    html! {
        div.scroll { table.data #events aria-label="Events, newest first" {
            thead { tr {
                th scope="col" { "Seq" }
                th scope="col" { "Time" }
                th scope="col" { "Kind" }
                th scope="col" { "About" }
                th scope="col" { "Actor" }
            } }
            tbody {
                @for e in events { (event_row(e)) }
                @if events.is_empty() {
                    tr.empty { td colspan="5" { "No events match." } }
                }
            }
        } }
    }
}

/// One row of `table#events` (events.js builds the same cells).
fn event_row(e: &RecordedEvent) -> Markup {
    let href = format!("/ui/events/{}", e.seq);
    html! {
        tr data-seq=(e.seq) {
            td.seq { a href=(href) { (e.seq) } }
            td.time { time datetime=(e.occurred_at.to_rfc3339()) { (e.occurred_at.format("%Y-%m-%d %H:%M:%S")) } }
            td.kind { a href=(href) { (e.kind) } }
            td.aggregate { (e.aggregate.to_string()) }
            td.actor { (e.actor.to_string()) }
        }
    }
}

/// `GET /ui/events/{seq}`: one event's envelope.
pub async fn one(ctx: Ctx, Path(seq): Path<String>) -> Response {
    one_page::one(ctx, seq).await
}

#[cfg(test)]
#[path = "events_testkit.rs"]
pub(crate) mod testkit;

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
