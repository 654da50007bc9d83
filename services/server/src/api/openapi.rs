//! `GET /v1/openapi.json` (issue 17 item 5): the OpenAPI 3.1 document,
//! generated from the action table.
//!
//! (Stub of the contract commit: filled in by the OpenAPI work.)

/// Where the document is served.
pub const PATH: &str = "/v1/openapi.json";

/// `GET /v1/openapi.json`.
pub async fn document() -> axum::http::StatusCode {
    axum::http::StatusCode::NOT_IMPLEMENTED
}
