//! The kinds of object the service manages, named as the REST API names them, and the
//! ownership that ties a runtime's objects to its anchor.

use serde_json::{Value, json};

/// The kinds of object the service manages, named by their REST resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    Pods,
    Services,
    Secrets,
    PersistentVolumeClaims,
    Ingresses,
    NetworkPolicies,
    /// core/v1 Events, which the service only creates.
    Events,
}

impl Resource {
    pub const ALL: [Resource; 7] = [
        Resource::Pods,
        Resource::Services,
        Resource::Secrets,
        Resource::PersistentVolumeClaims,
        Resource::Ingresses,
        Resource::NetworkPolicies,
        Resource::Events,
    ];

    /// The plural name in URLs and RBAC rules.
    pub fn plural(self) -> &'static str {
        match self {
            Resource::Pods => "pods",
            Resource::Services => "services",
            Resource::Secrets => "secrets",
            Resource::PersistentVolumeClaims => "persistentvolumeclaims",
            Resource::Ingresses => "ingresses",
            Resource::NetworkPolicies => "networkpolicies",
            Resource::Events => "events",
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Resource::Pods => "Pod",
            Resource::Services => "Service",
            Resource::Secrets => "Secret",
            Resource::PersistentVolumeClaims => "PersistentVolumeClaim",
            Resource::Ingresses => "Ingress",
            Resource::NetworkPolicies => "NetworkPolicy",
            Resource::Events => "Event",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Resource::Ingresses | Resource::NetworkPolicies => "networking.k8s.io/v1",
            _ => "v1",
        }
    }

    /// `/api/v1` for the core group, `/apis/{group}/{version}` for the others.
    pub(super) fn group_version_path(self) -> String {
        match self.api_version() {
            "v1" => "/api/v1".to_string(),
            group_version => format!("/apis/{group_version}"),
        }
    }
}

/// The outcome of a delete: both mean the object is, or is about to be, gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// The API server accepted the delete (a pod may still be terminating).
    Deleted,
    /// There was nothing to delete.
    AlreadyGone,
}

/// An `ownerReference` that makes the garbage collector delete a dependent with `owner`.
pub fn owner_reference(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": true,
        "blockOwnerDeletion": false,
    })
}
