//! `GET /ui/travel`.

use crate::session::Ctx;
use axum::response::Response;

/// `GET /ui/travel`.
pub async fn page(ctx: Ctx) -> Response {
    super::todo(&ctx, "Time travel", "travel")
}
