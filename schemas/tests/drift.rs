//! The checked-in schemas and examples must match the Rust types.
//!
//! When a test here fails, run `cargo run -p powernode-schemas` and commit
//! the result (and, if a payload changed shape, bump its version and add an
//! upcaster: see `schemas/README.md`).

use powernode_events::kinds::ALL_KINDS;
use powernode_events::Envelope;
use powernode_schemas::{crate_dir, drift, files_on_disk, generate, REGENERATE};
use serde_json::Value;
use std::path::Path;

#[test]
fn checked_in_files_match_the_rust_types() {
    let drifted = drift(&crate_dir(), &generate()).expect("schemas directory is readable");
    assert!(
        drifted.is_empty(),
        "{} checked-in schema files differ from what the Rust types generate:\n  {}\n\
         Run `{REGENERATE}` and commit the result. If a payload's shape changed, \
         bump its version in events/src/kinds.rs and add an upcaster (schemas/README.md).",
        drifted.len(),
        drifted
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n  "),
    );
}

#[test]
fn every_kind_has_a_schema_for_every_version_and_an_example() {
    let files = generate();
    for k in ALL_KINDS {
        for v in 1..=k.version {
            assert!(
                files.contains_key(&powernode_schemas::schema_path(k.kind, v)),
                "{} v{v} has no schema (current v{}): keep the old type in events' upcast::legacy",
                k.kind,
                k.version
            );
        }
        assert!(files.contains_key(&powernode_schemas::example_cbor_path(k.kind, k.version)));
        assert!(files.contains_key(&powernode_schemas::example_json_path(k.kind, k.version)));
    }
}

#[test]
fn checked_in_cbor_examples_decode_and_reencode_to_the_same_bytes() {
    let dir = crate_dir();
    let examples: Vec<_> = files_on_disk(&dir)
        .unwrap()
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".example.cbor"))
        .collect();
    assert_eq!(
        examples.len(),
        ALL_KINDS.len(),
        "one CBOR example per kind; run `{REGENERATE}`"
    );
    for rel in examples {
        let bytes = std::fs::read(dir.join(&rel)).unwrap();
        let env = Envelope::decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", rel.display()));
        assert_eq!(
            env.encode().unwrap(),
            bytes,
            "{} does not re-encode identically",
            rel.display()
        );
        let (kind, file) = split(&rel);
        assert_eq!(env.kind(), kind, "{}", rel.display());
        assert_eq!(
            file,
            format!("v{}.example.cbor", env.schema_version()),
            "{}",
            rel.display()
        );
    }
}

#[test]
fn json_examples_fit_their_schemas_top_level_fields() {
    // A light check without a validator: every required field is present and
    // every field is declared.
    let dir = crate_dir();
    for k in ALL_KINDS {
        let read = |p: &Path| -> Value {
            serde_json::from_slice(&std::fs::read(dir.join(p)).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        };
        let schema = read(&powernode_schemas::schema_path(k.kind, k.version));
        let example = read(&powernode_schemas::example_json_path(k.kind, k.version));
        assert_eq!(example["kind"], k.kind);
        assert_eq!(schema["x-powernode-kind"], k.kind);
        let payload = example["payload"]
            .as_object()
            .expect("payload is an object");
        let props = schema["properties"]
            .as_object()
            .expect("schema has properties");
        for req in schema["required"].as_array().into_iter().flatten() {
            let req = req.as_str().unwrap();
            assert!(
                payload.contains_key(req),
                "{}: example lacks required {req}",
                k.kind
            );
        }
        for field in payload.keys() {
            assert!(
                props.contains_key(field),
                "{}: {field} is not in the schema",
                k.kind
            );
        }
    }
}

fn split(rel: &Path) -> (String, String) {
    let kind = rel.parent().unwrap().to_string_lossy().into_owned();
    let file = rel.file_name().unwrap().to_string_lossy().into_owned();
    (kind, file)
}
