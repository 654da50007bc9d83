//! Operator actions: `POST /v1/actions/<name>` with a JSON object of
//! arguments. The actions, their arguments, answers and permissions are
//! defined once in `powernode-actions`; here, one file per area binds each
//! action to its handler ([`handlers!`]), and this module parses,
//! authenticates and dispatches (generated from that table), and gives
//! handlers [`ActionContext::append`], which answers only once the API's
//! projection has applied what was appended (read-your-writes).

mod accounts;
mod approvals;
mod clusters;
mod events;
mod grants;
mod instances;
mod introspect;
mod kubeconfig;
mod mcp_audit;
mod modules;
mod sdwan;
mod skills;
mod templates;
mod views;
mod vips;

use super::auth::{authenticate, Operator};
use super::error::{ApiError, ErrorCode};
use super::ApiState;
use axum::http::HeaderMap;
use powernode_actions::{Action, ActionName};
use powernode_events::{Actor, Envelope};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::future::Future;
use std::time::Duration;

/// Every action this build knows, in the order of the table in `powernode-actions`.
pub const ACTIONS: &[&str] = powernode_actions::NAMES;

/// What a handler answers: its action's typed answer, or (for large reads)
/// that answer already serialized, which spares building a `Value` tree.
pub enum Reply<T> {
    /// Serialized under `data` by the dispatch.
    Typed(T),
    /// The answer's JSON text, placed under `data` as it is.
    Raw(String),
}

impl<T> From<T> for Reply<T> {
    fn from(answer: T) -> Self {
        Self::Typed(answer)
    }
}

/// Runs one action. Every action of the table needs one (the dispatch is
/// generated from the table), bound with [`handlers!`]; the dispatch has
/// parsed the arguments and checked [`Action::PERMISSION`] before.
pub trait Handler: Action {
    /// Handles the action's arguments.
    fn handle(
        ctx: &ActionContext<'_>,
        args: Self::Args,
    ) -> impl Future<Output = Result<Reply<Self::Answer>, ApiError>> + Send;
}

/// Binds actions to their handlers: `handlers! { CreateTemplate =>
/// create_template }`, where the function takes the context and the
/// action's arguments and answers its answer (or a [`Reply`] of it).
macro_rules! handlers {
    ($($action:ident => $handler:path),* $(,)?) => {
        $(
            impl $crate::api::actions::Handler for powernode_actions::$action {
                fn handle(
                    ctx: &$crate::api::actions::ActionContext<'_>,
                    args: Self::Args,
                ) -> impl std::future::Future<
                    Output = Result<
                        $crate::api::actions::Reply<Self::Answer>,
                        $crate::api::error::ApiError,
                    >,
                > + Send {
                    async move { $handler(ctx, args).await.map(Into::into) }
                }
            }
        )*
    };
}
use handlers;

/// How long an action waits for the projection to apply its own events.
const READ_YOUR_WRITES: Duration = Duration::from_secs(10);

/// What a handler gets.
pub struct ActionContext<'a> {
    api: &'a ApiState,
    /// The authenticated operator.
    pub operator: Operator,
}

impl ActionContext<'_> {
    /// The actor of events this action appends.
    pub fn actor(&self) -> Actor {
        Actor::Operator {
            token_id: self.operator.token_id.clone(),
        }
    }

    /// The event log.
    pub fn log(&self) -> &powernode_log::SharedLog {
        &self.api.log
    }

    /// When agents were last heard.
    pub fn liveness(&self) -> &crate::liveness::SharedLiveness {
        &self.api.liveness
    }

    /// Every service replica's status.
    pub fn status(&self) -> &crate::status::SharedBoard {
        &self.api.status
    }

    /// Failover tuning.
    pub fn failover(&self) -> &crate::services::failover::FailoverConfig {
        &self.api.failover
    }

    /// The last sequence the API's projection has applied.
    pub fn applied(&self) -> u64 {
        self.api.fleet.applied()
    }

    /// The secret store.
    pub fn secrets(&self) -> &crate::secrets::SharedSecrets {
        &self.api.secrets
    }

    /// Where newly provisioned instances are announced (simulated agents).
    pub fn on_provision(
        &self,
    ) -> Option<&tokio::sync::mpsc::UnboundedSender<crate::api::Provisioned>> {
        self.api.on_provision.as_ref()
    }

    /// The events index (`recent_events` by cluster or instance), which
    /// starts following the log on first use.
    pub fn events_index(&self) -> &crate::api::index::SharedIndex {
        let api = self.api;
        api.events_index.ensure_started(&api.log, &api.shutdown);
        &api.events_index
    }

    /// Reads the API's projection.
    pub async fn fleet(
        &self,
    ) -> tokio::sync::RwLockReadGuard<'_, powernode_projections::FleetState> {
        self.api.fleet.state.read().await
    }

    /// Waits until the projection has applied `seq`.
    pub async fn wait_for(&self, seq: u64) -> Result<(), ApiError> {
        if self.api.fleet.wait_for(seq, READ_YOUR_WRITES).await {
            Ok(())
        } else {
            Err(ApiError::unavailable(format!(
                "the API has not caught up with seq {seq} yet; retry"
            )))
        }
    }

    /// Appends one event under an optimistic-concurrency guard, then waits
    /// until the projection has applied it.
    pub async fn append_guarded(
        &self,
        event: &Envelope,
        expect: powernode_log::Expect,
    ) -> Result<u64, ApiError> {
        let seq = self.api.log.append(event, expect).await?.seq;
        self.wait_for(seq).await?;
        Ok(seq)
    }

    /// Appends `events` in order, then waits until the projection has applied
    /// the last one, so the caller's next request sees the change.
    pub async fn append(&self, events: &[Envelope]) -> Result<u64, ApiError> {
        let mut last = 0;
        for event in events {
            last = self
                .api
                .log
                .append(event, powernode_log::Expect::Any)
                .await?
                .seq;
        }
        if !self.api.fleet.wait_for(last, READ_YOUR_WRITES).await {
            return Err(ApiError::unavailable(format!(
                "the change was stored (seq {last}) but the API has not applied it yet; retry the read"
            )));
        }
        Ok(last)
    }
}

/// Parses an action's arguments, naming the offending field on error.
fn args<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        };
        ApiError::bad_request(ErrorCode::InvalidArguments, message)
    })
}

/// Runs action `name` with the raw request body. The order is fixed:
/// authentication (401) first, so an anonymous caller learns nothing about
/// actions or argument rules; then the action's name (404), the body's JSON
/// (400 `malformed_json`, duplicate keys included), characters (400
/// `invalid_arguments` for control characters anywhere), the action's own
/// arguments, and last the permission the action table names for it (403),
/// before its handler runs.
pub async fn dispatch(
    api: &ApiState,
    headers: &HeaderMap,
    name: &str,
    body: &[u8],
) -> Result<super::Answer, ApiError> {
    let operator = authenticate(headers, &*api.fleet.state.read().await)?;
    dispatch_as(api, operator, headers, name, body).await
}

/// [`dispatch`] for an operator already authenticated (the dashboard: at a
/// past sequence the token is checked against the live projection, and
/// offline there is no token, see `crate::ui`). `headers` only carry the
/// MCP audit tag, if any.
pub async fn dispatch_as(
    api: &ApiState,
    operator: Operator,
    headers: &HeaderMap,
    name: &str,
    body: &[u8],
) -> Result<super::Answer, ApiError> {
    let Ok(action) = name.parse::<ActionName>() else {
        return Err(ApiError::new(
            ErrorCode::UnknownAction,
            format!(
                "unknown action {:?}; known actions: {}",
                escape_unsafe(name),
                ACTIONS.join(", ")
            ),
        ));
    };
    let value = parse_body(body)?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidArguments,
            "arguments must be a JSON object",
        ));
    }
    check_characters("", &value)?;
    if let Some(reason) = &api.read_only {
        read_only_gate(reason, action, &value)?;
    }
    let ctx = ActionContext { api, operator };
    let Some(tag) = mcp_audit::Tag::from_headers(headers)? else {
        return run_boxed(&ctx, action, value).await;
    };
    // An MCP tool call: audited whatever its outcome (a call the MCP server
    // settled itself, e.g. by asking for a confirmation, only is audited).
    let object_id = action.object_id(&value);
    let answer = match &tag.outcome {
        Some(_) => Ok(super::Answer::Json(serde_json::json!({ "audited": true }))),
        None => run_boxed(&ctx, action, value).await,
    };
    let outcome = match (&tag.outcome, &answer) {
        (Some(outcome), _) => outcome.clone(),
        (None, Ok(_)) => "ok".to_string(),
        (None, Err(e)) => e.code.to_string(),
    };
    let audit_only = tag.outcome.is_some();
    match mcp_audit::append(&ctx, action, tag, outcome, object_id).await {
        Ok(()) => answer,
        Err(e) if audit_only => Err(e),
        // The action has run: its answer stands, the lost audit is logged.
        Err(e) => {
            tracing::error!(action = %action, code = %e.code, error = %e.message, "the audit event of an MCP tool call could not be appended");
            answer
        }
    }
}

/// On a read-only view (`reason` says why), refuses every action that
/// would append an event: those whose effect is not a read, and the
/// kubeconfig retrieval (a read that records an audit event and hands out
/// a secret).
pub fn read_only_gate(reason: &str, action: ActionName, args: &Value) -> Result<(), ApiError> {
    use powernode_actions::effect::Effect;
    let what = match action.effect_of(args) {
        _ if action == ActionName::GetKubeconfig => "hands out a secret and records an audit event",
        Effect::Read => return Ok(()),
        Effect::Write | Effect::Destructive => "changes the fleet",
    };
    Err(ApiError::new(
        ErrorCode::ReadOnly,
        format!("{reason}: {action} {what} and is refused"),
    ))
}

/// Runs `action` with its arguments (the generated dispatch).
/// [`run_action`] boxed: its state machine holds every handler of the
/// table, and its poll function is ~180 KB of code. Awaited unboxed, each
/// caller's future embeds it and the compiler may copy it into each (the
/// HTTP, MCP and dashboard paths made five copies); behind one box there is
/// one, for one allocation per action.
fn run_boxed<'a>(
    ctx: &'a ActionContext<'a>,
    action: ActionName,
    value: Value,
) -> std::pin::Pin<Box<dyn Future<Output = Result<super::Answer, ApiError>> + Send + 'a>> {
    Box::pin(run_action(ctx, action, value))
}

async fn run_action(
    ctx: &ActionContext<'_>,
    action: ActionName,
    value: Value,
) -> Result<super::Answer, ApiError> {
    macro_rules! dispatch_to {
        ($($action:ident)*) => {
            match action {
                $( ActionName::$action => run::<powernode_actions::$action>(ctx, value).await, )*
            }
        };
    }
    powernode_actions::for_each_action!(dispatch_to)
}

/// Runs action `A` with its arguments as JSON: parses them, checks the
/// action's permission, handles, and serializes the answer.
async fn run<A: Handler>(ctx: &ActionContext<'_>, value: Value) -> Result<super::Answer, ApiError> {
    let args = args::<A::Args>(value)?;
    if let Some(permission) = A::PERMISSION {
        ctx.operator.require(permission)?;
    }
    match A::handle(ctx, args).await? {
        Reply::Typed(answer) => serde_json::to_value(answer)
            .map(super::Answer::Json)
            .map_err(|e| ApiError::unavailable(format!("cannot serialize the answer: {e}"))),
        Reply::Raw(text) => Ok(super::Answer::Raw(text)),
    }
}

/// A fresh id with a readable prefix, e.g. `tmpl-0190…`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

/// An account id argument, refused with `invalid_arguments` when malformed.
pub fn account_arg(id: &str) -> Result<powernode_events::AccountId, ApiError> {
    powernode_events::AccountId::new(id)
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidArguments, e.to_string()))
}

/// Refuses an empty or overlong name, or one with a control character.
pub fn check_name(field: &str, name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.chars().count() > 128 {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidArguments,
            format!("{field} must be 1-128 characters"),
        ));
    }
    check_text(field, name)
}

pub use powernode_events::text::{escape_unsafe, is_unsafe_char};

/// Refuses `text` when it holds an [`is_unsafe_char`], naming `field`.
pub fn check_text(field: &str, text: &str) -> Result<(), ApiError> {
    match text.chars().find(|c| is_unsafe_char(*c)) {
        None => Ok(()),
        Some(c) => Err(ApiError::bad_request(
            ErrorCode::InvalidArguments,
            format!(
                "{}: control character U+{:04X} is not allowed",
                if field.is_empty() { "." } else { field },
                c as u32
            ),
        )),
    }
}

/// The longest string any argument may be, in bytes (names are shorter
/// still, see [`check_name`]): no id, name, prefix or reason needs more.
pub const MAX_ARGUMENT_TEXT: usize = 4096;

/// Refuses a control character in any string or key of the arguments, and
/// any string longer than [`MAX_ARGUMENT_TEXT`], naming its path
/// (`config.foo`, `lan_subnets[1]`).
fn check_characters(path: &str, value: &Value) -> Result<(), ApiError> {
    match value {
        Value::String(s) if s.len() > MAX_ARGUMENT_TEXT => Err(ApiError::bad_request(
            ErrorCode::InvalidArguments,
            format!(
                "{}: {} bytes is longer than the {MAX_ARGUMENT_TEXT} an argument may be",
                if path.is_empty() { "." } else { path },
                s.len()
            ),
        )),
        Value::String(s) => check_text(path, s),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| check_characters(&format!("{path}[{i}]"), v)),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            let here = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            if k.chars().any(is_unsafe_char) || k.len() > MAX_ARGUMENT_TEXT {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidArguments,
                    format!(
                        "{:?}: a key with a control character or over {MAX_ARGUMENT_TEXT} bytes is not allowed",
                        escape_unsafe(&here.chars().take(64).collect::<String>())
                    ),
                ));
            }
            check_characters(&here, v)
        }),
        _ => Ok(()),
    }
}

/// The body as JSON (an empty body is `{}`); 400 `malformed_json` when it
/// is not JSON or an object in it repeats a key (which the last-one-wins
/// rule of plain decoding would hide).
pub fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_slice::<Strict>(body)
        .map(|s| s.0)
        .map_err(|e| {
            ApiError::bad_request(
                ErrorCode::MalformedJson,
                format!("request body is not valid JSON: {e}"),
            )
        })
}

/// A JSON value whose objects have no repeated key.
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        <Strict as serde::Deserialize>::deserialize(d).map(|s| s.0)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "duplicate key {:?}",
                    escape_unsafe(&key.chars().take(64).collect::<String>())
                )));
            }
            let Strict(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct A {
        name: String,
    }

    #[test]
    fn duplicate_keys_are_malformed_at_any_depth() {
        let e = parse_body(br#"{"name":"a","name":"b"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::MalformedJson);
        assert!(
            e.message.contains(r#"duplicate key "name""#),
            "{}",
            e.message
        );
        let e = parse_body(br#"{"a":[{"k":1,"k":2}]}"#).unwrap_err();
        assert!(e.message.contains(r#"duplicate key "k""#), "{}", e.message);
        assert_eq!(
            parse_body(br#"{"a":[{"k":1},{"k":2}],"n":-1.5,"b":null}"#).unwrap(),
            serde_json::json!({"a":[{"k":1},{"k":2}],"n":-1.5,"b":null})
        );
        assert_eq!(parse_body(b" \n").unwrap(), serde_json::json!({}));
    }

    #[test]
    fn control_characters_are_refused_naming_the_path() {
        for c in [
            '\u{0}', '\u{1b}', '\n', '\u{7f}', '\u{85}', '\u{202e}', '\u{2066}',
        ] {
            let v = serde_json::json!({"config": {"k": format!("a{c}")}});
            let e = check_characters("", &v).unwrap_err();
            assert!(e.message.starts_with("config.k: "), "{}", e.message);
            let e = check_name("hostname", &format!("h{c}")).unwrap_err();
            assert!(e.message.starts_with("hostname"), "{}", e.message);
        }
        let v =
            serde_json::json!({"lan_subnets": ["10.0.0.0/24", "x".repeat(MAX_ARGUMENT_TEXT + 1)]});
        let e = check_characters("", &v).unwrap_err();
        assert!(e.message.starts_with("lan_subnets[1]: "), "{}", e.message);
        assert!(check_characters("", &serde_json::json!({"name": "Zürich 東京"})).is_ok());
        assert_eq!(escape_unsafe("a\u{1b}b"), "a\\u{1b}b");
    }

    #[test]
    fn argument_errors_name_the_field() {
        let e = args::<A>(serde_json::json!({"name": 7})).unwrap_err();
        assert!(e.message.starts_with("name: "), "{}", e.message);
        let e = args::<A>(serde_json::json!({})).unwrap_err();
        assert!(e.message.contains("missing field `name`"), "{}", e.message);
    }
}
