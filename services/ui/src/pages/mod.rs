//! One module per page. Each page handler takes a [`Ctx`](crate::Ctx),
//! reads through [`Ctx::call`](crate::Ctx::call) (at the request's `?at=`
//! sequence) and answers [`layout::page`](crate::layout::page), or
//! [`layout::refusal`](crate::layout::refusal) for a refusal.

pub mod agents;
pub mod approvals;
pub mod cluster;
pub mod events;
pub mod explain;
pub mod fleet;
pub mod skills;
pub mod travel;

use axum::response::{IntoResponse, Redirect, Response};

/// `GET /ui`: the fleet.
pub async fn home() -> Response {
    Redirect::to(&format!("{}/fleet", crate::PATH)).into_response()
}

/// A page not built yet (replaced page by page).
pub(crate) fn todo(ctx: &crate::Ctx, title: &str, nav: &'static str) -> Response {
    crate::layout::page(
        ctx,
        crate::layout::Page {
            title: title.to_string(),
            nav,
            body: maud::html! { p { "This page is not built yet." } },
            live: None,
        },
    )
}
