//! `components.schemas`: every `$defs` of every schema, under one name
//! each, with `#/$defs/X` references rewritten to `#/components/schemas/X`.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Where component references point.
pub(super) const REF_PREFIX: &str = "#/components/schemas/";

/// A component name two schemas define with different bodies (or a
/// reference the generator cannot place).
#[derive(Debug, Clone, PartialEq)]
pub struct DuplicateSchema {
    /// The component name.
    pub name: String,
    /// Where it was first defined.
    pub first: String,
    /// Where it was defined again, differently.
    pub second: String,
}

impl std::fmt::Display for DuplicateSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "schema name {:?} is defined twice with different bodies: by {} and by {} \
             (rename one of the types, or give it #[schemars(rename = \"…\")])",
            self.name, self.first, self.second
        )
    }
}

impl std::error::Error for DuplicateSchema {}

/// The component schemas gathered so far, and who defined each first.
#[derive(Debug, Default)]
pub(super) struct Components {
    schemas: BTreeMap<String, Value>,
    origin: BTreeMap<String, String>,
}

impl Components {
    /// Adds a root schema (as `schema_for!` makes it) and its `$defs`; the
    /// root itself is named by its `title` when it has one. Answers what
    /// to put where the schema is used: a `$ref`, or the schema inline.
    pub(super) fn add_root(
        &mut self,
        schema: &schemars::Schema,
        origin: &str,
    ) -> Result<Value, DuplicateSchema> {
        let mut root = schema.as_value().clone();
        let defs = match root.as_object_mut() {
            Some(obj) => {
                obj.remove("$schema");
                obj.remove("$defs")
            }
            None => None,
        };
        if let Some(Value::Object(defs)) = defs {
            for (name, mut body) in defs {
                rewrite_refs(&mut body, origin)?;
                self.insert(&name, body, origin)?;
            }
        }
        rewrite_refs(&mut root, origin)?;
        match root
            .get("title")
            .and_then(Value::as_str)
            .map(str::to_string)
        {
            Some(title) => {
                self.insert(&title, root, origin)?;
                Ok(serde_json::json!({ "$ref": format!("{REF_PREFIX}{title}") }))
            }
            None => Ok(root),
        }
    }

    /// Adds a schema written here (already with component references).
    pub(super) fn insert_own(&mut self, name: &str, body: Value) -> Result<(), DuplicateSchema> {
        self.insert(name, body, "the generator")
    }

    /// The schema a `$ref` points to (or the value itself, when inline).
    pub(super) fn resolve<'a>(&'a self, v: &'a Value) -> Option<&'a Value> {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => self.schemas.get(r.strip_prefix(REF_PREFIX)?),
            None => Some(v),
        }
    }

    /// Every component schema, by name.
    pub(super) fn into_schemas(self) -> Map<String, Value> {
        self.schemas.into_iter().collect()
    }

    fn insert(&mut self, name: &str, body: Value, origin: &str) -> Result<(), DuplicateSchema> {
        match self.schemas.get(name) {
            Some(existing) if same_schema(existing, &body) => Ok(()),
            Some(_) => Err(DuplicateSchema {
                name: name.to_string(),
                first: self.origin[name].clone(),
                second: origin.to_string(),
            }),
            None => {
                self.schemas.insert(name.to_string(), body);
                self.origin.insert(name.to_string(), origin.to_string());
                Ok(())
            }
        }
    }
}

/// Equal bodies, a `title` on one side only aside (schemars titles a root
/// schema, not always the same type among `$defs`).
fn same_schema(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("title");
        }
        v
    };
    a == b || strip(a) == strip(b)
}

/// Points every `#/$defs/X` reference at `#/components/schemas/X`; any
/// other local reference (`#`, a nested `$defs`) is refused.
fn rewrite_refs(v: &mut Value, origin: &str) -> Result<(), DuplicateSchema> {
    match v {
        Value::Object(obj) => {
            if let Some(Value::String(r)) = obj.get_mut("$ref") {
                if let Some(name) = r.strip_prefix("#/$defs/") {
                    *r = format!("{REF_PREFIX}{name}");
                } else if !r.starts_with(REF_PREFIX) {
                    return Err(DuplicateSchema {
                        name: r.clone(),
                        first: "a reference the generator cannot place".into(),
                        second: origin.to_string(),
                    });
                }
            }
            for child in obj.values_mut() {
                rewrite_refs(child, origin)?;
            }
            Ok(())
        }
        Value::Array(items) => items.iter_mut().try_for_each(|c| rewrite_refs(c, origin)),
        _ => Ok(()),
    }
}
