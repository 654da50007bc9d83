//! `GET /ui/agents`.

use crate::session::Ctx;
use axum::response::Response;

/// `GET /ui/agents`.
pub async fn page(ctx: Ctx) -> Response {
    super::todo(&ctx, "Agents", "agents")
}
