//! `docs/api.md`, made from the OpenAPI document alone: an index by area,
//! then each action's description, permission, arguments, answer fields,
//! error codes and an example call.

use super::components::REF_PREFIX;
use super::PERMISSION_EXTENSION;
use serde_json::{json, Map, Value};
use std::fmt::Write as _;

/// How deep nested objects are flattened into `a.b[].c` rows.
const MAX_DEPTH: usize = 3;

/// How to regenerate `docs/api.md`.
pub const REGENERATE: &str = "POWERNODE_UPDATE_DOCS=1 cargo test -p powernode-actions openapi";

/// The API reference in Markdown, from the OpenAPI document `doc`.
pub fn markdown(doc: &Value) -> String {
    let mut out = String::new();
    let actions = actions(doc);
    let _ = writeln!(out, "# The operator API\n");
    let _ = writeln!(
        out,
        "<!-- Generated from the OpenAPI document (`GET /v1/openapi.json`) by \
         `powernode_actions::openapi::markdown`; do not edit. Regenerate with \
         `{REGENERATE}`. -->\n"
    );
    let _ = writeln!(out, "{}\n", text(&doc["info"]["description"]));
    let _ = writeln!(
        out,
        "The machine-readable document (OpenAPI {}) is served at `GET /v1/openapi.json`, \
         without a token.\n",
        text(&doc["openapi"])
    );

    let _ = writeln!(out, "## Actions by area\n");
    for tag in doc["tags"].as_array().into_iter().flatten() {
        let name = text(&tag["name"]);
        let in_area: Vec<&(String, &Value)> = actions
            .iter()
            .filter(|(_, op)| op["tags"][0] == tag["name"])
            .collect();
        if in_area.is_empty() {
            continue;
        }
        let _ = writeln!(out, "### {name}\n\n{}\n", text(&tag["description"]));
        let _ = writeln!(
            out,
            "| Action | Permission | What it does |\n| --- | --- | --- |"
        );
        for (action, op) in in_area {
            let _ = writeln!(
                out,
                "| [`{action}`](#{action}) | {} | {} |",
                permission(op, "any"),
                cell(&text(&op["summary"]))
            );
        }
        out.push('\n');
    }

    let _ = writeln!(out, "## Other routes\n");
    let _ = writeln!(out, "| Route | Token | What it is |\n| --- | --- | --- |");
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        if path.starts_with("/v1/actions/") {
            continue;
        }
        for (method, op) in item.as_object().into_iter().flatten() {
            let Some(summary) = op.get("summary") else {
                continue;
            };
            let token = if op.get("security") == Some(&json!([])) {
                "no"
            } else {
                "yes"
            };
            let _ = writeln!(
                out,
                "| `{} {path}` | {token} | {} |",
                method.to_uppercase(),
                cell(&text(summary))
            );
        }
    }
    out.push('\n');

    let _ = writeln!(out, "## Actions\n");
    for (action, op) in &actions {
        write_action(&mut out, doc, action, op);
    }

    let _ = writeln!(out, "## Error codes\n");
    let _ = writeln!(out, "| Code | Status | Meaning |\n| --- | --- | --- |");
    for (code, description) in enum_values(doc, &doc["components"]["schemas"]["ErrorCode"]) {
        let (status, meaning) = split_status(&description);
        let _ = writeln!(out, "| `{code}` | {status} | {} |", cell(meaning));
    }
    out
}

/// `(name, operation)` of every action, in document order.
fn actions(doc: &Value) -> Vec<(String, &Value)> {
    doc["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(path, item)| {
            let name = path.strip_prefix("/v1/actions/")?;
            Some((name.to_string(), item.get("post")?))
        })
        .collect()
}

/// One action's section.
fn write_action(out: &mut String, doc: &Value, action: &str, op: &Value) {
    let _ = writeln!(out, "### `{action}`\n\n{}\n", text(&op["description"]));
    let _ = writeln!(
        out,
        "**Permission:** {}.\n",
        permission(op, "none (any token of the account)")
    );
    let args = &op["requestBody"]["content"]["application/json"]["schema"];
    let mut rows = Vec::new();
    fields(doc, args, "", 0, &mut Vec::new(), &mut rows);
    let _ = writeln!(out, "**Arguments:**\n");
    if rows.is_empty() {
        let _ = writeln!(out, "None (the body may be empty or `{{}}`).\n");
    } else {
        let _ = writeln!(
            out,
            "| Field | Type | Required | Description |\n| --- | --- | --- | --- |"
        );
        for r in &rows {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} |",
                r.name,
                cell(&r.ty),
                if r.required { "yes" } else { "no" },
                cell(&r.description)
            );
        }
        out.push('\n');
    }
    let answer =
        &op["responses"]["200"]["content"]["application/json"]["schema"]["properties"]["data"];
    let mut rows = Vec::new();
    fields(doc, answer, "", 0, &mut Vec::new(), &mut rows);
    let _ = writeln!(out, "**Answer** (under `data`):\n");
    if rows.is_empty() {
        let _ = writeln!(out, "{}\n", cell(&type_of(doc, answer)));
    } else {
        let _ = writeln!(
            out,
            "| Field | Type | Always | Description |\n| --- | --- | --- | --- |"
        );
        for r in &rows {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} |",
                r.name,
                cell(&r.ty),
                if r.required { "yes" } else { "no" },
                cell(&r.description)
            );
        }
        out.push('\n');
    }
    let _ = writeln!(out, "**Errors:**\n");
    let _ = writeln!(out, "| Status | Codes |\n| --- | --- |");
    for (status, response) in op["responses"].as_object().into_iter().flatten() {
        let Some(codes) = response["x-powernode-error-codes"].as_array() else {
            continue;
        };
        let codes: Vec<String> = codes.iter().map(|c| format!("`{}`", text(c))).collect();
        let _ = writeln!(out, "| {status} | {} |", codes.join(", "));
    }
    out.push('\n');
    let example = example_of(doc, args, 0);
    let body = serde_json::to_string(&example).unwrap_or_default();
    let _ = writeln!(
        out,
        "**Example:**\n\n```sh\ncurl -sS -X POST \"$POWERNODE_URL/v1/actions/{action}\" \\\n  \
         -H \"Authorization: Bearer $POWERNODE_TOKEN\" -H 'Content-Type: application/json' \\\n  \
         -d '{}'\n```\n",
        body.replace('\'', "'\\''")
    );
}

/// One row of a fields table.
struct Row {
    name: String,
    ty: String,
    required: bool,
    description: String,
}

/// The schema `v` points to, through `$ref`s (itself when inline).
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    let mut v = v;
    for _ in 0..8 {
        match v
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix(REF_PREFIX))
        {
            Some(name) => v = &doc["components"]["schemas"][name],
            None => break,
        }
    }
    v
}

/// The object schema a property leads to (through refs, `X or null`,
/// arrays), and the suffix its nested rows get (`.` or `[].`).
fn nested<'a>(doc: &'a Value, v: &'a Value) -> Option<(&'a Value, String, &'a str)> {
    let r = resolve(doc, v);
    let name = v.get("$ref").and_then(Value::as_str).unwrap_or_default();
    if r.get("properties").is_some() {
        return Some((r, name.to_string(), "."));
    }
    if let Some(items) = r.get("items") {
        return nested(doc, items).map(|(s, n, _)| (s, n, "[]."));
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(alts) = r.get(key).and_then(Value::as_array) {
            let non_null: Vec<&Value> = alts.iter().filter(|a| a["type"] != "null").collect();
            if non_null.len() == 1 {
                return nested(doc, non_null[0]);
            }
        }
    }
    None
}

/// The rows of an object schema's properties, nested objects flattened
/// (`a.b`, `a[].b`) down to [`MAX_DEPTH`], each type once per path.
fn fields(
    doc: &Value,
    schema: &Value,
    prefix: &str,
    depth: usize,
    seen: &mut Vec<String>,
    out: &mut Vec<Row>,
) {
    let s = resolve(doc, schema);
    let Some(props) = s.get("properties").and_then(Value::as_object) else {
        return;
    };
    let required: Vec<&str> = s["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut names: Vec<&String> = props.keys().collect();
    names.sort();
    for key in names {
        let p = &props[key];
        let target = resolve(doc, p);
        let description = p
            .get("description")
            .or_else(|| target.get("description"))
            .map(text)
            .unwrap_or_default();
        let name = format!("{prefix}{key}");
        out.push(Row {
            name: name.clone(),
            ty: type_of(doc, p),
            required: required.contains(&key.as_str()),
            description,
        });
        if depth + 1 >= MAX_DEPTH {
            continue;
        }
        if let Some((inner, ref_name, sep)) = nested(doc, p) {
            if !ref_name.is_empty() && seen.contains(&ref_name) {
                continue;
            }
            seen.push(ref_name.clone());
            fields(doc, inner, &format!("{name}{sep}"), depth + 1, seen, out);
            seen.pop();
        }
    }
}

/// A short type: `string`, `integer (uint64)`, `array of Template`,
/// `"a" or "b"`, `string or null`, `map of string`.
fn type_of(doc: &Value, v: &Value) -> String {
    if let Some(r) = v.get("$ref").and_then(Value::as_str) {
        let name = r.strip_prefix(REF_PREFIX).unwrap_or(r);
        let values = enum_values(doc, resolve(doc, v));
        if !values.is_empty() && values.len() <= 8 {
            return values
                .iter()
                .map(|(v, _)| format!("`{v}`"))
                .collect::<Vec<_>>()
                .join(" or ");
        }
        return name.to_string();
    }
    let values = enum_values(doc, v);
    if !values.is_empty() {
        return values
            .iter()
            .map(|(v, _)| format!("`{v}`"))
            .collect::<Vec<_>>()
            .join(" or ");
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(alts) = v.get(key).and_then(Value::as_array) {
            let joiner = if key == "allOf" { " and " } else { " or " };
            return alts
                .iter()
                .map(|a| type_of(doc, a))
                .collect::<Vec<_>>()
                .join(joiner);
        }
    }
    match &v["type"] {
        Value::String(t) => one_type(doc, v, t),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .map(|t| one_type(doc, v, t))
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "any".to_string(),
    }
}

/// One JSON type of `v`, with its items, values or format.
fn one_type(doc: &Value, v: &Value, t: &str) -> String {
    match t {
        "array" => match v.get("items") {
            Some(items) => format!("array of {}", type_of(doc, items)),
            None => "array".into(),
        },
        "object" => match v.get("additionalProperties") {
            Some(a) if a.is_object() => format!("map of {}", type_of(doc, a)),
            _ => "object".into(),
        },
        _ => match v.get("format").and_then(Value::as_str) {
            Some(f) => format!("{t} ({f})"),
            None => t.to_string(),
        },
    }
}

/// An enum's values with their descriptions (`enum`, or `oneOf` consts).
fn enum_values(doc: &Value, v: &Value) -> Vec<(String, String)> {
    if let Some(values) = v.get("enum").and_then(Value::as_array) {
        return values.iter().map(|e| (text(e), String::new())).collect();
    }
    if let Some(c) = v.get("const") {
        return vec![(text(c), text(&v["description"]))];
    }
    let Some(alts) = v.get("oneOf").and_then(Value::as_array) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for a in alts {
        let a = resolve(doc, a);
        if a.get("const").is_none() && a.get("enum").is_none() {
            return Vec::new();
        }
        let mut vals = enum_values(doc, a);
        let desc = text(&a["description"]);
        for (_, d) in vals.iter_mut() {
            if d.is_empty() {
                d.clone_from(&desc);
            }
        }
        out.extend(vals);
    }
    out
}

/// A cheap example value: the required fields, with placeholders.
fn example_of(doc: &Value, v: &Value, depth: usize) -> Value {
    let s = resolve(doc, v);
    if let Some((first, _)) = enum_values(doc, s).into_iter().next() {
        return json!(first);
    }
    if depth > MAX_DEPTH {
        return Value::Null;
    }
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        let mut obj = Map::new();
        for key in s["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if let Some(p) = props.get(key) {
                let mut value = example_of(doc, p, depth + 1);
                if value == json!("…") {
                    value = json!(format!("<{key}>"));
                }
                obj.insert(key.to_string(), value);
            }
        }
        return Value::Object(obj);
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(first) = s.get(key).and_then(Value::as_array).and_then(|a| a.first()) {
            return example_of(doc, first, depth + 1);
        }
    }
    let t = match &s["type"] {
        Value::Array(ts) => ts
            .iter()
            .find(|t| *t != "null")
            .cloned()
            .unwrap_or(Value::Null),
        t => t.clone(),
    };
    match t.as_str() {
        Some("string") => json!("…"),
        Some("integer") | Some("number") => json!(1),
        Some("boolean") => json!(false),
        Some("array") => json!([]),
        Some("object") => json!({}),
        _ => Value::Null,
    }
}

/// The permission an operation needs, as Markdown.
fn permission(op: &Value, none: &str) -> String {
    match op.get(PERMISSION_EXTENSION).and_then(Value::as_str) {
        Some(p) => format!("`{p}`"),
        None => none.to_string(),
    }
}

/// `401: the token …` → (`401`, `the token …`).
pub(super) fn split_status(description: &str) -> (String, &str) {
    let digits: String = description
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    if digits.len() == 3 {
        let rest = description[3..].trim_start();
        let rest = match rest.strip_prefix('(') {
            Some(r) => r.split_once(')').map_or(rest, |(_, after)| after),
            None => rest,
        };
        return (digits, rest.trim_start_matches([':', ' ']));
    }
    (String::new(), description)
}

/// A string value's text (other values as JSON), one line.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.split_whitespace().collect::<Vec<_>>().join(" "),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Text fit for a table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}
