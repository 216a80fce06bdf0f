//! Validation against the strict Kubernetes v1.32.2 JSON schemas in `tests/fixtures/k8s-schemas/`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;

pub fn schema_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/k8s-schemas/v1.32.2")
}

pub fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/k8s-examples")
}

/// Reads a JSON file of `tests/fixtures/k8s-examples/`.
pub fn example(name: &str) -> Value {
    let path = examples_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn validator(schema_file: &str) -> Arc<jsonschema::Validator> {
    // Building the pod validator takes a while in a debug build; every test shares one.
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<jsonschema::Validator>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    cache
        .entry(schema_file.to_string())
        .or_insert_with(|| {
            let path = schema_dir().join(schema_file);
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let schema: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            Arc::new(
                jsonschema::options()
                    .should_validate_formats(true)
                    .build(&schema)
                    .unwrap_or_else(|e| panic!("{schema_file}: {e}")),
            )
        })
        .clone()
}

/// The schema errors of `document` against `schema_file`, one line each.
pub fn errors(schema_file: &str, document: &Value) -> Vec<String> {
    validator(schema_file)
        .iter_errors(document)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

/// Like `errors`, and also requires the `kind` and `apiVersion` the strict schemas let pass
/// when missing.
pub fn object_errors(schema_file: &str, kind: &str, api_version: &str, document: &Value) -> Vec<String> {
    // A kind without a schema file (Event) is checked by hand where it is received.
    let mut problems = if schema_file.is_empty() {
        Vec::new()
    } else {
        errors(schema_file, document)
    };
    if document.get("kind").and_then(Value::as_str) != Some(kind) {
        problems.push(format!(
            "kind must be {kind:?}, found {}",
            document.get("kind").unwrap_or(&Value::Null)
        ));
    }
    if document.get("apiVersion").and_then(Value::as_str) != Some(api_version) {
        problems.push(format!(
            "apiVersion must be {api_version:?}, found {}",
            document.get("apiVersion").unwrap_or(&Value::Null)
        ));
    }
    problems
}

/// Panics with every schema error of `document`.
#[track_caller]
pub fn assert_valid(schema_file: &str, kind: &str, api_version: &str, document: &Value) {
    let problems = object_errors(schema_file, kind, api_version, document);
    assert!(
        problems.is_empty(),
        "{kind} does not match {schema_file}:\n{}\n{document:#}",
        problems.join("\n")
    );
}
