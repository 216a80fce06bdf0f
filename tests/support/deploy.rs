//! `deploy.yaml`, read as the API server would, and the permissions its Role grants.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

use super::fake_kube::RecordedRequest;

pub fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy.yaml")
}

/// Every document of a YAML stream, as JSON.
pub fn parse_documents(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|document| {
            let value: serde_yaml_ng::Value = serde::Deserialize::deserialize(document).expect("valid YAML");
            serde_json::to_value(value).expect("YAML that is JSON")
        })
        .filter(|document| !document.is_null())
        .collect()
}

pub fn documents() -> Vec<Value> {
    parse_documents(&std::fs::read_to_string(path()).expect("read deploy.yaml"))
}

/// `(API group, resource, verb)`, as an RBAC rule grants it.
pub type Permission = (String, String, String);

/// What the Role of deploy.yaml grants, rule by rule expanded.
pub fn role_permissions() -> BTreeSet<Permission> {
    let role = documents()
        .into_iter()
        .find(|d| d["kind"] == "Role")
        .expect("a Role in deploy.yaml");
    let mut granted = BTreeSet::new();
    for rule in role["rules"].as_array().expect("rules") {
        let list = |field: &str| -> Vec<String> {
            rule[field]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                .unwrap_or_default()
        };
        for group in list("apiGroups") {
            for resource in list("resources") {
                for verb in list("verbs") {
                    granted.insert((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    granted
}

/// The permission a request needs (`None` for discovery and other non-resource paths).
pub fn permission_of(request: &RecordedRequest) -> Option<Permission> {
    let parts: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", "v1", "namespaces", _, rest @ ..] => ("", rest),
        ["apis", group, "v1", "namespaces", _, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let (resource, named) = match rest {
        [resource] => (*resource, false),
        [resource, _] => (*resource, true),
        _ => return None,
    };
    let verb = match (request.method.as_str(), named) {
        ("GET", true) => "get",
        ("GET", false) if request.query.contains("watch=") => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("DELETE", _) => "delete",
        ("PATCH", _) => "patch",
        ("PUT", _) => "update",
        _ => return None,
    };
    Some((group.to_string(), resource.to_string(), verb.to_string()))
}
