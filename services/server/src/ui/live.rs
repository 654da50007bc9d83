//! The dashboard over this API node: every method authenticates the
//! session's operator token against the API's projection first (401s as
//! the API answers them), then answers for the token's account only
//! ([`History`]).

use super::history::History;
use super::refusal;
use crate::api::auth::{authenticate, Operator};
use crate::api::ApiState;
use axum::http::{header, HeaderMap, HeaderValue};
use futures::stream::BoxStream;
use powernode_actions::ActionName;
use powernode_ui::{At, Backend, BoxFut, EventQuery, Head, Mode, Principal, Refusal};
use serde_json::Value;

/// The dashboard over a live API node.
pub struct LiveBackend {
    history: History,
    https: bool,
}

impl LiveBackend {
    /// Over `api`, served over https or not.
    pub fn new(api: ApiState, https: bool) -> Self {
        Self {
            history: History::new(api, true),
            https,
        }
    }

    /// The operator the session's token authenticates as.
    async fn operator(&self, who: &Principal) -> Result<Operator, Refusal> {
        let Principal::Token(token) = who else {
            return Err(Refusal::new(
                401,
                "unauthorized",
                "a live dashboard needs an operator token",
            ));
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| Refusal::new(401, "unauthorized", "the token is not header text"))?,
        );
        let fleet = self.history.api().fleet.state.read().await;
        authenticate(&headers, &fleet).map_err(refusal)
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
            let operator = self.operator(who).await?;
            self.history.call(operator, at, action, args).await
        })
    }

    fn head<'a>(&'a self, who: &'a Principal) -> BoxFut<'a, Result<Head, Refusal>> {
        Box::pin(async move {
            self.operator(who).await?;
            self.history.head().await
        })
    }

    fn event<'a>(&'a self, who: &'a Principal, seq: u64) -> BoxFut<'a, Result<Value, Refusal>> {
        Box::pin(async move {
            let operator = self.operator(who).await?;
            self.history.event(&operator.account, seq).await
        })
    }

    fn diff<'a>(
        &'a self,
        who: &'a Principal,
        from: u64,
        to: u64,
    ) -> BoxFut<'a, Result<Value, Refusal>> {
        Box::pin(async move {
            let operator = self.operator(who).await?;
            self.history.diff(&operator.account, from, to).await
        })
    }

    fn explain<'a>(
        &'a self,
        who: &'a Principal,
        id: &'a str,
    ) -> BoxFut<'a, Result<Value, Refusal>> {
        Box::pin(async move {
            let operator = self.operator(who).await?;
            self.history.explain(&operator.account, id).await
        })
    }

    fn events<'a>(
        &'a self,
        who: &'a Principal,
        query: EventQuery,
    ) -> BoxFut<'a, Result<BoxStream<'static, Value>, Refusal>> {
        Box::pin(async move {
            let operator = self.operator(who).await?;
            self.history.events(&operator.account, query).await
        })
    }
}
