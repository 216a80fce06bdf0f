//! The service's configuration, read once from the environment (API.md §2).
//!
//! A value that cannot be used stops startup with a message naming its variable: a silent
//! default would create sandboxes the operator did not ask for.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use crate::env::{ConfigError, Env};
use crate::kube;
use crate::names::{RESERVED_ENV, is_dns_label, is_dns_subdomain, is_env_name};
use crate::registry::RegistryConfig;
use crate::warm::{self, Pool};

/// The key deploy.yaml ships with, which must never guard a real service.
const PLACEHOLDER_API_KEY: &str = "REPLACE-ME";

/// The container ports of a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub agent: u16,
    pub vscode: u16,
    pub worker_1: u16,
    pub worker_2: u16,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub api_key: String,
    pub server_port: u16,
    pub worker_threads: usize,
    /// How the HTTP front protects itself from load and hostile clients.
    pub http: HttpLimits,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_grace: Duration,
    pub kube: kube::Config,
    pub base_domain: String,
    pub url_scheme: String,
    pub ingress_class: String,
    pub ingress_annotations: BTreeMap<String, String>,
    pub ingress_tls_secret: Option<String>,
    pub registry_prefix: String,
    pub default_image: String,
    pub image_pull_secrets: Vec<String>,
    /// How registries are reached when `/image_exists` asks them.
    pub registries: RegistryConfig,
    pub ports: Ports,
    pub app_server_url: Option<String>,
    pub app_server_public_url: Option<String>,
    /// `(secret name, key)` of an extra CA to mount in sandboxes.
    pub ca_cert: Option<(String, String)>,
    pub sandbox_env: BTreeMap<String, String>,
    pub runtime_class: Option<String>,
    /// Requested runtime class -> the one used; `None` drops it.
    pub runtime_class_map: BTreeMap<String, Option<String>>,
    pub image_pull_grace: Duration,
    /// A volume per runtime, kept across pause and pod replacement; `None` when off.
    pub workspace: Option<Workspace>,
    /// How often labelled objects without an anchor are looked for and deleted.
    pub orphan_sweep_interval: Duration,
    /// A NetworkPolicy per sandbox; `None` when `SANDBOX_NETWORK_POLICY=false`.
    pub network_policy: Option<NetworkPolicy>,
    /// What the service does on its own to runtimes left idle, paused or stuck.
    pub lifecycle: Lifecycle,
    /// Runtimes not paused at most (`MAX_RUNNING_RUNTIMES`); `None`: no cap.
    pub max_running_runtimes: Option<usize>,
    /// `WARM_POOLS`: pods booted ahead of time for the requests that match them.
    pub warm_pools: Vec<Pool>,
    /// A warm pod older than this is replaced (`WARM_POD_MAX_AGE`).
    pub warm_pod_max_age: Duration,
}

/// `IDLE_PAUSE_AFTER`, `IDLE_CHECK_INTERVAL`, `PAUSED_STOP_AFTER`, `STUCK_PAUSE_AFTER`; each
/// `None` is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifecycle {
    /// A running runtime whose agent has been idle this long is paused.
    pub idle_pause_after: Option<Duration>,
    /// How often the agents are asked for their idle clocks.
    pub idle_check_interval: Duration,
    /// A runtime paused this long is stopped.
    pub paused_stop_after: Option<Duration>,
    /// A runtime `starting` or in `error` without a break this long is paused.
    pub stuck_pause_after: Option<Duration>,
}

/// `HTTP_*`: how many connections, and how long a client may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    pub max_connections: usize,
    /// A request head must arrive within this (and a body at no slower pace).
    pub header_timeout: Duration,
    /// An idle keep-alive connection is closed after this.
    pub idle_timeout: Duration,
}

/// Who may talk to a sandbox, and where a sandbox may connect, besides the internet and DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPolicy {
    /// The namespace of the ingress controller, the only way in from outside.
    pub ingress_namespace: String,
    /// Namespaces sandboxes may reach inside the cluster (e.g. the app server's, for webhooks).
    pub egress_namespaces: Vec<String>,
}

/// The per-runtime PersistentVolumeClaim of `WORKSPACE_STORAGE_*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    /// A Kubernetes quantity, e.g. `10Gi`.
    pub size: String,
    /// `None`: the cluster's default storage class.
    pub storage_class: Option<String>,
    pub mount_path: String,
}

impl Config {
    /// Reads the configuration; `lookup` finds a variable (`std::env::var` in the binary).
    pub fn from_env(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let env = Env::new(lookup);
        let env = &env;
        let default_image = env.text("DEFAULT_IMAGE", "ghcr.io/openhands/agent-server:latest-python");
        Ok(Config {
            api_key: api_key(env)?,
            server_port: env.port("SERVER_PORT", 8080)?,
            worker_threads: env.count("WORKER_THREADS", 16, 1024)?,
            http: http_limits(env)?,
            shutdown_grace: env.duration("SHUTDOWN_GRACE", Duration::from_secs(20), true)?,
            kube: kube::Config::from_env(env)?,
            base_domain: base_domain(env)?,
            url_scheme: url_scheme(env)?,
            ingress_class: ingress_class(env)?,
            ingress_annotations: env.string_map("SANDBOX_INGRESS_ANNOTATIONS")?,
            ingress_tls_secret: env.object_name("INGRESS_TLS_SECRET")?,
            registry_prefix: env.text("REGISTRY_PREFIX", "ghcr.io/openhands"),
            default_image: default_image.clone(),
            image_pull_secrets: env.list("IMAGE_PULL_SECRETS", is_dns_subdomain, "a secret name")?,
            registries: RegistryConfig {
                insecure: env.list("INSECURE_REGISTRIES", is_registry_host, "a registry host[:port]")?,
                ca_file: env.get("REGISTRY_CA_FILE").map(PathBuf::from),
            },
            ports: ports(env)?,
            app_server_url: env.url("APP_SERVER_URL")?,
            app_server_public_url: env.url("APP_SERVER_PUBLIC_URL")?,
            ca_cert: env
                .object_name("CA_CERT_SECRET_NAME")?
                .map(|name| (name, env.text("CA_CERT_SECRET_KEY", "ca.crt"))),
            sandbox_env: sandbox_env(env)?,
            runtime_class: env.object_name("RUNTIME_CLASS")?,
            runtime_class_map: runtime_class_map(env)?,
            image_pull_grace: env.duration("IMAGE_PULL_GRACE", Duration::from_secs(120), true)?,
            workspace: workspace(env)?,
            orphan_sweep_interval: env.duration("ORPHAN_SWEEP_INTERVAL", Duration::from_secs(60), false)?,
            network_policy: network_policy(env)?,
            lifecycle: Lifecycle {
                idle_pause_after: env.optional_duration("IDLE_PAUSE_AFTER", Duration::from_secs(30 * 60))?,
                idle_check_interval: env.duration("IDLE_CHECK_INTERVAL", Duration::from_secs(60), false)?,
                paused_stop_after: env.optional_duration("PAUSED_STOP_AFTER", Duration::ZERO)?,
                stuck_pause_after: env.optional_duration("STUCK_PAUSE_AFTER", Duration::from_secs(30 * 60))?,
            },
            max_running_runtimes: env.optional_limit("MAX_RUNNING_RUNTIMES", 1_000_000)?,
            warm_pools: warm::pools_from(env.get("WARM_POOLS").as_deref(), &default_image)?,
            warm_pod_max_age: env.duration("WARM_POD_MAX_AGE", Duration::from_secs(24 * 3600), false)?,
        })
    }
}

fn api_key(env: &Env) -> Result<String, ConfigError> {
    let api_key = match (env.get("API_KEY"), env.get("API_KEY_FILE")) {
        (Some(key), _) => key,
        (None, Some(path)) => fs::read_to_string(&path)
            .map(|key| key.trim().to_string())
            .map_err(|e| ConfigError::new("API_KEY_FILE", format!("cannot read {path}: {e}")))?,
        (None, None) => {
            return Err(ConfigError::new(
                "API_KEY",
                "is required (or API_KEY_FILE): clients authenticate with it",
            ));
        }
    };
    if api_key.is_empty() {
        return Err(ConfigError::new("API_KEY", "must not be empty"));
    }
    if api_key == PLACEHOLDER_API_KEY {
        return Err(ConfigError::new(
            "API_KEY",
            "is still the placeholder of deploy.yaml: generate one, e.g. with openssl rand -hex 32",
        ));
    }
    Ok(api_key)
}

fn http_limits(env: &Env) -> Result<HttpLimits, ConfigError> {
    Ok(HttpLimits {
        max_connections: env.count("HTTP_MAX_CONNECTIONS", 512, 100_000)?,
        header_timeout: env.duration("HTTP_HEADER_TIMEOUT", Duration::from_secs(10), false)?,
        idle_timeout: env.duration("HTTP_IDLE_TIMEOUT", Duration::from_secs(60), false)?,
    })
}

fn ports(env: &Env) -> Result<Ports, ConfigError> {
    let ports = Ports {
        agent: env.port("AGENT_SERVER_PORT", 60000)?,
        vscode: env.port("VSCODE_PORT", 60001)?,
        worker_1: env.port("WORKER_1_PORT", 12000)?,
        worker_2: env.port("WORKER_2_PORT", 12001)?,
    };
    let all = [ports.agent, ports.vscode, ports.worker_1, ports.worker_2];
    if (1..all.len()).any(|i| all[..i].contains(&all[i])) {
        return Err(ConfigError::new(
            "AGENT_SERVER_PORT",
            "AGENT_SERVER_PORT, VSCODE_PORT, WORKER_1_PORT and WORKER_2_PORT must differ",
        ));
    }
    Ok(ports)
}

fn base_domain(env: &Env) -> Result<String, ConfigError> {
    let base_domain = env.text("BASE_DOMAIN", "sandbox.example.com").to_lowercase();
    if !is_dns_subdomain(&base_domain) {
        return Err(ConfigError::new(
            "BASE_DOMAIN",
            format!("{base_domain:?} is not a DNS name"),
        ));
    }
    Ok(base_domain)
}

fn url_scheme(env: &Env) -> Result<String, ConfigError> {
    let url_scheme = env.text("URL_SCHEME", "https");
    if url_scheme != "https" && url_scheme != "http" {
        return Err(ConfigError::new(
            "URL_SCHEME",
            format!("{url_scheme:?} must be https or http"),
        ));
    }
    Ok(url_scheme)
}

fn ingress_class(env: &Env) -> Result<String, ConfigError> {
    let ingress_class = env.text("INGRESS_CLASS", "nginx");
    if !is_dns_subdomain(&ingress_class) {
        return Err(ConfigError::new(
            "INGRESS_CLASS",
            format!("{ingress_class:?} is not a valid class name"),
        ));
    }
    Ok(ingress_class)
}

fn sandbox_env(env: &Env) -> Result<BTreeMap<String, String>, ConfigError> {
    let sandbox_env = env.string_map("SANDBOX_ENV")?;
    for name in sandbox_env.keys() {
        if RESERVED_ENV.contains(&name.as_str()) {
            return Err(ConfigError::new(
                "SANDBOX_ENV",
                format!("{name} is set by the service for every sandbox"),
            ));
        }
        if !is_env_name(name) {
            return Err(ConfigError::new(
                "SANDBOX_ENV",
                format!("{name:?} is not a valid environment variable name"),
            ));
        }
    }
    Ok(sandbox_env)
}

fn runtime_class_map(env: &Env) -> Result<BTreeMap<String, Option<String>>, ConfigError> {
    let mut runtime_class_map = BTreeMap::new();
    for (requested, used) in env.string_map("RUNTIME_CLASS_MAP")? {
        if !used.is_empty() && !is_dns_subdomain(&used) {
            return Err(ConfigError::new(
                "RUNTIME_CLASS_MAP",
                format!("{used:?} is not a valid runtime class name"),
            ));
        }
        runtime_class_map.insert(requested, Some(used).filter(|u| !u.is_empty()));
    }
    Ok(runtime_class_map)
}

fn workspace(env: &Env) -> Result<Option<Workspace>, ConfigError> {
    let Some(size) = env.get("WORKSPACE_STORAGE_SIZE") else {
        return Ok(None);
    };
    if !is_quantity(&size) {
        return Err(ConfigError::new(
            "WORKSPACE_STORAGE_SIZE",
            format!("{size:?} is not a storage size such as 10Gi"),
        ));
    }
    let mount_path = env.text("WORKSPACE_MOUNT_PATH", "/workspace");
    if !mount_path.starts_with('/') || mount_path.contains(':') {
        return Err(ConfigError::new(
            "WORKSPACE_MOUNT_PATH",
            format!("{mount_path:?} must be an absolute path"),
        ));
    }
    Ok(Some(Workspace {
        size,
        storage_class: env.object_name("WORKSPACE_STORAGE_CLASS")?,
        mount_path,
    }))
}

fn network_policy(env: &Env) -> Result<Option<NetworkPolicy>, ConfigError> {
    match env.get("SANDBOX_NETWORK_POLICY").as_deref() {
        None | Some("true") => Ok(Some(NetworkPolicy {
            ingress_namespace: env
                .namespace("INGRESS_CONTROLLER_NAMESPACE")?
                .unwrap_or_else(|| "ingress-nginx".to_string()),
            egress_namespaces: env.list("SANDBOX_EGRESS_NAMESPACES", is_dns_label, "a namespace name")?,
        })),
        Some("false") => Ok(None),
        Some(other) => Err(ConfigError::new(
            "SANDBOX_NETWORK_POLICY",
            format!("{other:?} must be true or false"),
        )),
    }
}

/// `registry.internal`, `10.0.0.5:5000`, `localhost:5000`: as an image reference names it.
fn is_registry_host(text: &str) -> bool {
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (text, None),
    };
    is_dns_subdomain(host) && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0))
}

/// A Kubernetes quantity of bytes: digits with an optional fraction and a binary or decimal
/// suffix (`10Gi`, `500M`, `1.5Ti`).
fn is_quantity(text: &str) -> bool {
    let number_end = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(number_end);
    let valid_number =
        !number.is_empty() && number.split('.').count() <= 2 && number.split('.').all(|part| !part.is_empty());
    let suffixes = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E"];
    valid_number && suffixes.contains(&suffix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut all: HashMap<String, String> = [("API_KEY", "k"), ("KUBE_API_URL", "http://127.0.0.1:8001")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        all.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Config::from_env(&|name| all.get(name).cloned())
    }

    #[test]
    fn lifecycle_defaults_and_zero_turns_each_off() {
        let minutes = |m: u64| Some(Duration::from_secs(m * 60));
        let c = config(&[]).unwrap();
        let expected = Lifecycle {
            idle_pause_after: minutes(30),
            idle_check_interval: Duration::from_secs(60),
            paused_stop_after: None,
            stuck_pause_after: minutes(30),
        };
        assert_eq!(c.lifecycle, expected);
        assert_eq!(c.max_running_runtimes, None);
        let c = config(&[
            ("IDLE_PAUSE_AFTER", "0"),
            ("STUCK_PAUSE_AFTER", "0"),
            ("PAUSED_STOP_AFTER", "2h"),
            ("MAX_RUNNING_RUNTIMES", "5"),
        ])
        .unwrap();
        assert_eq!(
            (c.lifecycle.idle_pause_after, c.lifecycle.stuck_pause_after),
            (None, None)
        );
        assert_eq!(c.lifecycle.paused_stop_after, minutes(120));
        assert_eq!(c.max_running_runtimes, Some(5));
        assert_eq!(
            config(&[("MAX_RUNNING_RUNTIMES", "0")]).unwrap().max_running_runtimes,
            None
        );
        for (name, value) in [
            ("IDLE_CHECK_INTERVAL", "0"),
            ("IDLE_PAUSE_AFTER", "soon"),
            ("MAX_RUNNING_RUNTIMES", "-1"),
            ("MAX_RUNNING_RUNTIMES", "many"),
        ] {
            let error = config(&[(name, value)]).unwrap_err();
            assert!(error.to_string().contains(name), "{name}={value}: {error}");
        }
    }

    #[test]
    fn warm_pools_are_read_and_every_mistake_names_the_variable() {
        let c = config(&[]).unwrap();
        assert!(c.warm_pools.is_empty());
        assert_eq!(c.warm_pod_max_age, Duration::from_secs(24 * 3600));
        let pools = r#"[{"name": "v1", "size": 3, "request": {"working_dir": "/workspace", "environment": {"LOG_JSON": "true"}}},
                       {"name": "sdk", "size": 1, "request": {"image": "ghcr.io/openhands/agent-server:1.58.2-python"}}]"#;
        let c = config(&[("WARM_POOLS", pools), ("DEFAULT_IMAGE", "agent:1")]).unwrap();
        let names: Vec<(&str, usize, &str)> = c
            .warm_pools
            .iter()
            .map(|p| (p.name.as_str(), p.size, p.request.image.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("v1", 3, "agent:1"),
                ("sdk", 1, "ghcr.io/openhands/agent-server:1.58.2-python")
            ]
        );
        assert_eq!(c.warm_pools[0].request.session_id, "");
        for (bad, why) in [
            ("{", "JSON list"),
            (r#"{"name": "a"}"#, "JSON list"),
            (r#"[{"name": "a", "size": 1}, {"name": "a", "size": 2}]"#, "used twice"),
            (r#"[{"name": "a", "size": 0}]"#, "size"),
            (r#"[{"name": "a", "size": 100000}]"#, "size"),
            (r#"[{"name": "a", "size": "2"}]"#, "size"),
            (r#"[{"name": "Not A Label", "size": 1}]"#, "name"),
            (r#"[{"name": "a", "size": 1, "sise": 2}]"#, "unknown field"),
            (
                r#"[{"name": "a", "size": 1, "request": {"session_id": "s"}}]"#,
                "session_id",
            ),
            (
                r#"[{"name": "a", "size": 1, "request": {"resource_factor": 99}}]"#,
                "resource_factor",
            ),
            (
                r#"[{"name": "a", "size": 1, "request": {"environment": {"A": 1}}}]"#,
                "environment",
            ),
            (r#"[{"name": "a", "size": 1, "request": []}]"#, "request"),
        ] {
            let error = config(&[("WARM_POOLS", bad)]).unwrap_err();
            assert_eq!(error.variable, "WARM_POOLS", "{bad}");
            assert!(error.message.contains(why), "{bad}: {error}");
        }
        assert_eq!(
            config(&[("WARM_POD_MAX_AGE", "0")]).unwrap_err().variable,
            "WARM_POD_MAX_AGE"
        );
    }

    #[test]
    fn defaults_follow_the_spec() {
        let c = config(&[]).unwrap();
        assert_eq!(c.server_port, 8080);
        assert_eq!(c.worker_threads, 16);
        assert_eq!(
            c.http,
            HttpLimits {
                max_connections: 512,
                header_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(60)
            }
        );
        assert_eq!(c.shutdown_grace, Duration::from_secs(20));
        assert_eq!(c.base_domain, "sandbox.example.com");
        assert_eq!(c.url_scheme, "https");
        assert_eq!(c.ingress_class, "nginx");
        assert_eq!(c.registry_prefix, "ghcr.io/openhands");
        assert_eq!(c.default_image, "ghcr.io/openhands/agent-server:latest-python");
        assert_eq!(
            c.ports,
            Ports {
                agent: 60000,
                vscode: 60001,
                worker_1: 12000,
                worker_2: 12001
            }
        );
        assert_eq!(c.image_pull_grace, Duration::from_secs(120));
        assert!(c.app_server_url.is_none() && c.ca_cert.is_none() && c.runtime_class.is_none());
        assert_eq!(c.workspace, None);
        assert_eq!(c.orphan_sweep_interval, Duration::from_secs(60));
        assert_eq!(
            c.network_policy,
            Some(NetworkPolicy {
                ingress_namespace: "ingress-nginx".into(),
                egress_namespaces: Vec::new()
            })
        );
        assert_eq!(
            config(&[("SANDBOX_NETWORK_POLICY", "false")]).unwrap().network_policy,
            None
        );
        let with_workspace = config(&[
            ("WORKSPACE_STORAGE_SIZE", "1.5Gi"),
            ("WORKSPACE_STORAGE_CLASS", "local-path"),
        ])
        .unwrap();
        assert_eq!(
            with_workspace.workspace,
            Some(Workspace {
                size: "1.5Gi".into(),
                storage_class: Some("local-path".into()),
                mount_path: "/workspace".into()
            })
        );
    }

    #[test]
    fn every_bad_value_names_its_variable() {
        let no_key = Config::from_env(&|name| (name == "KUBE_API_URL").then(|| "http://h".to_string()));
        assert_eq!(no_key.unwrap_err().variable, "API_KEY");
        for (variable, value) in [
            ("SERVER_PORT", "http"),
            ("SERVER_PORT", "0"),
            ("AGENT_SERVER_PORT", "70000"),
            ("BASE_DOMAIN", "under_score.example.com"),
            ("URL_SCHEME", "ftp"),
            ("SANDBOX_INGRESS_ANNOTATIONS", "a=b"),
            ("SANDBOX_INGRESS_ANNOTATIONS", "{\"a\": 1}"),
            ("SANDBOX_ENV", "[]"),
            ("SANDBOX_ENV", "{\"OH_RUNTIME_ID\": \"x\"}"),
            ("RUNTIME_CLASS_MAP", "{\"sysbox-runc\": \"Not Valid\"}"),
            ("IMAGE_PULL_SECRETS", "ok,Not_OK"),
            ("IMAGE_PULL_GRACE", "soon"),
            ("WORKER_THREADS", "0"),
            ("HTTP_MAX_CONNECTIONS", "0"),
            ("HTTP_MAX_CONNECTIONS", "many"),
            ("HTTP_HEADER_TIMEOUT", "0s"),
            ("HTTP_IDLE_TIMEOUT", "forever"),
            ("SHUTDOWN_GRACE", "-1"),
            ("APP_SERVER_URL", "app:3000"),
            ("KUBE_API_URL", "localhost:6443"),
            ("WORKSPACE_STORAGE_SIZE", "lots"),
            ("ORPHAN_SWEEP_INTERVAL", "0s"),
            ("SANDBOX_NETWORK_POLICY", "yes"),
            ("INGRESS_CONTROLLER_NAMESPACE", "Ingress_Nginx"),
            ("SANDBOX_EGRESS_NAMESPACES", "openhands,Bad_One"),
            ("INSECURE_REGISTRIES", "http://registry.local:5000"),
            ("INSECURE_REGISTRIES", "registry.local:99999"),
        ] {
            let error = config(&[(variable, value)]).unwrap_err();
            assert_eq!(error.variable, variable, "{value}: {error}");
        }
        let relative = config(&[
            ("WORKSPACE_STORAGE_SIZE", "10Gi"),
            ("WORKSPACE_MOUNT_PATH", "workspace"),
        ]);
        assert_eq!(relative.unwrap_err().variable, "WORKSPACE_MOUNT_PATH");
        assert_eq!(config(&[("API_KEY", "REPLACE-ME")]).unwrap_err().variable, "API_KEY");
        let same_ports = config(&[("VSCODE_PORT", "60000")]).unwrap_err();
        assert_eq!(same_ports.variable, "AGENT_SERVER_PORT");
    }

    #[test]
    fn json_values_keep_commas_and_map_to_none() {
        let c = config(&[
            (
                "SANDBOX_INGRESS_ANNOTATIONS",
                r#"{"nginx.ingress.kubernetes.io/whitelist-source-range": "10.0.0.0/8,192.168.0.0/16"}"#,
            ),
            ("RUNTIME_CLASS_MAP", r#"{"sysbox-runc": "", "kata": "kata-qemu"}"#),
            ("IMAGE_PULL_GRACE", "2m"),
        ])
        .unwrap();
        assert_eq!(
            c.ingress_annotations["nginx.ingress.kubernetes.io/whitelist-source-range"],
            "10.0.0.0/8,192.168.0.0/16"
        );
        assert_eq!(c.runtime_class_map["sysbox-runc"], None);
        assert_eq!(c.runtime_class_map["kata"].as_deref(), Some("kata-qemu"));
        assert_eq!(c.image_pull_grace, Duration::from_secs(120));
    }

    #[test]
    fn registries_are_named_as_images_name_them() {
        let c = config(&[
            ("INSECURE_REGISTRIES", "registry.local:5000, 10.0.0.5:5000,localhost"),
            ("REGISTRY_CA_FILE", "/etc/registry/ca.crt"),
        ])
        .unwrap();
        assert_eq!(
            c.registries.insecure,
            ["registry.local:5000", "10.0.0.5:5000", "localhost"]
        );
        assert_eq!(c.registries.ca_file, Some(PathBuf::from("/etc/registry/ca.crt")));
        assert_eq!(config(&[]).unwrap().registries, RegistryConfig::default());
    }
}
