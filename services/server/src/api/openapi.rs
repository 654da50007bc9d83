//! `GET /v1/openapi.json` (issue 17 item 5): the OpenAPI 3.1 document,
//! generated from the action table ([`powernode_actions::openapi`]).
//!
//! Served without a token: it is the same for everyone and holds no
//! secret. Made once, on the first request.

use axum::http::header;
use axum::response::IntoResponse;
use std::sync::OnceLock;

/// Where the document is served.
pub const PATH: &str = "/v1/openapi.json";

/// The document as JSON text, made once.
pub fn text() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| powernode_actions::openapi::document(env!("CARGO_PKG_VERSION")).to_string())
}

/// `GET /v1/openapi.json`.
pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], text())
}
