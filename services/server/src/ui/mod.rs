//! The dashboard's backends ([`powernode_ui::Backend`]):
//!
//! * [`live::LiveBackend`] — over this API node: every call is the action
//!   dispatch in-process with the session's bearer token (scoping and
//!   permissions are the API's own); time travel, "what changed" and
//!   explain replay the log server-side ([`powernode_inspect`]), scoped to
//!   the token's account;
//! * [`offline::OfflineBackend`] — over an export file, read-only
//!   (`powernode ui --file export.pnx`).

pub mod live;
pub mod offline;

use crate::api::error::ApiError;
use powernode_ui::Refusal;

/// An API refusal as the dashboard shows it.
pub fn refusal(e: ApiError) -> Refusal {
    Refusal::new(e.status.as_u16(), e.code.as_str(), e.message)
}

/// An answer of the dispatch as JSON.
pub fn answer_json(a: crate::api::Answer) -> Result<serde_json::Value, Refusal> {
    match a {
        crate::api::Answer::Json(v) => Ok(v),
        crate::api::Answer::Raw(text) => serde_json::from_str(&text)
            .map_err(|e| Refusal::new(500, "internal", format!("the answer is not JSON: {e}"))),
    }
}

/// Not built yet (replaced as the backends grow).
pub(crate) fn not_yet(what: &str) -> Refusal {
    Refusal::new(501, "not_implemented", format!("{what} is not built yet"))
}
