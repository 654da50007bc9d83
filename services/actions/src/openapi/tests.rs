//! The document is made, holds every action, and `docs/api.md` is current.

use super::*;
use std::path::PathBuf;

fn api_md() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/api.md")
}

#[test]
fn openapi_document_has_every_action_and_resolves_every_ref() {
    let doc = document("0.0.0-test");
    assert_eq!(doc["openapi"], "3.1.0");
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in crate::NAMES {
        let op = &doc["paths"][format!("/v1/actions/{name}")]["post"];
        assert_eq!(op["operationId"], *name, "{name} has no path");
        assert!(op["responses"]["200"].is_object(), "{name}");
    }
    // Every reference points at a component that exists.
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(o) => {
                if let Some(Value::String(r)) = o.get("$ref") {
                    out.push(r);
                }
                o.values().for_each(|c| refs(c, out));
            }
            Value::Array(a) => a.iter().for_each(|c| refs(c, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r
            .strip_prefix(components::REF_PREFIX)
            .unwrap_or_else(|| panic!("{r} is no component reference"));
        assert!(schemas.contains_key(name), "{r} points at nothing");
    }
}

#[test]
fn openapi_error_codes_are_listed_under_their_status() {
    let doc = document("0.0.0-test");
    for action in ActionName::ALL {
        let responses = &doc["paths"][format!("/v1/actions/{action}")]["post"]["responses"];
        for code in ErrorCode::ANY_ACTION.iter().chain(action.errors()) {
            let listed = &responses[code.status().to_string()]["x-powernode-error-codes"];
            assert!(
                listed.as_array().unwrap().contains(&json!(code.as_str())),
                "{action}: {code} not under {}",
                code.status()
            );
            let schema = &responses[code.status().to_string()]["content"]["application/json"]
                ["schema"]["allOf"][1]["properties"]["error"]["properties"]["code"]["enum"];
            assert!(schema.as_array().unwrap().contains(&json!(code.as_str())));
        }
    }
}

#[test]
fn openapi_duplicate_schema_names_are_refused() {
    let mut c = Components::default();
    c.insert_own("X", json!({"type": "string"})).unwrap();
    c.insert_own("X", json!({"type": "string"})).unwrap();
    let e = c.insert_own("X", json!({"type": "integer"})).unwrap_err();
    assert_eq!(e.name, "X");
    assert!(e.to_string().contains("defined twice"), "{e}");
}

#[test]
fn openapi_docs_api_md_is_current() {
    let made = markdown(&document(env!("CARGO_PKG_VERSION")));
    let path = api_md();
    if std::env::var_os("POWERNODE_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &made).unwrap();
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if current != made {
        let line = current
            .lines()
            .zip(made.lines())
            .position(|(a, b)| a != b)
            .map_or(current.lines().count().min(made.lines().count()) + 1, |n| {
                n + 1
            });
        panic!(
            "{} is not what the generator makes from the action table now (first \
             difference at line {line}); regenerate it with `{}` and commit it",
            path.display(),
            markdown::REGENERATE
        );
    }
}
