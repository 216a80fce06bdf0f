//! A warm runtime's objects (its anchor, dormant pod and the NetworkPolicy that keeps everyone
//! but this service out), the patches that hand them to a session, and the warm runtime read
//! back from its anchor. They are a cold runtime's objects (`manifests`) with a few changes, so
//! that a claimed warm runtime is one like any other.

use std::time::SystemTime;

use serde_json::{Map, Value, json};

use crate::base64;
use crate::config::Config;
use crate::manifests::{self, DESIRED_STATE_ANNOTATION, DESIRED_STATE_SINCE_ANNOTATION, SESSION_KEY_KEY, object_name};
use crate::object::{self, MANAGED_BY};
use crate::runtime::{Desire, DesiredState, Runtime};
use crate::start_request::StartRequest;
use crate::timestamps::parse_rfc3339;

use super::Pool;

/// Marks a warm runtime's anchor, pod and policy with the pool it belongs to.
pub const WARM_POOL_LABEL: &str = "openhands.dev/warm-pool";
/// On a claimed runtime's anchor: the pool it came from.
const CLAIMED_FROM_ANNOTATION: &str = "openhands.dev/claimed-from";
/// The agent server boots dormant, its API closed until `POST /api/init`.
const DEFERRED_INIT_VARIABLE: &str = "OH_DEFERRED_INIT";
/// The key that authorises `POST /api/init` (`X-Init-API-Key`).
const SECRET_KEY_VARIABLE: &str = "OH_SECRET_KEY";

/// An unclaimed runtime of a pool, as its anchor records it.
#[derive(Debug, Clone, PartialEq)]
pub struct WarmRuntime {
    pub id: String,
    pub pool: String,
    pub session_api_key: String,
    pub anchor_uid: String,
    /// The anchor's resourceVersion: the claim is written only over this one.
    pub anchor_version: String,
    /// What its pod was booted from: the pool's request when it was minted.
    pub request: StartRequest,
    pub created_at: SystemTime,
}

/// The pool an object belongs to while it is warm.
pub fn pool_of(object: &Value) -> Option<&str> {
    object["metadata"]["labels"][WARM_POOL_LABEL].as_str()
}

/// A warm runtime's anchor: a cold runtime's, without a session or a desired state.
pub fn anchor(runtime_id: &str, key: &str, pool: &Pool, created_at: SystemTime) -> Result<Value, serde_json::Error> {
    let desired = Desire::new(DesiredState::Running, created_at);
    let mut anchor = manifests::anchor_secret(runtime_id, key, &pool.request, &desired, created_at)?;
    if let Some(annotations) = anchor["metadata"]["annotations"].as_object_mut() {
        annotations.remove(DESIRED_STATE_ANNOTATION);
        annotations.remove(DESIRED_STATE_SINCE_ANNOTATION);
    }
    anchor["metadata"]["labels"][WARM_POOL_LABEL] = json!(pool.name);
    // The pool's variables keep keys of their own: a claim writes the request's beside them,
    // and a claimed pod that restarts boots from the pool's again (and is initialised anew).
    if let Some(data) = anchor["stringData"].as_object_mut() {
        for index in 0..pool.request.environment.len() {
            if let Some(value) = data.remove(&manifests::env_key(index)) {
                data.insert(pool_key(index), value);
            }
        }
    }
    Ok(anchor)
}

/// The anchor's key of the pool's variable number `index`.
fn pool_key(index: usize) -> String {
    format!("pool-{}", manifests::env_key(index))
}

/// A warm runtime's pod: a cold runtime's from the pool's request, its agent dormant and
/// holding the runtime's key for `/api/init` (from the anchor, never in plain text).
pub fn pod(config: &Config, warm: &WarmRuntime) -> Value {
    let mut pod = manifests::pod(config, &warm.id, &warm.request, &warm.anchor_uid);
    pod["metadata"]["labels"][WARM_POOL_LABEL] = json!(warm.pool);
    if let Some(env) = pod["spec"]["containers"][0]["env"].as_array_mut() {
        for index in 0..warm.request.environment.len() {
            let key = manifests::env_key(index);
            for entry in env.iter_mut() {
                if let Some(reference) = entry.pointer_mut("/valueFrom/secretKeyRef/key")
                    && reference.as_str() == Some(key.as_str())
                {
                    *reference = json!(pool_key(index));
                }
            }
        }
        env.push(json!({"name": DEFERRED_INIT_VARIABLE, "value": "true"}));
        env.push(json!({"name": SECRET_KEY_VARIABLE, "valueFrom": {"secretKeyRef":
            {"name": object_name(&warm.id), "key": SESSION_KEY_KEY}}}));
    }
    pod
}

/// A warm runtime's workspace volume, where sandboxes get one: its pod mounts it from boot.
pub fn workspace_claim(config: &Config, warm: &WarmRuntime) -> Option<Value> {
    let mut claim = manifests::workspace_claim(config, &warm.id, "", &warm.anchor_uid)?;
    claim["metadata"]["labels"][WARM_POOL_LABEL] = json!(warm.pool);
    Some(claim)
}

/// Whether a pod's agent boots dormant, waiting for `/api/init`.
pub fn boots_dormant(pod: &Value) -> bool {
    pod["spec"]["containers"][0]["env"].as_array().is_some_and(|env| {
        env.iter()
            .any(|e| e["name"] == DEFERRED_INIT_VARIABLE && e["value"] == "true")
    })
}

/// Until it is claimed, only this service reaches a warm pod (for `/api/init`); it goes out no
/// further than a claimed one will.
pub fn network_policy(config: &Config, warm: &WarmRuntime) -> Value {
    let only_this_service =
        json!([{"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": MANAGED_BY}}}]}]);
    let mut policy = manifests::network_policy(config, &warm.id, "", &warm.anchor_uid).unwrap_or_else(|| {
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": manifests::metadata(&warm.id, "", Some(&warm.anchor_uid)),
            "spec": {
                "podSelector": {"matchLabels": {object::RUNTIME_ID_LABEL: warm.id}},
                "policyTypes": ["Ingress"],
            },
        })
    });
    policy["spec"]["ingress"] = only_this_service;
    policy["metadata"]["labels"][WARM_POOL_LABEL] = json!(warm.pool);
    policy
}

/// Reads a warm runtime back from its anchor (as the API server returns it).
pub fn from_anchor(anchor: &Value) -> Result<WarmRuntime, String> {
    let pool = pool_of(anchor).ok_or("no pool label")?;
    let id = object::runtime_id(anchor).ok_or("no runtime-id label")?;
    let data = |key: &str| -> Result<String, String> {
        let encoded = anchor["data"][key].as_str().ok_or_else(|| format!("no {key}"))?;
        let bytes = base64::decode(encoded).ok_or_else(|| format!("{key} is not base64"))?;
        String::from_utf8(bytes).map_err(|_| format!("{key} is not UTF-8"))
    };
    let request = serde_json::from_str(&data(manifests::REQUEST_KEY)?).map_err(|e| format!("its request: {e}"))?;
    Ok(WarmRuntime {
        id: id.to_string(),
        pool: pool.to_string(),
        session_api_key: data(SESSION_KEY_KEY)?,
        anchor_uid: object::uid(anchor).ok_or("no uid")?.to_string(),
        anchor_version: object::resource_version(anchor)
            .ok_or("no resourceVersion")?
            .to_string(),
        request,
        created_at: anchor["metadata"]["annotations"][manifests::CREATED_AT_ANNOTATION]
            .as_str()
            .and_then(parse_rfc3339)
            .ok_or("no creation time")?,
    })
}

/// The merge patch that gives a warm runtime's anchor to a session: the session, its request
/// and environment, and the desired state of a runtime just started; the anchor's
/// resourceVersion makes the API server refuse it (409) if anyone wrote the anchor since, so
/// a warm runtime never goes to two sessions.
pub fn claim_anchor_patch(warm: &WarmRuntime, runtime: &Runtime) -> Result<Value, serde_json::Error> {
    let claimed = manifests::anchor_secret(
        &runtime.id,
        &runtime.session_api_key,
        &runtime.request,
        &runtime.desired,
        runtime.created_at,
    )?;
    let mut data = Map::new();
    for (key, value) in claimed["stringData"].as_object().into_iter().flatten() {
        data.insert(
            key.clone(),
            json!(base64::encode(value.as_str().unwrap_or_default().as_bytes())),
        );
    }
    let mut metadata = claimed["metadata"].clone();
    metadata["resourceVersion"] = json!(warm.anchor_version);
    metadata["labels"][WARM_POOL_LABEL] = Value::Null;
    metadata["annotations"][CLAIMED_FROM_ANNOTATION] = json!(warm.pool);
    Ok(json!({"metadata": metadata, "data": data}))
}

/// The merge patch that labels a claimed runtime's pod (or any object of it) with its session.
pub fn claim_labels_patch(runtime: &Runtime) -> Value {
    let mut metadata = manifests::metadata(&runtime.id, &runtime.session_id, None);
    metadata["labels"][WARM_POOL_LABEL] = Value::Null;
    json!({"metadata": metadata})
}

/// The merge patch that turns a warm runtime's policy into a claimed runtime's (`None` when
/// sandboxes get no policy: the warm one is deleted).
pub fn claim_policy_patch(config: &Config, runtime: &Runtime) -> Option<Value> {
    let mut policy = manifests::network_policy(config, &runtime.id, &runtime.session_id, &runtime.anchor_uid)?;
    policy["metadata"]["labels"][WARM_POOL_LABEL] = Value::Null;
    Some(policy)
}
