//! What the dashboard reads and acts through: a [`Backend`]. The server
//! implements it twice: over a live API node (every call is the action
//! dispatch, in-process, with the session's operator token, so token
//! scoping and permissions are the API's own) and over an export file
//! (read-only: every action that changes the fleet is refused).
//!
//! Everything is account-scoped by the backend: the dashboard never sees
//! another account's objects or events.

use futures::stream::BoxStream;
use powernode_actions::ActionName;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

/// A boxed future (the trait is used as `Arc<dyn Backend>`).
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Who a request acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// On a live node: the operator token the session signed in with.
    Token(String),
    /// Offline, over an export: reading as this account (no token exists).
    Offline {
        /// The account whose objects are shown.
        account: String,
    },
}

/// Which point of the log a read is answered at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum At {
    /// The live head (the API's projection).
    #[default]
    Head,
    /// The fleet rebuilt by replay through this sequence (time travel).
    /// Only read actions are answered at a past sequence.
    Seq(u64),
}

/// A refusal, as the API answers it: the HTTP status, the error code
/// (`unauthorized`, `token_expired`, `not_found`, `conflict`,
/// `read_only`, …) and a message that names the problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// HTTP status (401, 403, 404, 409, 422, 503, …).
    pub status: u16,
    /// The API's error code.
    pub code: String,
    /// What is wrong, for a human.
    pub message: String,
}

impl Refusal {
    /// A refusal.
    pub fn new(status: u16, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    /// True when the session must sign in again (no, unknown, revoked or
    /// expired token).
    pub fn needs_login(&self) -> bool {
        self.status == 401
            || matches!(
                self.code.as_str(),
                "unauthorized" | "token_expired" | "token_revoked"
            )
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status, self.message)
    }
}

impl std::error::Error for Refusal {}

/// What the dashboard is served over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// A running node: sign in with an operator token; actions work.
    Live {
        /// True when the API is served over https (the session cookie is
        /// then `Secure`).
        https: bool,
    },
    /// An export file, read-only: no sign-in; every action is refused.
    Offline {
        /// The export file.
        file: PathBuf,
        /// The accounts the export holds, those with objects first.
        accounts: Vec<String>,
    },
}

impl Mode {
    /// True offline.
    pub fn is_offline(&self) -> bool {
        matches!(self, Mode::Offline { .. })
    }
}

/// Filters of the live event feed (as `recent_events` and the SSE stream
/// take them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventQuery {
    /// Only kinds starting with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind_prefix: Option<String>,
    /// Only events about this cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Only events about this instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Start after this sequence (a reconnecting feed); without, from now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
}

/// The log's extent as the principal may see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// The first sequence (1 for a full log).
    pub first_seq: u64,
    /// The last sequence (the live head).
    pub last_seq: u64,
}

/// What the dashboard reads and acts through (see the module docs).
pub trait Backend: Send + Sync + 'static {
    /// Live or offline.
    fn mode(&self) -> Mode;

    /// Runs `action` with `args` as `who`, at `at`; answers the action's
    /// `data` (what `POST /v1/actions/<name>` answers under `data`).
    /// At a past sequence only read actions are answered (others: 409
    /// `read_only`); offline every action that changes the fleet is refused
    /// (409 `read_only`) and nothing is appended.
    fn call<'a>(
        &'a self,
        who: &'a Principal,
        at: At,
        action: ActionName,
        args: Value,
    ) -> BoxFut<'a, Result<Value, Refusal>>;

    /// The log's extent (time travel's slider and the live-head marker).
    fn head<'a>(&'a self, who: &'a Principal) -> BoxFut<'a, Result<Head, Refusal>>;

    /// One event of the principal's account by sequence: the JSON object
    /// `recent_events` answers for it (seq, id, kind, time, account,
    /// aggregate, actor, causation_id, correlation_id, payload). 404
    /// `not_found` for a sequence beyond the head or of another account.
    fn event<'a>(&'a self, who: &'a Principal, seq: u64) -> BoxFut<'a, Result<Value, Refusal>>;

    /// What changed between `from` and `to` (exclusive of `from`): the
    /// JSON `powernode replay --from A --to B --diff -o json` prints,
    /// scoped to the principal's account. 422 `invalid_arguments` when
    /// `from > to` or `to` is beyond the head (the message names the head).
    fn diff<'a>(
        &'a self,
        who: &'a Principal,
        from: u64,
        to: u64,
    ) -> BoxFut<'a, Result<Value, Refusal>>;

    /// Why `id` is as it is: the JSON `powernode events explain <id> -o
    /// json` prints (the object, its steps with seq, kind, actor, cause and
    /// effects, and the "why" chain). 404 `not_found` for an id the
    /// principal's account does not hold.
    fn explain<'a>(&'a self, who: &'a Principal, id: &'a str)
        -> BoxFut<'a, Result<Value, Refusal>>;

    /// The live event feed: each item the JSON object `recent_events`
    /// answers (with `seq`), catch-up from `query.after` then live. Ends
    /// when the node stops. Offline: the export's events after `after`,
    /// then the stream ends.
    fn events<'a>(
        &'a self,
        who: &'a Principal,
        query: EventQuery,
    ) -> BoxFut<'a, Result<BoxStream<'static, Value>, Refusal>>;
}
