//! The dashboard over this API node.

use super::{answer_json, not_yet, refusal};
use crate::api::actions::dispatch;
use crate::api::ApiState;
use axum::http::{header, HeaderMap, HeaderValue};
use futures::stream::BoxStream;
use powernode_actions::ActionName;
use powernode_ui::{At, Backend, BoxFut, EventQuery, Head, Mode, Principal, Refusal};
use serde_json::Value;

/// The dashboard over a live API node.
pub struct LiveBackend {
    api: ApiState,
    https: bool,
}

impl LiveBackend {
    /// Over `api`, served over https or not.
    pub fn new(api: ApiState, https: bool) -> Self {
        Self { api, https }
    }

    fn headers(who: &Principal) -> Result<HeaderMap, Refusal> {
        let Principal::Token(token) = who else {
            return Err(Refusal::new(
                401,
                "unauthorized",
                "a live dashboard needs an operator token",
            ));
        };
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| Refusal::new(401, "unauthorized", "the token is not header text"))?,
        );
        Ok(h)
    }
}

impl Backend for LiveBackend {
    fn mode(&self) -> Mode {
        Mode::Live { https: self.https }
    }

    fn call<'a>(
        &'a self,
        who: &'a Principal,
        at: At,
        action: ActionName,
        args: Value,
    ) -> BoxFut<'a, Result<Value, Refusal>> {
        Box::pin(async move {
            let headers = Self::headers(who)?;
            if let At::Seq(_) = at {
                return Err(not_yet("time travel"));
            }
            let body = serde_json::to_vec(&args).expect("JSON");
            dispatch(&self.api, &headers, action.as_str(), &body)
                .await
                .map_err(refusal)
                .and_then(answer_json)
        })
    }

    fn head<'a>(&'a self, _who: &'a Principal) -> BoxFut<'a, Result<Head, Refusal>> {
        Box::pin(async move { Err(not_yet("the log's head")) })
    }

    fn event<'a>(&'a self, _who: &'a Principal, _seq: u64) -> BoxFut<'a, Result<Value, Refusal>> {
        Box::pin(async move { Err(not_yet("one event")) })
    }

    fn diff<'a>(
        &'a self,
        _who: &'a Principal,
        _from: u64,
        _to: u64,
    ) -> BoxFut<'a, Result<Value, Refusal>> {
        Box::pin(async move { Err(not_yet("what changed")) })
    }

    fn explain<'a>(
        &'a self,
        _who: &'a Principal,
        _id: &'a str,
    ) -> BoxFut<'a, Result<Value, Refusal>> {
        Box::pin(async move { Err(not_yet("explain")) })
    }

    fn events<'a>(
        &'a self,
        _who: &'a Principal,
        _query: EventQuery,
    ) -> BoxFut<'a, Result<BoxStream<'static, Value>, Refusal>> {
        Box::pin(async move { Err(not_yet("the live feed")) })
    }
}
