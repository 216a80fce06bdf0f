//! What the agent server reads of its environment only when it boots, so what a warm pod must
//! have booted with for a request to claim it; the rest reaches it through `POST /api/init`.
//!
//! From the agent's source, 1.34.0 and 1.58.2: its configuration (`config.py`) is every `OH_*`
//! variable, read once at boot; `/api/init` (`init_router.py`) replaces only the session keys,
//! the secret key, `conversations_path`, `bash_events_dir`, `webhooks`, `web_url` (when unset),
//! `max_concurrent_runs`, and takes CORS origins without effect (CORS is built at boot). Its
//! `env` is applied with `os.environ`, which changes no setting after boot but is what commands
//! in the sandbox inherit. The logger reads `LOG_*`, `DEBUG*`, `CI` and `GITHUB_ACTIONS` on
//! import; the VSCode and desktop services `OPENVSCODE_SERVER_ROOT` and `NOVNC_PORT` as they
//! start; 1.34.0 starts Laminar (`LMNR_*`) at boot; the interpreter reads `PYTHON*`, `LANG`,
//! `LC_*`, `LD_*` and `PATH` before any of it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::config::Config;
use crate::manifests;
use crate::start_request::StartRequest;

const READ_AT_BOOT: [&str; 17] = [
    "DEBUG",
    "DEBUG_LLM",
    "LOG_JSON",
    "LOG_LEVEL",
    "LOG_DIR",
    "LOG_TO_FILE",
    "LOG_AUTO_CONFIG",
    "LOG_BACKUP_COUNT",
    "LOG_ROTATE_WHEN",
    "LOG_RICH_TRACEBACKS",
    "CI",
    "GITHUB_ACTIONS",
    "OPENVSCODE_SERVER_ROOT",
    "NOVNC_PORT",
    "TMUX_TMPDIR",
    "DOCKER_HOST_ADDR",
    "PATH",
];
const READ_AT_BOOT_PREFIXES: [&str; 6] = ["OH_", "LMNR_", "PYTHON", "LANG", "LC_", "LD_"];
/// `OH_*` variables the agent reads from its environment each time it uses them.
const READ_WHEN_USED: [&str; 1] = [manifests::IDLE_TIMEOUT_VARIABLE];
const CONVERSATIONS_PATH: &str = "OH_CONVERSATIONS_PATH";
const BASH_EVENTS_DIR: &str = "OH_BASH_EVENTS_DIR";
const WEBHOOKS_PREFIX: &str = "OH_WEBHOOKS_";

/// Whether the agent reads `name` only at boot, and in no field of `/api/init`.
pub fn read_at_boot(name: &str) -> bool {
    let delivered = READ_WHEN_USED.contains(&name)
        || name == CONVERSATIONS_PATH
        || name == BASH_EVENTS_DIR
        || webhook_index(name).is_some();
    !delivered && (READ_AT_BOOT.contains(&name) || READ_AT_BOOT_PREFIXES.iter().any(|prefix| name.starts_with(prefix)))
}

/// `n` of `OH_WEBHOOKS_{n}_BASE_URL`.
fn webhook_index(name: &str) -> Option<usize> {
    let index = name.strip_prefix(WEBHOOKS_PREFIX)?.strip_suffix("_BASE_URL")?;
    index.bytes().all(|b| b.is_ascii_digit()).then(|| index.parse().ok())?
}

/// Why a sandbox of `request` cannot be a claimed warm pod booted from `pool`; `None` when it
/// can. The pods must be the same but for their environment; every variable the agent reads at
/// boot must be the same (or absent from both); the others are set at claim, so the pool's pods
/// must not have one that the request lacks (`/api/init` sets variables, it cannot unset them).
pub fn mismatch(config: &Config, pool: &StartRequest, request: &StartRequest) -> Option<String> {
    if manifests::pod_shape(config, pool) != manifests::pod_shape(config, request) {
        return Some("its pod would differ (image, command, directory, resources, class or user)".to_string());
    }
    let booted = manifests::shared_environment(config, pool);
    let wanted = manifests::shared_environment(config, request);
    let names: BTreeSet<&String> = booted.keys().chain(wanted.keys()).collect();
    for name in names {
        if name.starts_with(WEBHOOKS_PREFIX) && webhook_index(name).is_none() {
            // Webhooks are replaced whole at init: settings beside their URLs would be lost.
            return Some(format!("{name} is a webhook setting /api/init cannot carry"));
        }
        match (booted.get(name), wanted.get(name)) {
            (booted, wanted) if read_at_boot(name) && booted != wanted => {
                return Some(format!("{name} is read at boot and differs"));
            }
            (Some(_), None) => return Some(format!("{name} is set in the pool's pods and not in the request")),
            _ => {}
        }
    }
    None
}

/// The body of `POST /api/init` that gives a claimed warm pod its session: its own key, the
/// request's environment (as a cold pod would have it), and the settings `/api/init` carries in
/// fields of their own. Only fields both agent versions know: 1.34.0 refuses any other (422).
pub fn init_body(config: &Config, session_api_key: &str, request: &StartRequest) -> Value {
    let env = manifests::shared_environment(config, request);
    let mut webhooks: BTreeMap<usize, &String> = BTreeMap::new();
    for (name, url) in &env {
        if let Some(index) = webhook_index(name) {
            webhooks.insert(index, url);
        }
    }
    let webhooks: Vec<Value> = webhooks.values().map(|url| json!({"base_url": url})).collect();
    let mut body = json!({
        "session_api_keys": [session_api_key],
        "env": env,
        "webhooks": webhooks,
    });
    if let Some(path) = env.get(CONVERSATIONS_PATH) {
        body["conversations_path"] = json!(path);
    }
    if let Some(dir) = env.get(BASH_EVENTS_DIR) {
        body["bash_events_dir"] = json!(dir);
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Config {
        let vars: BTreeMap<String, String> = [("API_KEY", "k"), ("KUBE_API_URL", "http://127.0.0.1:8001")]
            .iter()
            .chain(vars)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_env(&|name| vars.get(name).cloned()).expect("a valid configuration")
    }

    fn request(body: Value) -> StartRequest {
        let mut body = body;
        body["session_id"] = json!("s");
        StartRequest::from_json(&body, "agent:1").expect("a valid request")
    }

    /// The V1 app server's start request (its remote sandbox service and spec).
    fn v1(extra: Value) -> Value {
        let mut environment = json!({"OPENVSCODE_SERVER_ROOT": "/openhands/.openvscode-server", "LOG_JSON": "true",
            "OH_ENABLE_VNC": "0", "OH_CONVERSATIONS_PATH": "/workspace/conversations",
            "OH_BASH_EVENTS_DIR": "/workspace/bash_events", "OH_VSCODE_PORT": "60001",
            "OH_WEBHOOKS_0_BASE_URL": "https://app.example/api/v1/webhooks",
            "OH_ALLOW_CORS_ORIGINS_0": "https://app.example", "WORKER_1": "12000", "WORKER_2": "12001"});
        for (name, value) in extra.as_object().into_iter().flatten() {
            environment[name] = value.clone();
        }
        json!({"image": "agent:1", "command": ["/usr/local/bin/openhands-agent-server", "--port", "60000"],
            "working_dir": "/workspace/project", "environment": environment, "resource_factor": 1,
            "run_as_user": 10001, "run_as_group": 10001, "fs_group": 10001})
    }

    #[test]
    fn a_request_matches_a_pool_booted_with_what_it_reads_at_boot() {
        let config = config(&[("RUNTIME_CLASS_MAP", r#"{"sysbox-runc": ""}"#)]);
        let pool = request(v1(json!({})));
        assert_eq!(mismatch(&config, &pool, &pool), None);
        // Credentials and the webhook address are set at claim.
        let claim = request(v1(
            json!({"GITHUB_TOKEN": "t", "OH_WEBHOOKS_0_BASE_URL": "https://other/api/v1/webhooks",
            "OH_CONVERSATIONS_PATH": "/elsewhere"}),
        ));
        assert_eq!(mismatch(&config, &pool, &claim), None);
        // A class the map drops is no class, as the pool's.
        let mut body = v1(json!({}));
        body["runtime_class"] = json!("sysbox-runc");
        assert_eq!(mismatch(&config, &pool, &request(body)), None);

        for (change, why) in [
            (json!({"LOG_JSON": "false"}), "LOG_JSON"),
            (json!({"OH_ENABLE_VSCODE": "false"}), "OH_ENABLE_VSCODE"),
            (
                json!({"OH_ALLOW_CORS_ORIGINS_0": "https://elsewhere"}),
                "OH_ALLOW_CORS_ORIGINS_0",
            ),
            (json!({"OH_WEBHOOKS_0_HEADERS": "{}"}), "OH_WEBHOOKS_0_HEADERS"),
        ] {
            let found = mismatch(&config, &pool, &request(v1(change))).expect("a mismatch");
            assert!(found.contains(why), "{found}");
        }
        let mut body = v1(json!({}));
        body["environment"].as_object_mut().unwrap().remove("LOG_JSON");
        assert!(mismatch(&config, &pool, &request(body)).is_some_and(|why| why.contains("LOG_JSON")));
        // What the pool's pods have cannot be taken away at claim.
        let pool_with_token = request(v1(json!({"GITHUB_TOKEN": "pool"})));
        assert!(mismatch(&config, &pool_with_token, &pool).is_some_and(|why| why.contains("GITHUB_TOKEN")));
        for (field, value) in [
            ("image", json!("agent:2")),
            ("resource_factor", json!(2)),
            ("working_dir", json!("/")),
            ("run_as_user", json!(0)),
            ("image_pull_policy", json!("Always")),
        ] {
            let mut body = v1(json!({}));
            body[field] = value;
            assert!(mismatch(&config, &pool, &request(body)).is_some(), "{field}");
        }
    }

    #[test]
    fn the_init_body_carries_the_key_the_environment_and_the_settings_of_their_own() {
        let config = config(&[("SANDBOX_ENV", r#"{"TZ": "UTC"}"#)]);
        let body = init_body(
            &config,
            "K",
            &request(v1(json!({"GITHUB_TOKEN": "t", "OH_WEBHOOKS_1_BASE_URL": "https://b"}))),
        );
        assert_eq!(body["session_api_keys"], json!(["K"]));
        assert_eq!(body["env"]["GITHUB_TOKEN"], "t");
        assert_eq!(body["env"]["TZ"], "UTC");
        assert_eq!(body["env"]["OH_VSCODE_PORT"], "60001");
        for reserved in ["OH_SESSION_API_KEYS_0", "SESSION_API_KEY", "OH_RUNTIME_ID"] {
            assert!(body["env"].get(reserved).is_none(), "{reserved}");
        }
        assert_eq!(
            body["webhooks"],
            json!([{"base_url": "https://app.example/api/v1/webhooks"}, {"base_url": "https://b"}])
        );
        assert_eq!(body["conversations_path"], "/workspace/conversations");
        assert_eq!(body["bash_events_dir"], "/workspace/bash_events");
        let fields: BTreeSet<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
        let known_to_1_34 = [
            "session_api_keys",
            "secret_key",
            "conversations_path",
            "bash_events_dir",
            "webhooks",
            "web_url",
            "allow_cors_origins",
            "max_concurrent_runs",
            "env",
        ];
        assert!(fields.iter().all(|f| known_to_1_34.contains(f)), "{fields:?}");
    }

    #[test]
    fn settings_read_at_boot_and_those_init_carries() {
        for name in [
            "OH_ENABLE_VSCODE",
            "OH_ALLOW_CORS_ORIGINS_0",
            "LOG_JSON",
            "LMNR_PROJECT_API_KEY",
            "PYTHONPATH",
        ] {
            assert!(read_at_boot(name), "{name}");
        }
        for name in [
            "OH_CONVERSATIONS_PATH",
            "OH_BASH_EVENTS_DIR",
            "OH_WEBHOOKS_0_BASE_URL",
            "OH_RUNTIME_IDLE_TIMEOUT_SECONDS",
            "GITHUB_TOKEN",
            "LLM_API_KEY",
        ] {
            assert!(!read_at_boot(name), "{name}");
        }
        assert!(read_at_boot("OH_WEBHOOKS_0_HEADERS"));
        assert_eq!(webhook_index("OH_WEBHOOKS_12_BASE_URL"), Some(12));
        assert_eq!(webhook_index("OH_WEBHOOKS_X_BASE_URL"), None);
    }
}
