//! One module per page. Each page handler takes a [`Ctx`](crate::Ctx),
//! reads through [`Ctx::call`](crate::Ctx::call) (at the request's `?at=`
//! sequence) and answers [`layout::page`](crate::layout::page), or
//! [`layout::refusal`](crate::layout::refusal) for a refusal.

pub mod agents;
pub mod approvals;
mod approvals_view;
pub mod cluster;
mod cluster_vip;
pub mod events;
pub mod explain;
pub mod fleet;
pub mod skills;
pub mod travel;

use crate::backend::Refusal;
use axum::response::{IntoResponse, Redirect, Response};
use serde::de::DeserializeOwned;

/// `GET /ui`: the fleet.
pub async fn home() -> Response {
    Redirect::to(&format!("{}/fleet", crate::PATH)).into_response()
}

/// An action's answer as its typed form (a mismatch is the API's bug, said
/// as a refusal rather than a panic).
pub(crate) fn typed<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, Refusal> {
    serde_json::from_value(v).map_err(|e| {
        Refusal::new(
            502,
            "bad_answer",
            format!("the API answered something the dashboard does not understand: {e}"),
        )
    })
}
