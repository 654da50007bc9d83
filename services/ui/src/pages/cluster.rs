//! `GET /ui/clusters/{id}`: one cluster, its nodes and its VIP; the
//! kubeconfig download and decommission.

use crate::session::Ctx;
use axum::extract::{Form, Path};
use axum::response::Response;
use serde::Deserialize;

/// `GET /ui/clusters/{id}`.
pub async fn page(ctx: Ctx, Path(_id): Path<String>) -> Response {
    super::todo(&ctx, "Cluster", "fleet")
}

/// `GET /ui/clusters/{id}/kubeconfig`.
pub async fn kubeconfig(ctx: Ctx, Path(_id): Path<String>) -> Response {
    super::todo(&ctx, "Kubeconfig", "fleet")
}

/// The decommission form: the cluster's name typed back.
#[derive(Debug, Deserialize)]
pub struct DecommissionForm {
    /// The CSRF token.
    pub csrf: Option<String>,
    /// The cluster's name, typed by the human.
    #[serde(default)]
    pub confirm_name: String,
}

/// `POST /ui/clusters/{id}/decommission`.
pub async fn decommission(
    ctx: Ctx,
    Path(_id): Path<String>,
    Form(_form): Form<DecommissionForm>,
) -> Response {
    super::todo(&ctx, "Decommission", "fleet")
}
