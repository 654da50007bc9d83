//! The embedded assets: one stylesheet and one script, compiled into the
//! binary (no CDN, nothing fetched at run time). Their URLs carry a hash
//! of their bytes, so they can be cached for a year.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// (name, content type, bytes).
const FILES: &[(&str, &str, &str)] = &[
    (
        "ui.css",
        "text/css; charset=utf-8",
        include_str!("../assets/ui.css"),
    ),
    (
        "ui.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/ui.js"),
    ),
    (
        "events.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/events.js"),
    ),
];

fn version() -> &'static str {
    static V: OnceLock<String> = OnceLock::new();
    V.get_or_init(|| {
        let mut h = Sha256::new();
        for (_, _, body) in FILES {
            h.update(body.as_bytes());
        }
        hex::encode(&h.finalize()[..6])
    })
}

/// The URL of an asset.
pub fn href(name: &str) -> String {
    format!("{}/assets/{name}?v={}", crate::PATH, version())
}

/// `GET /ui/assets/{file}`.
pub async fn serve(Path(file): Path<String>) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == file) {
        Some((_, ty, body)) => (
            [
                (header::CONTENT_TYPE, *ty),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
