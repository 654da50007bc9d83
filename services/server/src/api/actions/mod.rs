//! Operator actions: `POST /v1/actions/<name>` with a JSON object of
//! arguments. One file per area; this module parses, authenticates and
//! dispatches, and gives handlers [`ActionContext::append`], which answers
//! only once the API's projection has applied what was appended
//! (read-your-writes).

mod accounts;
mod approvals;
mod clusters;
mod events;
mod instances;
mod kubeconfig;
mod sdwan;
mod templates;
mod vips;

use super::auth::{authenticate, Operator};
use super::error::ApiError;
use super::ApiState;
use axum::http::HeaderMap;
use powernode_events::{Actor, Envelope};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::time::Duration;

/// Every action this build knows.
pub const ACTIONS: &[&str] = &[
    "system_create_account",
    "system_create_operator_token",
    "system_revoke_operator_token",
    "system_list_operator_tokens",
    "system_create_template",
    "system_get_template",
    "system_assign_module_to_template",
    "system_create_node",
    "system_provision_instance",
    "recent_events",
    "system_state_hash",
    "system_sdwan_create_network",
    "system_sdwan_attach_peer",
    "kubernetes_list_clusters",
    "kubernetes_get_cluster",
    "kubernetes_list_nodes",
    "kubernetes_get_kubeconfig",
    "kubernetes_decommission_cluster",
    "kubernetes_rotate_join_token",
    "system_sdwan_get_virtual_ip",
    "system_sdwan_list_networks",
    "system_sdwan_update_network",
    "system_list_instances",
    "system_drain_instance",
    "system_terminate_instance",
    "system_list_approvals",
    "system_approve",
    "system_reject",
    "system_sdwan_failover_virtual_ip",
];

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
        ApiError::bad_request("invalid_arguments", message)
    })
}

/// Runs action `name` with the raw request body. The order is fixed:
/// authentication (401) first, so an anonymous caller learns nothing about
/// actions or argument rules; then the action's name (404), the body's JSON
/// (400 `malformed_json`, duplicate keys included), characters (400
/// `invalid_arguments` for control characters anywhere), and last the
/// action's own arguments.
pub async fn dispatch(
    api: &ApiState,
    headers: &HeaderMap,
    name: &str,
    body: &[u8],
) -> Result<super::Answer, ApiError> {
    let operator = authenticate(headers, &*api.fleet.state.read().await)?;
    if !ACTIONS.contains(&name) {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "unknown_action",
            format!(
                "unknown action {:?}; known actions: {}",
                escape_unsafe(name),
                ACTIONS.join(", ")
            ),
        ));
    }
    let value = parse_body(body)?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "invalid_arguments",
            "arguments must be a JSON object",
        ));
    }
    check_characters("", &value)?;
    let ctx = ActionContext { api, operator };
    if name == "kubernetes_list_clusters" {
        return clusters::list_clusters(&ctx, args(value)?)
            .await
            .map(super::Answer::Raw);
    }
    let answer = match name {
        "system_create_account" => accounts::create_account(&ctx, args(value)?).await,
        "system_create_operator_token" => accounts::create_operator_token(&ctx, args(value)?).await,
        "system_revoke_operator_token" => accounts::revoke_operator_token(&ctx, args(value)?).await,
        "system_list_operator_tokens" => accounts::list_operator_tokens(&ctx, args(value)?).await,
        "system_create_template" => templates::create_template(&ctx, args(value)?).await,
        "system_get_template" => templates::get_template(&ctx, args(value)?).await,
        "system_assign_module_to_template" => templates::assign_module(&ctx, args(value)?).await,
        "system_create_node" => instances::create_node(&ctx, args(value)?).await,
        "system_provision_instance" => instances::provision_instance(&ctx, args(value)?).await,
        "recent_events" => events::recent_events(&ctx, args(value)?).await,
        "system_state_hash" => events::state_hash(&ctx, args(value)?).await,
        "system_sdwan_create_network" => sdwan::create_network(&ctx, args(value)?).await,
        "system_sdwan_attach_peer" => sdwan::attach_peer(&ctx, args(value)?).await,
        "kubernetes_get_cluster" => clusters::get_cluster(&ctx, args(value)?).await,
        "kubernetes_list_nodes" => clusters::list_nodes(&ctx, args(value)?).await,
        "kubernetes_get_kubeconfig" => kubeconfig::get_kubeconfig(&ctx, args(value)?).await,
        "kubernetes_decommission_cluster" => clusters::decommission(&ctx, args(value)?).await,
        "kubernetes_rotate_join_token" => kubeconfig::rotate_join_token(&ctx, args(value)?).await,
        "system_sdwan_get_virtual_ip" => vips::get_virtual_ip(&ctx, args(value)?).await,
        "system_sdwan_list_networks" => vips::list_networks(&ctx, args(value)?).await,
        "system_sdwan_update_network" => sdwan::update_network(&ctx, args(value)?).await,
        "system_list_instances" => instances::list_instances(&ctx, args(value)?).await,
        "system_drain_instance" => instances::set_instance_status(&ctx, args(value)?, false).await,
        "system_list_approvals" => approvals::list_approvals(&ctx, args(value)?).await,
        "system_approve" => approvals::decide(&ctx, args(value)?, true).await,
        "system_reject" => approvals::decide(&ctx, args(value)?, false).await,
        "system_sdwan_failover_virtual_ip" => {
            approvals::failover_virtual_ip(&ctx, args(value)?).await
        }
        "system_terminate_instance" => {
            instances::set_instance_status(&ctx, args(value)?, true).await
        }
        other => unreachable!("{other} is in ACTIONS but not dispatched"),
    };
    answer.map(super::Answer::Json)
}

/// A fresh id with a readable prefix, e.g. `tmpl-0190…`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

/// An account id argument, refused with `invalid_arguments` when malformed.
pub fn account_arg(id: &str) -> Result<powernode_events::AccountId, ApiError> {
    powernode_events::AccountId::new(id)
        .map_err(|e| ApiError::bad_request("invalid_arguments", e.to_string()))
}

/// Refuses an empty or overlong name, or one with a control character.
pub fn check_name(field: &str, name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.chars().count() > 128 {
        return Err(ApiError::bad_request(
            "invalid_arguments",
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
            "invalid_arguments",
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
            "invalid_arguments",
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
                    "invalid_arguments",
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
                "malformed_json",
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
        assert_eq!(e.code, "malformed_json");
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
