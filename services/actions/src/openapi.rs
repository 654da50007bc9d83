//! The OpenAPI 3.1 document of the operator API, generated from the action
//! table (issue 17 item 5), and `docs/api.md` generated from that document.
//!
//! * [`document`] — one `POST /v1/actions/<name>` per action of
//!   [`crate::schemas`]: its description, permission, argument and answer
//!   schemas, and one response per HTTP status its error codes
//!   ([`crate::Action::ERRORS`] and [`ErrorCode::ANY_ACTION`]) map to; plus
//!   the routes that are no action (`/healthz`, the event stream, the
//!   export, `/metrics`, the document itself, `/mcp`).
//! * [`markdown`] — the reference `docs/api.md`, from the document alone.
//!
//! Nothing here is written per action: a row added to the table shows up
//! in both with no change. Every schema's `$defs` land in
//! `components.schemas` (schemars emits JSON Schema 2020-12, which OpenAPI
//! 3.1 takes as it is); a name defined twice with different bodies is an
//! error ([`DuplicateSchema`]), never a silent overwrite.

mod components;
mod markdown;
mod routes;
#[cfg(test)]
mod tests;

pub use components::DuplicateSchema;
pub use markdown::markdown;

use crate::{ActionName, ActionSchema, ErrorCode};
use components::Components;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The name of the bearer security scheme (the operator token).
pub const SECURITY_SCHEME: &str = "operator_token";

/// The extension holding the permission an action needs (absent: any
/// token of the account may call it).
pub const PERMISSION_EXTENSION: &str = "x-powernode-permission";

/// The OpenAPI 3.1.0 document, `info.version` = `version`.
///
/// # Panics
/// When two schemas define the same component name with different bodies
/// (see [`try_document`]); the table's unit tests make sure it does not.
pub fn document(version: &str) -> Value {
    try_document(version).unwrap_or_else(|e| panic!("the OpenAPI document cannot be made: {e}"))
}

/// [`document`], or the schema name defined twice with different bodies.
pub fn try_document(version: &str) -> Result<Value, DuplicateSchema> {
    let mut components = Components::default();
    components.add_root(&schemars::schema_for!(ErrorCode), "ErrorCode")?;
    components.add_root(&schemars::schema_for!(crate::Permission), "Permission")?;
    components.insert_own("ErrorBody", error_body_schema())?;

    let areas = areas();
    let mut paths = Map::new();
    let mut used_tags = Vec::<&'static str>::new();
    for schema in crate::schemas() {
        let area = areas.get(&schema.action).copied().unwrap_or(DEFAULT_AREA);
        if !used_tags.contains(&area) {
            used_tags.push(area);
        }
        let op = action_operation(&schema, area, &mut components)?;
        paths.insert(
            format!("/v1/actions/{}", schema.action),
            json!({ "post": op }),
        );
    }
    routes::add(&mut paths, &mut components)?;

    let tags: Vec<Value> = used_tags
        .iter()
        .map(|t| json!({"name": t, "description": area_description(t)}))
        .chain(
            routes::TAGS
                .iter()
                .map(|(n, d)| json!({"name": n, "description": d})),
        )
        .collect();

    Ok(json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "powernode operator API",
            "version": version,
            "description": "The operator API of powernode: every action is \
                `POST /v1/actions/<name>` with its arguments as a JSON object \
                (an empty body is `{}`; unknown fields are refused), answered \
                `200 {\"data\": <answer>}` or, refused, `{\"error\": {\"code\", \
                \"message\"}}` with the code's HTTP status. Authenticate with \
                an operator token: `Authorization: Bearer <token>`.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "security": [{ SECURITY_SCHEME: [] }],
        "tags": tags,
        "paths": paths,
        "components": {
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An operator token (the admin's is in the \
                        data dir; `system_create_operator_token` issues others).",
                },
            },
            "schemas": components.into_schemas(),
        },
    }))
}

/// The area (OpenAPI tag) of actions whose module is not known.
const DEFAULT_AREA: &str = "other";

/// Each action's area: the module of this crate its argument type lives in
/// (`accounts`, `sdwan`, …), so a new action is filed with no change here.
fn areas() -> BTreeMap<ActionName, &'static str> {
    fn module_of(type_name: &'static str) -> &'static str {
        // `powernode_actions::<module>::<Type>`
        type_name.split("::").nth(1).unwrap_or(DEFAULT_AREA)
    }
    macro_rules! area_of {
        ($($ty:ident)*) => {
            BTreeMap::from([ $(
                (
                    <crate::$ty as crate::Action>::ACTION,
                    module_of(std::any::type_name::<<crate::$ty as crate::Action>::Args>()),
                ),
            )* ])
        };
    }
    for_each_action!(area_of)
}

/// What an area is about (the tag's description).
fn area_description(area: &str) -> String {
    let known = match area {
        "accounts" => "Accounts and operator tokens.",
        "templates" => "Node templates and their module assignments.",
        "instances" => "Nodes and the instances on them.",
        "events" => "The event log and the state digest.",
        "sdwan" => "SD-WAN networks and their peers.",
        "clusters" => "Kubernetes clusters and their nodes.",
        "kubeconfig" => "Kubeconfigs and join tokens.",
        "vips" => "Virtual IPs.",
        "approvals" => "Approval requests and failovers.",
        "grants" => "Operators' WireGuard access grants.",
        "modules" => "The module catalog.",
        "skills" => "Skills and their executions.",
        "introspect" => "What services and agents say about themselves.",
        _ => "",
    };
    if known.is_empty() {
        format!("The actions of area `{area}`.")
    } else {
        known.to_string()
    }
}

/// `{"error": {"code", "message"}}`.
fn error_body_schema() -> Value {
    json!({
        "title": "ErrorBody",
        "description": "A refusal or failure: a stable code and a message naming the problem.",
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"$ref": "#/components/schemas/ErrorCode"},
                    "message": {"type": "string", "description": "What went wrong, for a human."},
                },
            },
        },
    })
}

/// The refusals answered with `codes`, one response per status: the error
/// body with `code` narrowed to an enum of those codes, and a description
/// naming each with its meaning.
fn error_responses(codes: &[ErrorCode], responses: &mut Map<String, Value>) {
    let meanings = code_meanings();
    let mut by_status: BTreeMap<u16, Vec<ErrorCode>> = BTreeMap::new();
    for code in codes {
        let list = by_status.entry(code.status()).or_default();
        if !list.contains(code) {
            list.push(*code);
        }
    }
    for (status, codes) in by_status {
        let names: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
        let description = codes
            .iter()
            .map(|c| match meanings.get(c.as_str()) {
                Some(m) if !m.is_empty() => format!("`{}` ({m})", c.as_str()),
                _ => format!("`{}`", c.as_str()),
            })
            .collect::<Vec<_>>()
            .join("; ");
        responses.insert(
            status.to_string(),
            json!({
                "description": format!("Refused: {description}."),
                "x-powernode-error-codes": names,
                "content": {
                    "application/json": {
                        "schema": {
                            "allOf": [
                                {"$ref": "#/components/schemas/ErrorBody"},
                                {"properties": {"error": {"properties": {"code": {"enum": names}}}}},
                            ],
                        },
                    },
                },
            }),
        );
    }
}

/// Each error code's meaning, from its doc comment (the status dropped).
fn code_meanings() -> BTreeMap<String, String> {
    let schema = schemars::schema_for!(ErrorCode);
    let mut out = BTreeMap::new();
    for alt in schema
        .get("oneOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let (Some(code), Some(doc)) = (
            alt.get("const").and_then(Value::as_str),
            alt.get("description").and_then(Value::as_str),
        ) {
            let doc = doc.split_whitespace().collect::<Vec<_>>().join(" ");
            let meaning = markdown::split_status(&doc)
                .1
                .trim_end_matches('.')
                .to_string();
            out.insert(code.to_string(), meaning);
        }
    }
    out
}

/// `POST /v1/actions/<name>`.
fn action_operation(
    schema: &ActionSchema,
    area: &str,
    components: &mut Components,
) -> Result<Value, DuplicateSchema> {
    let name = schema.action.as_str();
    let args = components.add_root(&schema.args, &format!("{name} arguments"))?;
    let answer = components.add_root(&schema.answer, &format!("{name} answer"))?;
    let args_required = components
        .resolve(&args)
        .and_then(|s| s.get("required"))
        .and_then(Value::as_array)
        .is_some_and(|r| !r.is_empty());
    let description = schema.description.replace('\n', " ");
    let summary = match description.find(". ") {
        Some(end) => description[..=end].to_string(),
        None => description.clone(),
    };
    let mut codes: Vec<ErrorCode> = ErrorCode::ANY_ACTION.to_vec();
    codes.extend_from_slice(schema.errors);
    let mut responses = Map::new();
    responses.insert(
        "200".into(),
        json!({
            "description": "The answer, under `data`.",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["data"],
                        "properties": {"data": answer},
                    },
                },
            },
        }),
    );
    error_responses(&codes, &mut responses);
    let mut op = json!({
        "operationId": name,
        "summary": summary,
        "description": description,
        "tags": [area],
        "requestBody": {
            "required": args_required,
            "description": "The arguments (an empty body is `{}`; unknown fields are refused).",
            "content": {"application/json": {"schema": args}},
        },
        "responses": responses,
        "x-powernode-errors": schema.errors.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
    });
    if let Some(p) = schema.permission {
        op[PERMISSION_EXTENSION] = json!(p.as_str());
    }
    Ok(op)
}
