//! # powernode-schemas — the checked-in description of every event kind
//!
//! For every kind in the events crate's kind table, and every schema version
//! it ever had (current and legacy), this crate generates:
//!
//! * `<kind>/v<N>.schema.json` — a JSON Schema (draft 2020-12) of the payload
//!   exactly as it sits in the envelope's `payload` field, generated from the
//!   Rust type, with `$id` and `title` naming the kind and version;
//! * for the current version, `<kind>/v<N>.example.cbor` — the canonical
//!   CBOR of the kind's example envelope (`powernode_events::examples`) —
//!   and `<kind>/v<N>.example.json`, the same envelope as JSON for humans;
//! * `index.json` — every kind with its versions and files.
//!
//! Paths are relative to this crate's directory. [`generate`] is pure;
//! [`drift`] compares it with what is on disk and [`write()`] brings the disk
//! up to date. `cargo run -p powernode-schemas` writes, `--check` reports,
//! and `tests/drift.rs` fails on any difference.
//!
//! Output is byte-stable: JSON object keys are sorted, files end with a
//! newline, examples use fixed ids and timestamps.

#![warn(missing_docs)]

use powernode_events::examples::{example_envelope, example_payloads};
use powernode_events::kinds::{current_schemas, ALL_KINDS};
use powernode_events::upcast::legacy::legacy_schemas;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

/// The command that regenerates the checked-in files.
pub const REGENERATE: &str = "cargo run -p powernode-schemas";

/// How the canonical CBOR differs from the JSON form the schemas describe.
pub const ENCODING_NOTE: &str = "Schemas describe the payload in its JSON form (the API, \
`events tail -o json`, *.example.json). The canonical CBOR (*.example.cbor) carries the same \
fields in the same order and the same types (addresses and prefixes are text in both). In the \
envelope, id, correlation_id and causation_id are 16-byte byte strings, occurred_at is integer \
nanoseconds since the Unix epoch and signature a 64-byte byte string.";

/// The top-level file listing every kind and version.
pub const INDEX_FILE: &str = "index.json";

/// The `$id` of a kind's schema at a version.
pub fn schema_id(kind: &str, version: u16) -> String {
    format!("urn:powernode:event:{kind}:v{version}")
}

/// `<kind>/v<N>.schema.json`.
pub fn schema_path(kind: &str, version: u16) -> PathBuf {
    Path::new(kind).join(format!("v{version}.schema.json"))
}

/// `<kind>/v<N>.example.cbor`.
pub fn example_cbor_path(kind: &str, version: u16) -> PathBuf {
    Path::new(kind).join(format!("v{version}.example.cbor"))
}

/// `<kind>/v<N>.example.json`.
pub fn example_json_path(kind: &str, version: u16) -> PathBuf {
    Path::new(kind).join(format!("v{version}.example.json"))
}

/// This crate's directory, where the generated files are checked in.
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every generated file: path relative to the crate directory → bytes.
pub fn generate() -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    // kind → (current version, Rust type, versions with a schema)
    let mut index: BTreeMap<&str, (u16, &str, BTreeSet<u16>)> = ALL_KINDS
        .iter()
        .map(|k| (k.kind, (k.version, k.type_name, BTreeSet::new())))
        .collect();

    for (kind, version, schema) in current_schemas().into_iter().chain(legacy_schemas()) {
        files.insert(
            schema_path(kind, version),
            pretty(&canonical(annotate(kind, version, schema.to_value()))),
        );
        if let Some((_, _, versions)) = index.get_mut(kind) {
            versions.insert(version);
        }
    }

    for payload in example_payloads() {
        let envelope = example_envelope(payload);
        let (kind, version) = (envelope.kind(), envelope.schema_version());
        let cbor = envelope
            .encode()
            .expect("examples encode: the events crate's round-trip test covers every one");
        files.insert(example_cbor_path(kind, version), cbor);
        // Serialized straight from the envelope: fields in declaration order.
        let mut as_json = serde_json::to_vec_pretty(&envelope)
            .expect("an envelope is always representable as JSON");
        as_json.push(b'\n');
        files.insert(example_json_path(kind, version), as_json);
    }

    let kinds: Vec<Value> = index
        .into_iter()
        .map(|(kind, (current, rust_type, versions))| {
            let versions: Vec<Value> = versions
                .into_iter()
                .map(|v| {
                    let mut entry = json!({
                        "version": v,
                        "schema": slash(&schema_path(kind, v)),
                    });
                    if v == current {
                        entry["example_cbor"] = slash(&example_cbor_path(kind, v)).into();
                        entry["example_json"] = slash(&example_json_path(kind, v)).into();
                    }
                    entry
                })
                .collect();
            json!({
                "kind": kind,
                "current_version": current,
                "rust_type": rust_type,
                "versions": versions,
            })
        })
        .collect();
    let index = json!({
        "description": "Every powernode event kind and the schema versions it has had. \
                        Generated; do not edit.",
        "encoding_note": ENCODING_NOTE,
        "regenerate_with": REGENERATE,
        "kinds": kinds,
    });
    files.insert(PathBuf::from(INDEX_FILE), pretty(&canonical(index)));
    files
}

/// Adds `$id`, `title` and the powernode annotations to a generated schema.
fn annotate(kind: &str, version: u16, schema: Value) -> Value {
    let Value::Object(mut obj) = schema else {
        // schemars only produces bare booleans for `any`/`never`; no payload is one.
        return schema;
    };
    if let Some(Value::String(rust_type)) = obj.remove("title") {
        obj.insert("x-rust-type".into(), rust_type.into());
    }
    obj.insert("$id".into(), schema_id(kind, version).into());
    obj.insert("title".into(), format!("{kind} v{version}").into());
    obj.insert("x-powernode-kind".into(), kind.into());
    obj.insert("x-powernode-schema-version".into(), version.into());
    Value::Object(obj)
}

/// The same JSON with every object's keys in sorted order, whatever
/// `serde_json` features the build enabled.
fn canonical(value: Value) -> Value {
    match value {
        Value::Object(obj) => {
            let sorted: BTreeMap<String, Value> =
                obj.into_iter().map(|(k, v)| (k, canonical(v))).collect();
            Value::Object(sorted.into_iter().collect::<Map<_, _>>())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

/// Pretty JSON with a trailing newline.
fn pretty(value: &Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(value).expect("a JSON value always serializes");
    out.push(b'\n');
    out
}

/// A relative path with `/` separators (for `index.json`).
fn slash(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// One way the files on disk differ from [`generate`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Drift {
    /// Generated but not on disk.
    Missing(PathBuf),
    /// On disk with different bytes.
    Changed(PathBuf),
    /// On disk in a generated place, but no longer generated.
    Stale(PathBuf),
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing(p) => write!(f, "missing: {}", p.display()),
            Self::Changed(p) => write!(f, "changed: {}", p.display()),
            Self::Stale(p) => write!(f, "stale:   {}", p.display()),
        }
    }
}

/// True for a top-level directory that holds a kind's generated files:
/// kinds are dotted tokens (`system.k3s.module.assigned`); crate folders
/// (`src`, `tests`) are not, and hidden ones (`.vscode`) are never touched.
fn is_kind_dir(name: &str) -> bool {
    !name.starts_with('.')
        && name.contains('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Every file in a generated place under `dir` (relative paths): `index.json`
/// and everything inside kind directories.
pub fn files_on_disk(dir: &Path) -> io::Result<BTreeSet<PathBuf>> {
    let mut out = BTreeSet::new();
    if dir.join(INDEX_FILE).is_file() {
        out.insert(PathBuf::from(INDEX_FILE));
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_dir() && is_kind_dir(&name) {
            collect(dir, &entry.path(), &mut out)?;
        }
    }
    Ok(out)
}

fn collect(root: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect(root, &path, out)?;
        } else {
            let rel = path
                .strip_prefix(root)
                .expect("walked paths are under the root")
                .to_path_buf();
            out.insert(rel);
        }
    }
    Ok(())
}

/// How the files under `dir` differ from `expected`, sorted by path.
pub fn drift(dir: &Path, expected: &BTreeMap<PathBuf, Vec<u8>>) -> io::Result<Vec<Drift>> {
    let mut out = Vec::new();
    for (rel, bytes) in expected {
        match std::fs::read(dir.join(rel)) {
            Ok(on_disk) if &on_disk == bytes => {}
            Ok(_) => out.push(Drift::Changed(rel.clone())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => out.push(Drift::Missing(rel.clone())),
            Err(e) => return Err(e),
        }
    }
    for rel in files_on_disk(dir)? {
        if !expected.contains_key(&rel) {
            out.push(Drift::Stale(rel));
        }
    }
    out.sort();
    Ok(out)
}

/// Brings `dir` in line with `expected`: writes missing and changed files,
/// deletes stale ones (and kind directories left empty). Returns what it did.
pub fn write(dir: &Path, expected: &BTreeMap<PathBuf, Vec<u8>>) -> io::Result<Vec<Drift>> {
    let changes = drift(dir, expected)?;
    for change in &changes {
        match change {
            Drift::Missing(rel) | Drift::Changed(rel) => {
                let path = dir.join(rel);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(&path, &expected[rel])?;
            }
            Drift::Stale(rel) => {
                std::fs::remove_file(dir.join(rel))?;
                // Remove now-empty directories up to the kind directory.
                let mut parent = rel.parent();
                while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
                    if std::fs::remove_dir(dir.join(p)).is_err() {
                        break;
                    }
                    parent = p.parent();
                }
            }
        }
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_kind_shaped_directories_are_generated_places() {
        assert!(is_kind_dir("system.k3s.module.assigned"));
        assert!(is_kind_dir("sdwan.vip_holder_silent"));
        for other in [
            "src",
            "tests",
            "target",
            ".vscode",
            ".git",
            "notes.d/x",
            "a b.c",
        ] {
            assert!(!is_kind_dir(other), "{other}");
        }
    }

    #[test]
    fn generation_is_byte_stable() {
        assert_eq!(generate(), generate());
    }
}
