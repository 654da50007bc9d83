//! A fake [`Backend`] for the history pages' tests: canned answers (the
//! JSON shapes of `tests/fixtures/`, taken from the real CLI) per action,
//! per sequence, per explained id; everything else 404 or 501 as the live
//! backend answers until it implements a method.

use crate::backend::{At, Backend, BoxFut, EventQuery, Head, Mode, Principal, Refusal};
use crate::session::Ctx;
use crate::Ui;
use axum::response::Response;
use futures::stream::BoxStream;
use powernode_actions::ActionName;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A fixture of `services/ui/tests/fixtures/`.
pub fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Canned answers; what it was asked is recorded in `asked`.
#[derive(Default)]
pub struct Fake {
    /// Answers by action (any `at`).
    pub calls: HashMap<ActionName, Result<Value, Refusal>>,
    /// Answers by action at a past sequence (before `calls`).
    pub calls_at: HashMap<(ActionName, u64), Result<Value, Refusal>>,
    /// The head (`None`: 501).
    pub head: Option<Head>,
    /// Events by sequence (others: 404).
    pub events: HashMap<u64, Value>,
    /// Explanations by id (others: 404).
    pub explain: HashMap<String, Value>,
    /// The diff answer (`None`: 501).
    pub diff: Option<Result<Value, Refusal>>,
    /// (action, at, args) of every call.
    pub asked: Arc<Mutex<Vec<(ActionName, At, Value)>>>,
}

/// 501 `not_implemented`, as the live backend answered before ui-server.
pub fn not_implemented() -> Refusal {
    Refusal::new(501, "not_implemented", "not implemented yet")
}

impl Backend for Fake {
    fn mode(&self) -> Mode {
        Mode::Live { https: false }
    }

    fn call<'a>(
        &'a self,
        _who: &'a Principal,
        at: At,
        action: ActionName,
        args: Value,
    ) -> BoxFut<'a, Result<Value, Refusal>> {
        self.asked.lock().unwrap().push((action, at, args.clone()));
        let seq_answer = match at {
            At::Seq(s) => self.calls_at.get(&(action, s)).cloned(),
            At::Head => None,
        };
        let r = seq_answer
            .or_else(|| self.calls.get(&action).cloned())
            .unwrap_or_else(|| Err(Refusal::new(404, "not_found", "no canned answer")));
        Box::pin(async move { r })
    }

    fn head<'a>(&'a self, _who: &'a Principal) -> BoxFut<'a, Result<Head, Refusal>> {
        let r = self.head.ok_or_else(not_implemented);
        Box::pin(async move { r })
    }

    fn event<'a>(&'a self, _who: &'a Principal, seq: u64) -> BoxFut<'a, Result<Value, Refusal>> {
        let r = self
            .events
            .get(&seq)
            .cloned()
            .ok_or_else(|| Refusal::new(404, "not_found", format!("no event {seq}")));
        Box::pin(async move { r })
    }

    fn diff<'a>(
        &'a self,
        _who: &'a Principal,
        _from: u64,
        _to: u64,
    ) -> BoxFut<'a, Result<Value, Refusal>> {
        let r = self.diff.clone().unwrap_or_else(|| Err(not_implemented()));
        Box::pin(async move { r })
    }

    fn explain<'a>(
        &'a self,
        _who: &'a Principal,
        id: &'a str,
    ) -> BoxFut<'a, Result<Value, Refusal>> {
        let r = self.explain.get(id).cloned().ok_or_else(|| {
            Refusal::new(404, "not_found", format!("no object {id} in this account"))
        });
        Box::pin(async move { r })
    }

    fn events<'a>(
        &'a self,
        _who: &'a Principal,
        _query: EventQuery,
    ) -> BoxFut<'a, Result<BoxStream<'static, Value>, Refusal>> {
        Box::pin(async move { Err(not_implemented()) })
    }
}

/// A signed-in request context over `fake`.
pub fn ctx(fake: Fake) -> Ctx {
    Ctx {
        ui: Ui::new(Arc::new(fake)),
        who: Principal::Token("pn_test".into()),
        account: "acct-test".into(),
        csrf: "csrf-test".into(),
        at: At::Head,
        fragment: false,
        path: "/ui/test".into(),
        mode: Mode::Live { https: false },
    }
}

/// The status and body of a response.
pub async fn read(res: Response) -> (u16, String) {
    let status = res.status().as_u16();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, String::from_utf8(bytes.to_vec()).expect("utf-8"))
}
