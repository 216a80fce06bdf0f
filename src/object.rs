//! What the service reads of any Kubernetes object's metadata, and the labels that mark the
//! objects it manages.

use serde_json::Value;

pub const MANAGED_BY: &str = "openhands-k8s-runtime";
/// Selects every object this service manages.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=openhands-k8s-runtime";
/// The label naming the runtime an object belongs to.
pub const RUNTIME_ID_LABEL: &str = "runtime-id";

/// `metadata.name`.
pub fn name(object: &Value) -> Option<&str> {
    object["metadata"]["name"].as_str()
}

/// `metadata.uid`.
pub fn uid(object: &Value) -> Option<&str> {
    object["metadata"]["uid"].as_str()
}

/// `metadata.resourceVersion`.
pub fn resource_version(object: &Value) -> Option<&str> {
    object["metadata"]["resourceVersion"].as_str()
}

/// The runtime an object belongs to, from its label.
pub fn runtime_id(object: &Value) -> Option<&str> {
    object["metadata"]["labels"][RUNTIME_ID_LABEL].as_str()
}

/// Deleted, and waiting for finalizers or (a pod) for its containers to stop: its name is
/// still taken, but it is on its way out.
pub fn is_being_deleted(object: &Value) -> bool {
    !object["metadata"]["deletionTimestamp"].is_null()
}

/// Whether `existing` carries every label that `wanted` asks for (and `wanted` asks for some).
pub fn carries_labels_of(existing: &Value, wanted: &Value) -> bool {
    match wanted["metadata"]["labels"].as_object() {
        Some(labels) if !labels.is_empty() => labels
            .iter()
            .all(|(key, value)| existing["metadata"]["labels"].get(key) == Some(value)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metadata_is_read_where_kubernetes_puts_it() {
        let pod = json!({"metadata": {"name": "runtime-ab", "uid": "u1", "resourceVersion": "7",
            "labels": {RUNTIME_ID_LABEL: "ab", "app": "x"}}});
        assert_eq!(
            (name(&pod), uid(&pod), resource_version(&pod), runtime_id(&pod)),
            (Some("runtime-ab"), Some("u1"), Some("7"), Some("ab"))
        );
        assert!(!is_being_deleted(&pod));
        assert!(is_being_deleted(
            &json!({"metadata": {"deletionTimestamp": "2025-03-04T10:15:03Z"}})
        ));
        assert!(carries_labels_of(&pod, &json!({"metadata": {"labels": {"app": "x"}}})));
        assert!(!carries_labels_of(&pod, &json!({"metadata": {"labels": {"app": "y"}}})));
        assert!(
            !carries_labels_of(&pod, &json!({"metadata": {}})),
            "no labels claim nothing"
        );
    }
}
