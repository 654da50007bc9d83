//! `GET /ui/skills`: skill executions with progress; `GET /ui/skills/{id}`.

use crate::session::Ctx;
use axum::extract::Path;
use axum::response::Response;

/// `GET /ui/skills`.
pub async fn page(ctx: Ctx) -> Response {
    super::todo(&ctx, "Skills", "skills")
}

/// `GET /ui/skills/{id}`.
pub async fn one(ctx: Ctx, Path(_id): Path<String>) -> Response {
    super::todo(&ctx, "Skill execution", "skills")
}
