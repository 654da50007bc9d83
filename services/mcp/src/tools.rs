//! The MCP tools, generated from the action table: one per action, named
//! like it, described by its doc, its arguments' JSON Schema (with `$defs`
//! inlined: MCP clients expect a self-contained object schema) as the input
//! schema, and annotations from its [`Effect`].

use powernode_actions::effect::Effect;
use powernode_actions::{ActionName, ActionSchema};
use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// The extra argument of destructive tools: the id a first call answered.
pub const CONFIRMATION_ARG: &str = "confirmation_id";

/// Every action as a tool, in table order.
pub fn all() -> Vec<Tool> {
    powernode_actions::schemas().iter().map(tool).collect()
}

/// One action's tool.
pub fn tool(schema: &ActionSchema) -> Tool {
    let action = schema.action;
    let mut input = inline(&serde_json::to_value(&schema.args).unwrap_or_default());
    if action.effect() == Effect::Destructive {
        if input.get("properties").is_none() {
            input["properties"] = json!({});
        }
        if let Some(props) = input.get_mut("properties").and_then(Value::as_object_mut) {
            props.insert(
                CONFIRMATION_ARG.to_string(),
                json!({
                    "type": "string",
                    "description": "The confirmation id a first call of this tool answered \
                        (status request_confirmation). Destructive tools act only on a second \
                        call with it, for the same object, by the same token, within its expiry. \
                        Clients that support elicitation are asked to type the object's name instead."
                }),
            );
        }
    }
    let Value::Object(input) = input else {
        unreachable!("an action's arguments are a JSON object schema")
    };
    let mut description = schema.description.clone();
    if let Some(permission) = schema.permission {
        description.push_str(&format!("\nNeeds the permission {permission}."));
    }
    match action.effect() {
        Effect::Destructive if action == ActionName::FailoverVirtualIp => description.push_str(
            "\nDestructive unless dry_run: asks for a confirmation first (see confirmation_id).",
        ),
        Effect::Destructive => description
            .push_str("\nDestructive: asks for a confirmation first (see confirmation_id)."),
        _ => {}
    }
    Tool::new(action.as_str(), description, Arc::new(input)).with_annotations(annotations(action))
}

/// `readOnlyHint` for reads, `destructiveHint` for destructive actions;
/// reads are idempotent; every tool acts on the fleet (open world).
pub fn annotations(action: ActionName) -> ToolAnnotations {
    let effect = action.effect();
    ToolAnnotations::new()
        .read_only(effect == Effect::Read)
        .destructive(effect == Effect::Destructive)
        .idempotent(effect == Effect::Read)
        .open_world(true)
}

/// `schema` with every `$ref` to its `$defs` replaced by the definition,
/// and without `$defs` and `$schema`.
pub fn inline(schema: &Value) -> Value {
    let defs = schema
        .get("$defs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut out = resolve(schema, &defs, 0);
    if let Some(o) = out.as_object_mut() {
        o.remove("$defs");
        o.remove("$schema");
    }
    out
}

/// How deep definitions may nest (a recursive type stops here, as `{}`).
const MAX_DEPTH: usize = 32;

fn resolve(value: &Value, defs: &Map<String, Value>, depth: usize) -> Value {
    match value {
        Value::Object(o) => {
            if let Some(target) = o
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/$defs/"))
            {
                let Some(def) = defs.get(target).filter(|_| depth < MAX_DEPTH) else {
                    return json!({});
                };
                let mut resolved = resolve(def, defs, depth + 1);
                // Siblings of `$ref` (a description, a default) stay.
                if let Value::Object(r) = &mut resolved {
                    for (k, v) in o.iter().filter(|(k, _)| *k != "$ref") {
                        r.insert(k.clone(), resolve(v, defs, depth));
                    }
                }
                return resolved;
            }
            Value::Object(
                o.iter()
                    .filter(|(k, _)| *k != "$defs")
                    .map(|(k, v)| (k.clone(), resolve(v, defs, depth)))
                    .collect::<JsonObject>(),
            )
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| resolve(v, defs, depth)).collect())
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(v: &Value) -> bool {
        match v {
            Value::Object(o) => o.contains_key("$ref") || o.values().any(refs),
            Value::Array(a) => a.iter().any(refs),
            _ => false,
        }
    }

    #[test]
    fn every_action_is_a_self_contained_object_tool() {
        let tools = all();
        assert_eq!(tools.len(), ActionName::ALL.len());
        for (t, action) in tools.iter().zip(ActionName::ALL) {
            assert_eq!(t.name, action.as_str());
            assert_eq!(t.input_schema["type"], "object", "{action}");
            let schema = Value::Object((*t.input_schema).clone());
            assert!(!refs(&schema), "{action}: {schema}");
            assert!(t.input_schema.get("$defs").is_none());
            let a = t.annotations.as_ref().unwrap();
            assert_eq!(a.read_only_hint, Some(action.effect() == Effect::Read));
            assert_eq!(
                a.destructive_hint,
                Some(action.effect() == Effect::Destructive)
            );
            assert_eq!(
                t.input_schema
                    .get("properties")
                    .and_then(|p| p.get(CONFIRMATION_ARG))
                    .is_some(),
                action.effect() == Effect::Destructive
            );
        }
    }
}
