//! Prometheus metrics (issue 17 item 4): `/metrics` on every node.
//!
//! (Stub of the contract commit: filled in by the observability work.)

/// Where the API serves the scrape.
pub const PATH: &str = "/metrics";

/// Metrics options of a node.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct MetricsArgs {}

/// `GET /metrics`.
pub async fn scrape() -> axum::http::StatusCode {
    axum::http::StatusCode::NOT_IMPLEMENTED
}
