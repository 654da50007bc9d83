//! `GET /ui/stream?kind_prefix=&cluster=&instance=`: the session's events
//! as server-sent events for `ui.js` (the cookie authenticates, since
//! `EventSource` cannot send a bearer token). Each event is `id: <seq>`
//! and `data: <the recent_events object>` (its `kind` inside); no `event:`
//! name, so `EventSource.onmessage` sees every one. A reconnecting browser
//! sends `Last-Event-ID` and catches up from there.

use crate::backend::EventQuery;
use crate::session::Ctx;
use axum::extract::Query;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use std::convert::Infallible;
use std::time::Duration;

/// `GET /ui/stream`.
pub async fn stream(ctx: Ctx, headers: HeaderMap, Query(mut q): Query<EventQuery>) -> Response {
    if let Some(last) = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        q.after = Some(last);
    }
    match ctx.ui.backend.events(&ctx.who, q).await {
        Ok(events) => {
            let events = events.map(|e| {
                let mut ev = Event::default().data(e.to_string());
                if let Some(seq) = e["seq"].as_u64() {
                    ev = ev.id(seq.to_string());
                }
                Ok::<_, Infallible>(ev)
            });
            Sse::new(events)
                .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
                .into_response()
        }
        Err(r) => crate::layout::refusal(&ctx, &r),
    }
}
