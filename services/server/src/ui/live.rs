//! The dashboard over this API node: every method authenticates the
//! session's operator token against the API's projection first (401s as
//! the API answers them), then answers for the token's account only
//! ([`History`]).

use super::history::History;
use super::{refusal, Dashboard, Sessions};
use crate::api::auth::{authenticate, Operator};
use crate::api::ApiState;
use axum::http::{header, HeaderMap, HeaderValue};
use powernode_ui::{BoxFut, Mode, Principal, Refusal};

/// The sessions of a live API node: operator tokens.
pub struct Live {
    history: History,
    https: bool,
}

/// The dashboard over a live API node.
pub type LiveBackend = Dashboard<Live>;

impl LiveBackend {
    /// Over `api`, served over https or not.
    pub fn new(api: ApiState, https: bool) -> Self {
        Dashboard(Live {
            history: History::new(api, true),
            https,
        })
    }
}

impl Live {
    /// The operator the session's token authenticates as.
    async fn authenticate(&self, who: &Principal) -> Result<Operator, Refusal> {
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

impl Sessions for Live {
    fn mode(&self) -> Mode {
        Mode::Live { https: self.https }
    }

    fn history(&self) -> &History {
        &self.history
    }

    fn operator<'a>(&'a self, who: &'a Principal) -> BoxFut<'a, Result<Operator, Refusal>> {
        Box::pin(self.authenticate(who))
    }
}
