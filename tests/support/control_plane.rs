//! The real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager), started by
//! `tests/control-plane/control-plane.sh` once per test binary and stopped when it exits, and
//! an admin client for it.
//!
//! There is no kubelet and no scheduler: tests write a pod's status through the `pods/status`
//! subresource, as a kubelet would.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/control-plane/control-plane.sh");

pub struct ControlPlane {
    pub dir: PathBuf,
    pub api_url: String,
    pub ca_file: PathBuf,
    token: String,
    agent: ureq::Agent,
    /// The tests of this tier take turns: one restarts the API server, others count objects.
    turn: Mutex<()>,
}

/// An answer of the API server.
#[derive(Debug)]
pub struct Reply {
    pub code: u16,
    pub body: Value,
}

/// The shared control plane, or `None` with a one-line reason where it is not built. CI sets
/// `REQUIRE_CONTROL_PLANE=1`, so that there it fails instead of skipping.
pub fn control_plane() -> Option<&'static ControlPlane> {
    static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
    match SHARED.get_or_init(ControlPlane::start) {
        Ok(control_plane) => Some(control_plane),
        Err(why) if std::env::var_os("REQUIRE_CONTROL_PLANE").is_none() => {
            eprintln!("skipping: {why}");
            None
        }
        Err(why) => panic!("{why}"),
    }
}

impl ControlPlane {
    fn start() -> Result<ControlPlane, String> {
        let bin = Command::new("bash")
            .args([SCRIPT, "bin"])
            .output()
            .map_err(|e| format!("cannot run {SCRIPT}: {e}"))?;
        let bin = PathBuf::from(String::from_utf8_lossy(&bin.stdout).trim());
        for name in ["etcd", "kube-apiserver", "kube-controller-manager"] {
            if !bin.join(name).exists() {
                return Err(format!(
                    "the control plane is not built ({} missing; bash tests/control-plane/control-plane.sh build)",
                    bin.join(name).display()
                ));
            }
        }
        let dir = super::temp_dir("control-plane");
        let output = Command::new("bash")
            .args([SCRIPT, "start"])
            .arg(&dir)
            .env("ETCD_PORT", super::free_port().to_string())
            .env("ETCD_PEER_PORT", super::free_port().to_string())
            .env("APISERVER_PORT", super::free_port().to_string())
            .env("WATCH_PID", std::process::id().to_string())
            .output()
            .map_err(|e| format!("cannot run {SCRIPT}: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "the control plane did not start: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let env = std::fs::read_to_string(dir.join("env")).map_err(|e| e.to_string())?;
        let value = |name: &str| {
            env.lines()
                .find_map(|line| line.strip_prefix(&format!("{name}=")))
                .map(str::to_string)
                .unwrap_or_default()
        };
        let ca_file = PathBuf::from(value("CA_FILE"));
        let token = std::fs::read_to_string(value("ADMIN_TOKEN_FILE")).map_err(|e| e.to_string())?;
        let ca = std::fs::read(&ca_file).map_err(|e| e.to_string())?;
        let tls = openhands_k8s_runtime::testing::tls_trusting(openhands_k8s_runtime::testing::certificates_in(&ca));
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .tls_config(tls)
            .build()
            .into();
        Ok(ControlPlane {
            api_url: value("API_URL"),
            dir,
            ca_file,
            token: token.trim().to_string(),
            agent,
            turn: Mutex::new(()),
        })
    }

    /// Holds the control plane for one test at a time.
    pub fn turn(&self) -> MutexGuard<'_, ()> {
        self.turn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops the API server and starts it again on the same etcd.
    pub fn restart_apiserver(&self) {
        let output = Command::new("bash")
            .args([SCRIPT, "restart-apiserver"])
            .arg(&self.dir)
            .output()
            .expect("run the control-plane script");
        assert!(
            output.status.success(),
            "the API server did not come back: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The status code of a GET with another bearer token.
    pub fn status_as(&self, token: &str, path: &str) -> u16 {
        let request = ureq::http::Request::builder()
            .uri(format!("{}{path}", self.api_url))
            .header("Authorization", format!("Bearer {token}"))
            .body(())
            .unwrap();
        self.agent.run(request).map_or(0, |r| r.status().as_u16())
    }

    /// A request as the cluster's administrator.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>, content_type: &str) -> Reply {
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.api_url))
            .header("Authorization", format!("Bearer {}", self.token))
            .header("Accept", "application/json");
        let response = match body {
            Some(body) => self.agent.run(
                request
                    .header("Content-Type", content_type)
                    .body(body.to_string())
                    .unwrap(),
            ),
            None => self.agent.run(request.body(()).unwrap()),
        };
        let mut response = response.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let text = response.body_mut().read_to_string().unwrap_or_default();
        Reply {
            code: response.status().as_u16(),
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        self.call("GET", path, None, "")
    }

    pub fn post(&self, path: &str, body: &Value) -> Reply {
        self.call("POST", path, Some(body), "application/json")
    }

    pub fn merge_patch(&self, path: &str, body: &Value) -> Reply {
        self.call("PATCH", path, Some(body), "application/merge-patch+json")
    }

    pub fn delete(&self, path: &str) -> Reply {
        self.call("DELETE", path, None, "")
    }

    /// Creates an object and insists that the server took it.
    pub fn create(&self, collection: &str, object: &Value) -> Value {
        let reply = self.post(collection, object);
        assert_eq!(reply.code, 201, "POST {collection}: {:#}", reply.body);
        reply.body
    }

    /// A namespace of its own for a test, optionally with labels; the service account
    /// controller gives it its `default` account, which pod admission needs.
    pub fn namespace(&self, name: &str, labels: Value) -> String {
        self.create(
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}),
        );
        self.wait_for(&format!("the default service account of {name}"), || {
            self.get(&format!("/api/v1/namespaces/{name}/serviceaccounts/default"))
                .code
                == 200
        });
        name.to_string()
    }

    /// The items of a list, e.g. `/api/v1/namespaces/x/pods?labelSelector=...`.
    pub fn items(&self, path: &str) -> Vec<Value> {
        let reply = self.get(path);
        assert_eq!(reply.code, 200, "GET {path}: {:#}", reply.body);
        reply.body["items"].as_array().cloned().unwrap_or_default()
    }

    /// A token for a service account from the TokenRequest API, bound to `secret` when given
    /// (deleting that Secret then revokes the token).
    pub fn token_for(&self, namespace: &str, account: &str, bound_to: Option<&Value>) -> String {
        let mut spec = json!({"expirationSeconds": 3600});
        if let Some(secret) = bound_to {
            spec["boundObjectRef"] = json!({
                "kind": "Secret", "apiVersion": "v1",
                "name": secret["metadata"]["name"], "uid": secret["metadata"]["uid"],
            });
        }
        let reply = self.post(
            &format!("/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token"),
            &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}),
        );
        assert_eq!(reply.code, 201, "TokenRequest: {:#}", reply.body);
        reply.body["status"]["token"].as_str().expect("a token").to_string()
    }

    /// Writes a pod's status as the kubelet would (the `pods/status` subresource).
    pub fn set_pod_status(&self, namespace: &str, name: &str, status: Value) -> Value {
        let path = format!("/api/v1/namespaces/{namespace}/pods/{name}/status");
        let reply = self.merge_patch(&path, &json!({"status": status}));
        assert_eq!(reply.code, 200, "PATCH {path}: {:#}", reply.body);
        reply.body
    }

    /// Polls `condition` for up to a minute.
    pub fn wait_for(&self, what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !condition() {
            assert!(Instant::now() < deadline, "{what}: not within a minute");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The files the service needs to reach this API server with `token`.
    pub fn service_env(&self, dir: &Path, namespace: &str, token: &str) -> Vec<(String, String)> {
        std::fs::write(dir.join("token"), token).expect("write the token");
        [
            ("KUBE_API_URL", self.api_url.clone()),
            ("KUBE_CA_FILE", self.ca_file.display().to_string()),
            ("KUBE_TOKEN_FILE", dir.join("token").display().to_string()),
            ("NAMESPACE", namespace.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// A pod status the kubelet would write for a running container that is `ready` or not.
pub fn running_status(ready: bool) -> Value {
    let now = "2026-01-01T00:00:00Z";
    let flag = if ready { "True" } else { "False" };
    json!({
        "phase": "Running",
        "podIP": "10.244.0.10",
        "startTime": now,
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": flag, "lastTransitionTime": now},
            {"type": "Ready", "status": flag, "lastTransitionTime": now},
        ],
        "containerStatuses": [{
            "name": "agent", "image": "ghcr.io/openhands/agent-server:test", "imageID": "",
            "ready": ready, "restartCount": 0, "started": true,
            "state": {"running": {"startedAt": now}},
        }],
    })
}
