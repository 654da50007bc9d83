//! `GET /ui/approvals`: the waiting queue and decided approvals; approve
//! and reject.

use crate::session::Ctx;
use axum::extract::{Form, Path};
use axum::response::Response;
use serde::Deserialize;

/// `GET /ui/approvals`.
pub async fn page(ctx: Ctx) -> Response {
    super::todo(&ctx, "Approvals", "approvals")
}

/// The approve and reject forms.
#[derive(Debug, Deserialize)]
pub struct DecideForm {
    /// The CSRF token.
    pub csrf: Option<String>,
    /// Why (reject needs one).
    #[serde(default)]
    pub reason: String,
}

/// `POST /ui/approvals/{id}/approve`.
pub async fn approve(ctx: Ctx, Path(_id): Path<String>, Form(_f): Form<DecideForm>) -> Response {
    super::todo(&ctx, "Approve", "approvals")
}

/// `POST /ui/approvals/{id}/reject`.
pub async fn reject(ctx: Ctx, Path(_id): Path<String>, Form(_f): Form<DecideForm>) -> Response {
    super::todo(&ctx, "Reject", "approvals")
}
