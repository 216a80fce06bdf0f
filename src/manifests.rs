//! The Kubernetes objects of one runtime (API.md §5), built as JSON, and the runtime read back
//! from its anchor.
//!
//! The anchor Secret is created first and owns everything else, so deleting it (or the service
//! dying halfway through a `/start`) never leaves an orphan behind.

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

use serde_json::{Value, json};

use crate::base64;
use crate::config::Config;
use crate::kube::owner_reference;
use crate::names::{RESERVED_ENV, session_host};
use crate::object::{self, MANAGED_BY, RUNTIME_ID_LABEL};
use crate::runtime::{Desire, DesiredState, Runtime};
use crate::start_request::{Command, PullPolicy, StartRequest};
use crate::timestamps::{parse_rfc3339, rfc3339};

pub const SESSION_ID_ANNOTATION: &str = "openhands.dev/session-id";
pub const DESIRED_STATE_ANNOTATION: &str = "openhands.dev/desired-state";
pub const DESIRED_STATE_SINCE_ANNOTATION: &str = "openhands.dev/desired-state-since";
pub const CREATED_AT_ANNOTATION: &str = "openhands.dev/created-at";
pub const PAUSE_REASON_ANNOTATION: &str = "openhands.dev/pause-reason";
/// The agent server's own idle limit, which it reports in `/server_info`.
pub const IDLE_TIMEOUT_VARIABLE: &str = "OH_RUNTIME_IDLE_TIMEOUT_SECONDS";
pub const SESSION_KEY_KEY: &str = "session_api_key";
pub const REQUEST_KEY: &str = "start-request";

const CA_VOLUME: &str = "additional-ca";
const WORKSPACE_VOLUME: &str = "workspace";
const CA_PATH: &str = "/usr/local/share/ca-certificates/additional-ca.crt";
const CONTAINER: &str = "agent";
/// Where the agent server posts its events for the app server.
const WEBHOOKS_VARIABLE: &str = "OH_WEBHOOKS_0_BASE_URL";

/// `runtime-{id}`: the name of every object of a runtime.
pub fn object_name(runtime_id: &str) -> String {
    format!("runtime-{runtime_id}")
}

/// The Secret key that holds the request's environment variable number `index` (in name order).
pub fn env_key(index: usize) -> String {
    format!("env-{index}")
}

fn labels(runtime_id: &str, session_id: &str) -> Value {
    let mut labels = json!({
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app": "openhands-runtime",
        RUNTIME_ID_LABEL: runtime_id,
    });
    // Session ids are valid label values by their own rule; the annotation keeps the original.
    // A warm runtime has no session yet.
    if !session_id.is_empty() && session_id.len() <= 63 {
        labels["session-id"] = json!(session_id);
    }
    labels
}

/// Metadata of a runtime's object; all but the anchor are owned by the anchor (`anchor_uid`).
pub fn metadata(runtime_id: &str, session_id: &str, anchor_uid: Option<&str>) -> Value {
    let mut metadata = json!({
        "name": object_name(runtime_id),
        "labels": labels(runtime_id, session_id),
        "annotations": {},
    });
    if !session_id.is_empty() {
        metadata["annotations"][SESSION_ID_ANNOTATION] = json!(session_id);
    }
    if let Some(uid) = anchor_uid {
        let anchor =
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": object_name(runtime_id), "uid": uid}});
        metadata["ownerReferences"] = json!([owner_reference(&anchor)]);
    }
    metadata
}

/// The anchor: session key, original request and desired state. Values go in `stringData`;
/// the API server stores them base64-encoded under `data`.
pub fn anchor_secret(
    runtime_id: &str,
    session_api_key: &str,
    request: &StartRequest,
    desired: &Desire,
    created_at: SystemTime,
) -> Result<Value, serde_json::Error> {
    let mut string_data = BTreeMap::new();
    string_data.insert(SESSION_KEY_KEY.to_string(), session_api_key.to_string());
    string_data.insert(REQUEST_KEY.to_string(), serde_json::to_string(request)?);
    for (index, value) in request.environment.values().enumerate() {
        string_data.insert(env_key(index), value.clone());
    }
    let mut metadata = metadata(runtime_id, &request.session_id, None);
    metadata["annotations"][DESIRED_STATE_ANNOTATION] = json!(desired.state.as_str());
    metadata["annotations"][DESIRED_STATE_SINCE_ANNOTATION] = json!(rfc3339(desired.since));
    metadata["annotations"][CREATED_AT_ANNOTATION] = json!(rfc3339(created_at));
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "stringData": string_data,
    }))
}

/// Rebuilds a runtime from its anchor as the API server returns it (values base64-encoded
/// under `data`). The error says what is missing or malformed.
pub fn runtime_from_anchor(anchor: &Value) -> Result<Runtime, String> {
    let metadata = &anchor["metadata"];
    let id = object::runtime_id(anchor).ok_or("no runtime-id label")?;
    let data = |key: &str| -> Result<String, String> {
        let encoded = anchor["data"][key]
            .as_str()
            .ok_or_else(|| format!("no {key} in its data"))?;
        let bytes = base64::decode(encoded).ok_or_else(|| format!("{key} is not base64"))?;
        String::from_utf8(bytes).map_err(|_| format!("{key} is not UTF-8"))
    };
    let request: StartRequest =
        serde_json::from_str(&data(REQUEST_KEY)?).map_err(|e| format!("the start request cannot be read: {e}"))?;
    let annotations = &metadata["annotations"];
    let created_at = annotations[CREATED_AT_ANNOTATION]
        .as_str()
        .or(metadata["creationTimestamp"].as_str())
        .and_then(parse_rfc3339)
        .ok_or("no creation time")?;
    Ok(Runtime {
        id: id.to_string(),
        session_id: request.session_id.clone(),
        session_api_key: data(SESSION_KEY_KEY)?,
        anchor_uid: object::uid(anchor).ok_or("no uid")?.to_string(),
        desired: desire_of(anchor).ok_or("no desired state")?,
        request,
        created_at,
        changed_at: Instant::now(),
    })
}

/// What an anchor records as asked of its runtime. An anchor without the time it was asked
/// (an operator wrote the state by hand) counts from the runtime's creation.
pub fn desire_of(anchor: &Value) -> Option<Desire> {
    let annotations = &anchor["metadata"]["annotations"];
    let state = DesiredState::parse(annotations[DESIRED_STATE_ANNOTATION].as_str()?)?;
    let since = [
        &annotations[DESIRED_STATE_SINCE_ANNOTATION],
        &annotations[CREATED_AT_ANNOTATION],
        &anchor["metadata"]["creationTimestamp"],
    ]
    .into_iter()
    .find_map(|time| parse_rfc3339(time.as_str()?))
    .unwrap_or(SystemTime::UNIX_EPOCH);
    let pause_reason = annotations[PAUSE_REASON_ANNOTATION]
        .as_str()
        .filter(|_| state == DesiredState::Paused)
        .map(str::to_string);
    Some(Desire {
        state,
        since,
        pause_reason,
    })
}

/// The merge patch that records what is now asked of the runtime on its anchor (a pause
/// reason is removed when there is none).
pub fn desired_state_patch(desire: &Desire) -> Value {
    json!({"metadata": {"annotations": {
        DESIRED_STATE_ANNOTATION: desire.state.as_str(),
        DESIRED_STATE_SINCE_ANNOTATION: rfc3339(desire.since),
        PAUSE_REASON_ANNOTATION: desire.pause_reason,
    }}})
}

/// `IfNotPresent`, but `Always` for `:latest` or an untagged image (as Kubernetes defaults it).
fn default_pull_policy(image: &str) -> PullPolicy {
    if image.contains('@') {
        return PullPolicy::IfNotPresent;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None => PullPolicy::Always,
        Some(_) => PullPolicy::IfNotPresent,
    }
}

fn env_value(name: &str, value: &str) -> Value {
    json!({"name": name, "value": value})
}

fn env_from_secret(name: &str, secret: &str, key: &str) -> Value {
    json!({"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
}

/// Whether the request's own value of `name` is ignored: the reserved names always, and the
/// webhook address when the operator sets it (`APP_SERVER_URL`, an in-cluster address that beats
/// the app server's public one).
fn service_keeps(config: &Config, name: &str) -> bool {
    RESERVED_ENV.contains(&name) || (name == WEBHOOKS_VARIABLE && config.app_server_url.is_some())
}

/// Where the value of one of a sandbox's variables comes from.
enum Source<'a> {
    /// Written in the pod spec: the service's own settings.
    Plain(String),
    /// The runtime's session key, from its anchor.
    SessionKey,
    /// The request's variable number `index` (in name order), from its anchor.
    Requested { index: usize, value: &'a str },
}

/// The container's environment in the order and with the override rules of API.md §5: the
/// service's variables, then `SANDBOX_ENV`, then the request's (which win on a shared name,
/// except where `service_keeps` it), then the webhook address. No name appears twice.
fn environment_sources<'a>(config: &Config, runtime_id: &str, request: &'a StartRequest) -> Vec<(String, Source<'a>)> {
    let webhooks = config
        .app_server_url
        .as_ref()
        .map(|url| format!("{url}/api/v1/webhooks"));
    let request_sets = |name: &str| request.environment.contains_key(name) && !service_keeps(config, name);
    let ports = config.ports;
    let plain = |name: &str, value: String| (name.to_string(), Source::Plain(value));
    let mut service: Vec<(String, Source)> = vec![
        ("OH_SESSION_API_KEYS_0".into(), Source::SessionKey),
        ("SESSION_API_KEY".into(), Source::SessionKey),
        plain("OH_RUNTIME_ID", runtime_id.to_string()),
        plain("OH_VSCODE_PORT", ports.vscode.to_string()),
        plain("WORKER_1", ports.worker_1.to_string()),
        plain("WORKER_2", ports.worker_2.to_string()),
    ];
    // The agent's side of idle pausing: it reports the limit in /server_info and caps a
    // foreground command below it, since a running command does not reset its idle clock.
    if let Some(limit) = config.lifecycle.idle_pause_after {
        service.push(plain(IDLE_TIMEOUT_VARIABLE, limit.as_secs().max(1).to_string()));
    }
    if let Some(origin) = &config.app_server_public_url {
        service.push(plain("OH_ALLOW_CORS_ORIGINS_0", origin.clone()));
    }
    // Configuration refuses reserved names in SANDBOX_ENV.
    for (name, value) in &config.sandbox_env {
        service.retain(|(existing, _)| existing != name);
        service.push(plain(name, value.clone()));
    }
    // The request's block and the webhook address, which come later, take these names.
    let taken_later = |name: &str| request_sets(name) || (name == WEBHOOKS_VARIABLE && webhooks.is_some());
    service.retain(|(name, _)| !taken_later(name));

    let mut env = service;
    for (index, (name, value)) in request.environment.iter().enumerate() {
        if request_sets(name) {
            env.push((name.clone(), Source::Requested { index, value }));
        }
    }
    if let Some(webhooks) = webhooks {
        env.push(plain(WEBHOOKS_VARIABLE, webhooks));
    }
    env
}

/// The container's `env`: values from the anchor by `secretKeyRef`, never in plain text.
fn environment(config: &Config, runtime_id: &str, request: &StartRequest) -> Vec<Value> {
    let secret = object_name(runtime_id);
    environment_sources(config, runtime_id, request)
        .into_iter()
        .map(|(name, source)| match source {
            Source::Plain(value) => env_value(&name, &value),
            Source::SessionKey => env_from_secret(&name, &secret, SESSION_KEY_KEY),
            Source::Requested { index, .. } => env_from_secret(&name, &secret, &env_key(index)),
        })
        .collect()
}

/// The variables a sandbox of `request` sees, with their values, but for the ones that differ
/// between any two runtimes (the session key and the runtime id).
pub fn shared_environment(config: &Config, request: &StartRequest) -> BTreeMap<String, String> {
    environment_sources(config, "", request)
        .into_iter()
        .filter(|(name, _)| !RESERVED_ENV.contains(&name.as_str()))
        .filter_map(|(name, source)| match source {
            Source::Plain(value) => Some((name, value)),
            Source::Requested { value, .. } => Some((name, value.to_string())),
            Source::SessionKey => None,
        })
        .collect()
}

/// Requested environment names the service ignores, for a warning (never their values).
pub fn ignored_environment(config: &Config, request: &StartRequest) -> Vec<String> {
    request
        .environment
        .keys()
        .filter(|name| service_keeps(config, name))
        .cloned()
        .collect()
}

/// `1000m * f` as a CPU quantity.
fn millicores(amount: f64) -> String {
    format!("{}m", (amount * 1000.0).round().max(1.0) as u64)
}

/// `n Mi * f` as a memory quantity.
fn mebibytes(amount: f64) -> String {
    format!("{}Mi", amount.round().max(1.0) as u64)
}

/// The sandbox pod: the agent container, its security context and runtime class, pull
/// secrets, and the CA and workspace volumes.
pub fn pod(config: &Config, runtime_id: &str, request: &StartRequest, anchor_uid: &str) -> Value {
    let mut spec = json!({
        "containers": [container(config, runtime_id, request)],
        "restartPolicy": "Always",
        "enableServiceLinks": false,
        "automountServiceAccountToken": false,
    });
    if let Some(security) = security_context(request) {
        spec["securityContext"] = security;
    }
    if let Some(class) = runtime_class(config, request) {
        spec["runtimeClassName"] = json!(class);
    }
    if !config.image_pull_secrets.is_empty() {
        let secrets: Vec<Value> = config
            .image_pull_secrets
            .iter()
            .map(|name| json!({"name": name}))
            .collect();
        spec["imagePullSecrets"] = json!(secrets);
    }
    let (volumes, mounts) = volumes(config, runtime_id);
    if !volumes.is_empty() {
        spec["volumes"] = json!(volumes);
        spec["containers"][0]["volumeMounts"] = json!(mounts);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata(runtime_id, &request.session_id, Some(anchor_uid)),
        "spec": spec,
    })
}

/// What shapes a sandbox pod but its environment: two requests with the same shape give the
/// same pod spec but for `env`.
pub fn pod_shape(config: &Config, request: &StartRequest) -> Value {
    let mut spec = pod(config, "", request, "")["spec"].take();
    if let Some(container) = spec["containers"][0].as_object_mut() {
        container.remove("env");
    }
    spec
}

/// The one container: image, command, ports, environment, resources and probes.
///
/// The startup probe asks every second (for up to 5 minutes): the kubelet learns that the agent
/// answers within a second of it doing so, and runs the readiness probe at once, so a sandbox
/// is `running` that much sooner; a 5 s period added 2.5 s to the average cold start. Once
/// started, readiness every 5 s is enough.
fn container(config: &Config, runtime_id: &str, request: &StartRequest) -> Value {
    let ports = config.ports;
    let f = request.resource_factor;
    let mut container = json!({
        "name": CONTAINER,
        "image": request.image,
        "imagePullPolicy": request.image_pull_policy.unwrap_or_else(|| default_pull_policy(&request.image)).as_str(),
        "ports": [
            {"name": "agent", "containerPort": ports.agent, "protocol": "TCP"},
            {"name": "vscode", "containerPort": ports.vscode, "protocol": "TCP"},
            {"name": "worker1", "containerPort": ports.worker_1, "protocol": "TCP"},
            {"name": "worker2", "containerPort": ports.worker_2, "protocol": "TCP"},
        ],
        "env": environment(config, runtime_id, request),
        "resources": {
            "requests": {"cpu": millicores(f), "memory": mebibytes(2048.0 * f)},
            "limits": {"cpu": millicores(2.0 * f), "memory": mebibytes(4096.0 * f)},
        },
        "startupProbe": {"httpGet": {"path": "/alive", "port": ports.agent}, "periodSeconds": 1, "failureThreshold": 300},
        "readinessProbe": {"httpGet": {"path": "/alive", "port": ports.agent}, "periodSeconds": 5, "failureThreshold": 3},
    });
    match &request.command {
        Command::Shell(script) => container["command"] = json!(["/bin/bash", "-c", script]),
        Command::Exec(argv) => container["command"] = json!(argv),
        // The agent-server image's entrypoint serves on 8000 unless told otherwise.
        Command::ImageEntrypoint => container["args"] = json!(["--port", ports.agent.to_string()]),
    }
    if let Some(dir) = &request.working_dir {
        container["workingDir"] = json!(dir);
    }
    container
}

/// The pod's user, group and filesystem group, where the request names them.
fn security_context(request: &StartRequest) -> Option<Value> {
    let security: serde_json::Map<String, Value> = [
        ("runAsUser", request.run_as_user),
        ("runAsGroup", request.run_as_group),
        ("fsGroup", request.fs_group),
    ]
    .into_iter()
    .filter_map(|(field, value)| Some((field.to_string(), json!(value?))))
    .collect();
    (!security.is_empty()).then_some(Value::Object(security))
}

/// The requested class through `RUNTIME_CLASS_MAP` (which may drop it), else `RUNTIME_CLASS`.
fn runtime_class(config: &Config, request: &StartRequest) -> Option<String> {
    match &request.runtime_class {
        Some(requested) => config
            .runtime_class_map
            .get(requested)
            .cloned()
            .unwrap_or_else(|| Some(requested.clone())),
        None => config.runtime_class.clone(),
    }
}

/// The extra CA and the workspace volume, where configured, with their mounts.
fn volumes(config: &Config, runtime_id: &str) -> (Vec<Value>, Vec<Value>) {
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    if let Some((secret, key)) = &config.ca_cert {
        volumes.push(json!({"name": CA_VOLUME, "secret": {"secretName": secret, "items": [{"key": key, "path": "additional-ca.crt"}]}}));
        mounts.push(json!({"name": CA_VOLUME, "mountPath": CA_PATH, "subPath": "additional-ca.crt", "readOnly": true}));
    }
    if let Some(workspace) = &config.workspace {
        volumes
            .push(json!({"name": WORKSPACE_VOLUME, "persistentVolumeClaim": {"claimName": object_name(runtime_id)}}));
        mounts.push(json!({"name": WORKSPACE_VOLUME, "mountPath": workspace.mount_path}));
    }
    (volumes, mounts)
}

/// The runtime's workspace volume, when `WORKSPACE_STORAGE_SIZE` is set.
pub fn workspace_claim(config: &Config, runtime_id: &str, session_id: &str, anchor_uid: &str) -> Option<Value> {
    let workspace = config.workspace.as_ref()?;
    let mut spec = json!({
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": workspace.size}},
    });
    if let Some(class) = &workspace.storage_class {
        spec["storageClassName"] = json!(class);
    }
    Some(json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(runtime_id, session_id, Some(anchor_uid)),
        "spec": spec,
    }))
}

/// The address ranges a sandbox may not reach: the cluster's private networks and the cloud
/// metadata service (link-local), which hands out the node's credentials.
const PRIVATE_RANGES: [&str; 5] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
];

/// The sandbox's NetworkPolicy, unless `SANDBOX_NETWORK_POLICY=false`: in only from the
/// ingress controller and this service; out to the internet, DNS, and the namespaces the
/// operator names, but not to the cluster's private ranges or the metadata address.
pub fn network_policy(config: &Config, runtime_id: &str, session_id: &str, anchor_uid: &str) -> Option<Value> {
    let policy = config.network_policy.as_ref()?;
    let namespace = |name: &str| json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}});
    let mut egress = vec![
        json!({"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": PRIVATE_RANGES}}]}),
        json!({"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}),
    ];
    if !policy.egress_namespaces.is_empty() {
        let to: Vec<Value> = policy.egress_namespaces.iter().map(|n| namespace(n)).collect();
        egress.push(json!({"to": to}));
    }
    Some(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(runtime_id, session_id, Some(anchor_uid)),
        "spec": {
            "podSelector": {"matchLabels": {RUNTIME_ID_LABEL: runtime_id}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [
                namespace(&policy.ingress_namespace),
                {"podSelector": {"matchLabels": {"app.kubernetes.io/name": MANAGED_BY}}},
            ]}],
            "egress": egress,
        },
    }))
}

pub fn service(config: &Config, runtime_id: &str, session_id: &str, anchor_uid: &str) -> Value {
    let ports = config.ports;
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(runtime_id, session_id, Some(anchor_uid)),
        "spec": {
            "type": "ClusterIP",
            "selector": {RUNTIME_ID_LABEL: runtime_id},
            "ports": [
                {"name": "agent", "port": ports.agent, "targetPort": ports.agent, "protocol": "TCP"},
                {"name": "vscode", "port": ports.vscode, "targetPort": ports.vscode, "protocol": "TCP"},
                {"name": "worker1", "port": ports.worker_1, "targetPort": ports.worker_1, "protocol": "TCP"},
                {"name": "worker2", "port": ports.worker_2, "targetPort": ports.worker_2, "protocol": "TCP"},
            ],
        },
    })
}

/// The hosts of a session: `{s}`, `vscode-{s}`, `work-1-{s}`, `work-2-{s}` under BASE_DOMAIN,
/// each with the Service port it leads to.
pub fn hosts(config: &Config, session_id: &str) -> [(String, &'static str); 4] {
    let s = session_host(session_id);
    let base = &config.base_domain;
    [
        (format!("{s}.{base}"), "agent"),
        (format!("vscode-{s}.{base}"), "vscode"),
        (format!("work-1-{s}.{base}"), "worker1"),
        (format!("work-2-{s}.{base}"), "worker2"),
    ]
}

pub fn ingress(config: &Config, runtime_id: &str, session_id: &str, anchor_uid: &str) -> Value {
    let name = object_name(runtime_id);
    let hosts = hosts(config, session_id);
    let rules: Vec<Value> = hosts
        .iter()
        .map(|(host, port)| {
            json!({"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": name, "port": {"name": port}}}}]}})
        })
        .collect();
    let mut metadata = metadata(runtime_id, session_id, Some(anchor_uid));
    // The agent's websockets live as long as a conversation: nginx's 60 s default cuts them.
    let annotations = &mut metadata["annotations"];
    annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"] = json!("3600");
    annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"] = json!("3600");
    annotations["nginx.ingress.kubernetes.io/proxy-body-size"] = json!("0");
    annotations["nginx.ingress.kubernetes.io/websocket-services"] = json!(name);
    for (key, value) in &config.ingress_annotations {
        annotations[key] = json!(value);
    }
    let mut spec = json!({"ingressClassName": config.ingress_class, "rules": rules});
    if let Some(secret) = &config.ingress_tls_secret {
        let tls_hosts: Vec<&str> = hosts.iter().map(|(host, _)| host.as_str()).collect();
        spec["tls"] = json!([{"hosts": tls_hosts, "secretName": secret}]);
    }
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata,
        "spec": spec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_defaults_like_kubernetes() {
        assert_eq!(
            default_pull_policy("ghcr.io/openhands/agent-server:latest-python"),
            PullPolicy::IfNotPresent
        );
        assert_eq!(
            default_pull_policy("ghcr.io/openhands/agent-server:latest"),
            PullPolicy::Always
        );
        assert_eq!(
            default_pull_policy("ghcr.io/openhands/agent-server"),
            PullPolicy::Always
        );
        assert_eq!(default_pull_policy("registry:5000/agent"), PullPolicy::Always);
        assert_eq!(default_pull_policy("registry:5000/agent:1.2"), PullPolicy::IfNotPresent);
        assert_eq!(default_pull_policy("agent@sha256:abc"), PullPolicy::IfNotPresent);
    }

    #[test]
    fn quantities_scale_with_the_factor() {
        assert_eq!(
            (millicores(1.0), mebibytes(2048.0)),
            ("1000m".to_string(), "2048Mi".to_string())
        );
        assert_eq!(
            (millicores(0.5), mebibytes(2048.0 * 0.5)),
            ("500m".to_string(), "1024Mi".to_string())
        );
        assert_eq!(millicores(2.0 * 1.5), "3000m");
    }
}
