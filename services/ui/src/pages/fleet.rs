//! `GET /ui/fleet`.

use crate::session::Ctx;
use axum::response::Response;

/// `GET /ui/fleet`.
pub async fn page(ctx: Ctx) -> Response {
    super::todo(&ctx, "Fleet", "fleet")
}
