//! `GET /ui/events`: the live tail; `GET /ui/events/{seq}`: one envelope.

use crate::session::Ctx;
use axum::extract::Path;
use axum::response::Response;

/// `GET /ui/events`.
pub async fn page(ctx: Ctx) -> Response {
    super::todo(&ctx, "Events", "events")
}

/// `GET /ui/events/{seq}`.
pub async fn one(ctx: Ctx, Path(_seq): Path<String>) -> Response {
    super::todo(&ctx, "Event", "events")
}
