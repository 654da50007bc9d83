//! `GET /ui/explain`.

use crate::session::Ctx;
use axum::response::Response;

/// `GET /ui/explain`.
pub async fn page(ctx: Ctx) -> Response {
    super::todo(&ctx, "Explain", "explain")
}
