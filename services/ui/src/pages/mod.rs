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
