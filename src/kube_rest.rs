//! A small synchronous client for the Kubernetes REST API.
//!
//! It speaks the handful of calls the service needs (create, get, list, delete and JSON merge
//! patch in one namespace) directly over `ureq`. Objects are `serde_json::Value`s: the service
//! builds its manifests as JSON and reads back only the few fields it cares about, so generated
//! types would add weight without adding safety.

use std::fmt;
use std::fs;
use std::io::BufRead;
use std::io::BufReader;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use ureq::http::{self, Method};
use ureq::tls::TlsConfig;

use crate::config::{ConfigError, is_dns_label};
use crate::http_client::{agent_config, certificates_in, percent_encode, query_string, tls_trusting};

const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const DEFAULT_NAMESPACE: &str = "openhands";
/// Projected service-account tokens rotate hourly; client-go re-reads them every minute.
const TOKEN_REFRESH: Duration = Duration::from_secs(60);
/// Page size for lists. A page is held whole as JSON values while it is read: 100 pods are a
/// few MiB, 500 (what kubectl asks for) would double the service's memory at 5,000 runtimes.
const LIST_PAGE_SIZE: u32 = 100;
/// A list of thousands of pods is several MiB; anything beyond this is not a sane answer.
const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;
/// How long past its own timeout a silent watch stream is waited for.
const WATCH_GRACE: Duration = Duration::from_secs(15);
const USER_AGENT: &str = concat!("openhands-k8s-runtime/", env!("CARGO_PKG_VERSION"));

/// Where the API server is and how to talk to it.
#[derive(Debug, Clone)]
pub struct Config {
    /// Base URL without a trailing slash, `https://host:port` or `http://` behind `kubectl proxy`.
    pub api_url: String,
    /// Bearer token file; re-read every `token_refresh`. A missing file sends no token.
    pub token_file: PathBuf,
    /// PEM bundle of the only CAs trusted for the API server (used with `https://`).
    pub ca_file: PathBuf,
    /// The one namespace every call goes to.
    pub namespace: String,
    pub token_refresh: Duration,
    pub timeouts: Timeouts,
    pub retry: RetryPolicy,
}

impl Config {
    /// Reads `KUBE_API_URL`, `KUBE_TOKEN_FILE`, `KUBE_CA_FILE` and `NAMESPACE`, falling back to
    /// the in-cluster service account the way client-go's `InClusterConfig` does.
    ///
    /// `env` looks a variable up; the binary passes `std::env::var`, tests pass a map.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let set = |name: &str| env(name).filter(|value| !value.trim().is_empty());
        let api_url = match set("KUBE_API_URL") {
            Some(url) => parse_api_url(&url)?,
            None => in_cluster_api_url(set("KUBERNETES_SERVICE_HOST"), set("KUBERNETES_SERVICE_PORT"))?,
        };
        let service_account_file = |name: &str| PathBuf::from(format!("{SERVICE_ACCOUNT_DIR}/{name}"));
        let namespace = match set("NAMESPACE") {
            Some(namespace) => namespace.trim().to_string(),
            None => fs::read_to_string(service_account_file("namespace"))
                .map(|text| text.trim().to_string())
                .ok()
                .filter(|namespace| !namespace.is_empty())
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
        };
        if !is_dns_label(&namespace) {
            return Err(ConfigError::new(
                "NAMESPACE",
                format!("{namespace:?} is not a valid namespace name (a lowercase RFC 1123 label)"),
            ));
        }
        Ok(Config {
            api_url,
            token_file: set("KUBE_TOKEN_FILE").map_or_else(|| service_account_file("token"), PathBuf::from),
            ca_file: set("KUBE_CA_FILE").map_or_else(|| service_account_file("ca.crt"), PathBuf::from),
            namespace,
            token_refresh: TOKEN_REFRESH,
            timeouts: Timeouts::default(),
            retry: RetryPolicy::default(),
        })
    }
}

fn parse_api_url(url: &str) -> Result<String, ConfigError> {
    let url = url.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| ConfigError::new("KUBE_API_URL", format!("{url:?} must start with https:// or http://")))?;
    if rest.is_empty() || rest.contains(['?', '#', ' ']) {
        return Err(ConfigError::new("KUBE_API_URL", format!("{url:?} is not a base URL")));
    }
    Ok(url.to_string())
}

fn in_cluster_api_url(host: Option<String>, port: Option<String>) -> Result<String, ConfigError> {
    let (Some(host), Some(port)) = (host, port) else {
        return Err(ConfigError::new(
            "KUBE_API_URL",
            "not set, and not running in a cluster (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are unset)",
        ));
    };
    if port.parse::<u16>().is_err() {
        return Err(ConfigError::new(
            "KUBERNETES_SERVICE_PORT",
            format!("{port:?} is not a port number"),
        ));
    }
    // Like Go's net.JoinHostPort: an IPv6 address needs brackets in a URL.
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    Ok(format!("https://{host}:{port}"))
}

/// Every call is bounded: a hung API server must not hang a client of ours.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    /// The whole call, from connecting to the last byte of the response.
    pub call: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(5),
            call: Duration::from_secs(20),
        }
    }
}

/// How throttling (429), server errors (5xx) and broken connections are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// A longer `Retry-After` is not waited for: the error goes back to the caller, whose own
    /// client would give up first.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            first_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// How long to wait before retry number `retry` (0-based) after `error`, or `None` when the
    /// error is final.
    fn delay(&self, error: &KubeError, retry: u32) -> Option<Duration> {
        if !error.is_transient() || retry + 1 >= self.max_attempts {
            return None;
        }
        match error.retry_after() {
            Some(wait) if wait > self.max_retry_after => None,
            Some(wait) => Some(wait),
            None => Some(
                self.first_backoff
                    .saturating_mul(1 << retry.min(16))
                    .min(self.max_backoff),
            ),
        }
    }
}

/// What went wrong with a call, with the API server's own message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeError {
    BadRequest(String),
    Unauthorized(String),
    Forbidden(String),
    NotFound(String),
    AlreadyExists(String),
    /// A write lost a race on `resourceVersion`.
    Conflict(String),
    /// A `resourceVersion` or `continue` token the server no longer has (410).
    Expired(String),
    Invalid(String),
    TooManyRequests {
        message: String,
        retry_after: Option<Duration>,
    },
    /// 5xx: the server failed or timed out; the call may or may not have taken effect.
    Server {
        code: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// Any other status code.
    Unexpected {
        code: u16,
        message: String,
    },
    /// The connection failed or broke (refused, reset, TLS refused).
    Transport(String),
    Timeout(String),
    /// A success answer whose body is not the JSON it should be.
    InvalidResponse(String),
}

impl KubeError {
    /// Builds the error for a non-2xx answer, from its `Status` body where there is one (429
    /// throttling and unknown paths answer in plain text).
    fn from_response(code: u16, retry_after_header: Option<Duration>, body: &[u8]) -> KubeError {
        let status: Option<Value> = serde_json::from_slice(body).ok();
        let field = |name: &str| status.as_ref().and_then(|s| s.get(name));
        let message = match field("message").and_then(Value::as_str) {
            Some(message) => message.to_string(),
            None => {
                let text = String::from_utf8_lossy(body).trim().to_string();
                if text.is_empty() { format!("HTTP {code}") } else { text }
            }
        };
        let retry_after = retry_after_header.or_else(|| {
            field("details")
                .and_then(|details| details.get("retryAfterSeconds"))
                .and_then(Value::as_u64)
                .map(Duration::from_secs)
        });
        let reason = field("reason").and_then(Value::as_str);
        match code {
            400 => KubeError::BadRequest(message),
            401 => KubeError::Unauthorized(message),
            403 => KubeError::Forbidden(message),
            404 => KubeError::NotFound(message),
            409 if reason == Some("AlreadyExists") => KubeError::AlreadyExists(message),
            409 => KubeError::Conflict(message),
            410 => KubeError::Expired(message),
            422 => KubeError::Invalid(message),
            429 => KubeError::TooManyRequests { message, retry_after },
            500..=599 => KubeError::Server {
                code,
                message,
                retry_after,
            },
            _ => KubeError::Unexpected { code, message },
        }
    }

    fn from_transport(error: ureq::Error) -> KubeError {
        match error {
            ureq::Error::Timeout(which) => {
                KubeError::Timeout(format!("the API server did not answer in time ({which})"))
            }
            other => KubeError::Transport(other.to_string()),
        }
    }

    /// The API server's message (or the transport's).
    pub fn message(&self) -> &str {
        match self {
            KubeError::BadRequest(m)
            | KubeError::Unauthorized(m)
            | KubeError::Forbidden(m)
            | KubeError::NotFound(m)
            | KubeError::AlreadyExists(m)
            | KubeError::Conflict(m)
            | KubeError::Expired(m)
            | KubeError::Invalid(m)
            | KubeError::Transport(m)
            | KubeError::Timeout(m)
            | KubeError::InvalidResponse(m) => m,
            KubeError::TooManyRequests { message, .. }
            | KubeError::Server { message, .. }
            | KubeError::Unexpected { message, .. } => message,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            KubeError::TooManyRequests { retry_after, .. } | KubeError::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether the same call may succeed if simply tried again.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            KubeError::TooManyRequests { .. }
                | KubeError::Server { .. }
                | KubeError::Transport(_)
                | KubeError::Timeout(_)
        )
    }
}

impl fmt::Display for KubeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            KubeError::BadRequest(_) => "bad request",
            KubeError::Unauthorized(_) => "unauthorized",
            KubeError::Forbidden(_) => "forbidden",
            KubeError::NotFound(_) => "not found",
            KubeError::AlreadyExists(_) => "already exists",
            KubeError::Conflict(_) => "conflict",
            KubeError::Expired(_) => "expired",
            KubeError::Invalid(_) => "invalid",
            KubeError::TooManyRequests { .. } => "too many requests",
            KubeError::Server { .. } => "server error",
            KubeError::Unexpected { .. } => "unexpected answer",
            KubeError::Transport(_) => "connection failed",
            KubeError::Timeout(_) => "timeout",
            KubeError::InvalidResponse(_) => "invalid response",
        };
        write!(f, "Kubernetes API {what}: {}", self.message())
    }
}

impl std::error::Error for KubeError {}

/// The kinds of object the service manages, named by their REST resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    Pods,
    Services,
    Secrets,
    PersistentVolumeClaims,
    Ingresses,
    NetworkPolicies,
}

impl Resource {
    pub const ALL: [Resource; 6] = [
        Resource::Pods,
        Resource::Services,
        Resource::Secrets,
        Resource::PersistentVolumeClaims,
        Resource::Ingresses,
        Resource::NetworkPolicies,
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
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Resource::Ingresses | Resource::NetworkPolicies => "networking.k8s.io/v1",
            _ => "v1",
        }
    }

    /// The API group, `""` for the core group (as RBAC rules spell it).
    pub fn group(self) -> &'static str {
        self.api_version().rsplit_once('/').map_or("", |(group, _)| group)
    }

    fn group_version_path(self) -> String {
        match self.api_version() {
            "v1" => "/api/v1".to_string(),
            group_version => format!("/apis/{group_version}"),
        }
    }
}

/// What happens to an object's dependents when it is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropagationPolicy {
    /// The object goes at once; the garbage collector removes dependents afterwards.
    Background,
    /// The object stays (with a deletion timestamp) until its dependents are gone.
    Foreground,
    Orphan,
}

impl PropagationPolicy {
    fn as_str(self) -> &'static str {
        match self {
            PropagationPolicy::Background => "Background",
            PropagationPolicy::Foreground => "Foreground",
            PropagationPolicy::Orphan => "Orphan",
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

/// One page of a list, as the API server sends it.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub items: Vec<Value>,
    pub resource_version: String,
    /// Token for the next page; `None` on the last one.
    pub continue_token: Option<String>,
}

/// Every object matching a selector (or what was kept of each), and the `resourceVersion` a
/// watch can start from.
#[derive(Debug, Clone, Default)]
pub struct ObjectList<T = Value> {
    pub items: Vec<T>,
    pub resource_version: String,
}

/// A Kubernetes client bound to one namespace. Cheap to share across threads (`&Client`).
pub struct Client {
    agent: ureq::Agent,
    api_url: String,
    namespace: String,
    token: BearerToken,
    retry: RetryPolicy,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("api_url", &self.api_url)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(config: &Config) -> Result<Client, ConfigError> {
        let mut agent_config = agent_config()
            .timeout_connect(Some(config.timeouts.connect))
            .timeout_global(Some(config.timeouts.call))
            .user_agent(USER_AGENT)
            .max_idle_connections_per_host(32);
        if config.api_url.starts_with("https://") {
            agent_config = agent_config.tls_config(tls_trusting_only(config)?);
        }
        Ok(Client {
            agent: agent_config.build().new_agent(),
            api_url: config.api_url.clone(),
            namespace: config.namespace.clone(),
            token: BearerToken::new(config.token_file.clone(), config.token_refresh),
            retry: config.retry,
        })
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Creates an object (it must carry `metadata.name`).
    ///
    /// A create whose answer was lost may be retried and then meet its own object: an existing
    /// object that carries every label of `object` and is not being deleted is taken as the
    /// result instead of an `AlreadyExists` error.
    pub fn create(&self, resource: Resource, object: &Value) -> Result<Value, KubeError> {
        let body = serde_json::to_vec(object).map_err(|e| KubeError::InvalidResponse(e.to_string()))?;
        let url = self.collection_url(resource);
        match self.call(Method::POST, &url, Some(("application/json", &body))) {
            Err(KubeError::AlreadyExists(message)) => {
                let name = object["metadata"]["name"].as_str().unwrap_or_default();
                let existing = self.get(resource, name)?;
                if carries_labels_of(&existing, object) && existing["metadata"]["deletionTimestamp"].is_null() {
                    log::info!("adopting existing {} {name}", resource.plural());
                    Ok(existing)
                } else {
                    Err(KubeError::AlreadyExists(message))
                }
            }
            other => other,
        }
    }

    pub fn get(&self, resource: Resource, name: &str) -> Result<Value, KubeError> {
        self.call(Method::GET, &self.object_url(resource, name), None)
    }

    /// One page of objects matching `label_selector` (Kubernetes selector syntax).
    pub fn list_page(
        &self,
        resource: Resource,
        label_selector: &str,
        limit: Option<u32>,
        continue_token: Option<&str>,
    ) -> Result<ListPage, KubeError> {
        let mut query = vec![("labelSelector", label_selector.to_string())];
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        if let Some(token) = continue_token {
            query.push(("continue", token.to_string()));
        }
        let url = format!("{}?{}", self.collection_url(resource), query_string(&query));
        let mut list = self.call(Method::GET, &url, None)?;
        let items = match list.get_mut("items").map(Value::take) {
            Some(Value::Array(items)) => items,
            Some(Value::Null) => Vec::new(),
            _ => {
                return Err(KubeError::InvalidResponse(format!(
                    "a {} list without items",
                    resource.plural()
                )));
            }
        };
        let metadata = &list["metadata"];
        Ok(ListPage {
            items,
            resource_version: metadata["resourceVersion"].as_str().unwrap_or_default().to_string(),
            continue_token: metadata["continue"]
                .as_str()
                .filter(|t| !t.is_empty())
                .map(str::to_string),
        })
    }

    /// Every object matching `label_selector`, fetched page by page.
    pub fn list(&self, resource: Resource, label_selector: &str) -> Result<ObjectList, KubeError> {
        self.list_kept(resource, label_selector, Some)
    }

    /// What `keep` makes of every object matching `label_selector`, applied to each page as it
    /// arrives: only one page of whole objects is held at a time, where a list of thousands of
    /// pods would be hundreds of MiB as JSON values.
    pub fn list_kept<T>(
        &self,
        resource: Resource,
        label_selector: &str,
        mut keep: impl FnMut(Value) -> Option<T>,
    ) -> Result<ObjectList<T>, KubeError> {
        let first = self.list_page(resource, label_selector, Some(LIST_PAGE_SIZE), None)?;
        let mut all = ObjectList {
            items: first.items.into_iter().filter_map(&mut keep).collect(),
            resource_version: first.resource_version,
        };
        let mut next = first.continue_token;
        while let Some(token) = next {
            match self.list_page(resource, label_selector, Some(LIST_PAGE_SIZE), Some(&token)) {
                Ok(page) => {
                    all.items.extend(page.items.into_iter().filter_map(&mut keep));
                    next = page.continue_token;
                }
                // The snapshot behind the token is gone; like client-go's pager, fall back
                // to one consistent unpaginated list.
                Err(KubeError::Expired(_)) => {
                    let whole = self.list_page(resource, label_selector, None, None)?;
                    return Ok(ObjectList {
                        items: whole.items.into_iter().filter_map(keep).collect(),
                        resource_version: whole.resource_version,
                    });
                }
                Err(error) => return Err(error),
            }
        }
        Ok(all)
    }

    pub fn delete(
        &self,
        resource: Resource,
        name: &str,
        propagation: PropagationPolicy,
    ) -> Result<Deletion, KubeError> {
        let url = format!(
            "{}?{}",
            self.object_url(resource, name),
            query_string(&[("propagationPolicy", propagation.as_str().to_string())])
        );
        match self.call(Method::DELETE, &url, None) {
            Ok(_) => Ok(Deletion::Deleted),
            Err(KubeError::NotFound(_)) => Ok(Deletion::AlreadyGone),
            Err(error) => Err(error),
        }
    }

    /// Applies an RFC 7386 JSON merge patch. A `metadata.resourceVersion` in the patch makes
    /// it conditional: a concurrent change answers `Conflict`.
    pub fn merge_patch(&self, resource: Resource, name: &str, patch: &Value) -> Result<Value, KubeError> {
        let body = serde_json::to_vec(patch).map_err(|e| KubeError::InvalidResponse(e.to_string()))?;
        let url = self.object_url(resource, name);
        self.call(Method::PATCH, &url, Some(("application/merge-patch+json", &body)))
    }

    fn collection_url(&self, resource: Resource) -> String {
        format!(
            "{}{}/namespaces/{}/{}",
            self.api_url,
            resource.group_version_path(),
            self.namespace,
            resource.plural()
        )
    }

    fn object_url(&self, resource: Resource, name: &str) -> String {
        format!("{}/{}", self.collection_url(resource), percent_encode(name))
    }

    /// Sends a call with retries: transient failures back off (honouring `Retry-After`), and
    /// a 401 re-reads the token file once, since the token may just have been rotated.
    ///
    /// Every call is safe to repeat: GET and DELETE are idempotent, a merge patch gives the
    /// same result twice, and a repeated create meets its own object (see `create`).
    fn call(&self, method: Method, url: &str, body: Option<(&str, &[u8])>) -> Result<Value, KubeError> {
        let mut retry = 0;
        let mut reread_token = false;
        loop {
            let token = self.token.current();
            let error = match self.send_once(&method, url, body, token.as_deref()) {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            if matches!(error, KubeError::Unauthorized(_)) && !reread_token {
                reread_token = true;
                if self.token.reread_differs_from(token.as_deref()) {
                    continue;
                }
            }
            match self.retry.delay(&error, retry) {
                Some(wait) => {
                    log::warn!("{method} {} failed ({error}); retrying in {wait:?}", redact_query(url));
                    thread::sleep(wait);
                    retry += 1;
                }
                None => return Err(error),
            }
        }
    }

    fn send_once(
        &self,
        method: &Method,
        url: &str,
        body: Option<(&str, &[u8])>,
        token: Option<&str>,
    ) -> Result<Value, KubeError> {
        let mut response = self.send(method, url, body, token, None)?;
        let bytes = read_body(&mut response)?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| KubeError::InvalidResponse(format!("{method} {}: {e}", redact_query(url))))
    }

    /// Sends one request; a non-2xx answer becomes the error its body describes.
    /// `timeout` replaces the agent's whole-call timeout (watches outlive it).
    fn send(
        &self,
        method: &Method,
        url: &str,
        body: Option<(&str, &[u8])>,
        token: Option<&str>,
        timeout: Option<Duration>,
    ) -> Result<http::Response<ureq::Body>, KubeError> {
        let mut request = http::Request::builder()
            .method(method.clone())
            .uri(url)
            .header("Accept", "application/json");
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let sent = match body {
            Some((content_type, bytes)) => request
                .header("Content-Type", content_type)
                .body(bytes)
                .map_err(|e| KubeError::Transport(e.to_string()))
                .and_then(|request| self.run(request, timeout)),
            None => request
                .body(())
                .map_err(|e| KubeError::Transport(e.to_string()))
                .and_then(|request| self.run(request, timeout)),
        };
        let mut response = sent?;
        let code = response.status().as_u16();
        if (200..300).contains(&code) {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get("Retry-After")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Err(KubeError::from_response(code, retry_after, &read_body(&mut response)?))
    }

    fn run(
        &self,
        request: http::Request<impl ureq::AsSendBody>,
        timeout: Option<Duration>,
    ) -> Result<http::Response<ureq::Body>, KubeError> {
        use ureq::RequestExt;
        let sent = match timeout {
            None => self.agent.run(request),
            Some(timeout) => request
                .with_agent(&self.agent)
                .configure()
                .timeout_global(Some(timeout))
                .run(),
        };
        sent.map_err(KubeError::from_transport)
    }

    /// Watches `resource` from `resource_version` (from a list) for about `duration`, after
    /// which the API server ends the stream and the caller watches again from the last
    /// resourceVersion it saw. A gone resourceVersion yields `KubeError::Expired`: list again.
    pub fn watch(
        &self,
        resource: Resource,
        label_selector: &str,
        resource_version: &str,
        duration: Duration,
    ) -> Result<Watch, KubeError> {
        let query = query_string(&[
            ("watch", "1".to_string()),
            ("allowWatchBookmarks", "true".to_string()),
            ("resourceVersion", resource_version.to_string()),
            ("labelSelector", label_selector.to_string()),
            ("timeoutSeconds", duration.as_secs().max(1).to_string()),
        ]);
        let url = format!("{}?{query}", self.collection_url(resource));
        let token = self.token.current();
        // The server closes the stream after `duration`; a silent one is given up a bit later.
        let give_up = duration + WATCH_GRACE;
        let response = match self.send(&Method::GET, &url, None, token.as_deref(), Some(give_up)) {
            Err(KubeError::Unauthorized(message)) => {
                self.token.reread_differs_from(token.as_deref());
                return Err(KubeError::Unauthorized(message));
            }
            other => other?,
        };
        Ok(Watch {
            lines: BufReader::new(response.into_body().into_reader()),
            done: false,
        })
    }
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    Added(Value),
    Modified(Value),
    Deleted(Value),
    /// Nothing of interest changed up to this resourceVersion.
    Bookmark(String),
}

/// The events of one watch stream, in order. It ends when the server closes the stream; an
/// error (a broken connection, a cut event, an `ERROR` event) ends it too.
pub struct Watch {
    lines: BufReader<ureq::BodyReader<'static>>,
    done: bool,
}

impl Iterator for Watch {
    type Item = Result<WatchEvent, KubeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut line = String::new();
        loop {
            line.clear();
            match self.lines.read_line(&mut line) {
                Ok(0) => {
                    self.done = true;
                    return None;
                }
                Ok(_) if line.trim().is_empty() => continue,
                Ok(_) => {
                    let event = if line.ends_with('\n') {
                        parse_watch_event(&line)
                    } else {
                        Err(KubeError::InvalidResponse(
                            "the watch stream ended inside an event".to_string(),
                        ))
                    };
                    self.done = event.is_err();
                    return Some(event);
                }
                Err(error) => {
                    self.done = true;
                    let message = format!("the watch stream broke: {error}");
                    return Some(Err(if error.kind() == std::io::ErrorKind::TimedOut {
                        KubeError::Timeout(message)
                    } else {
                        KubeError::Transport(message)
                    }));
                }
            }
        }
    }
}

fn parse_watch_event(line: &str) -> Result<WatchEvent, KubeError> {
    let invalid = |why: &str| KubeError::InvalidResponse(format!("a watch event {why}"));
    let mut event: Value = serde_json::from_str(line).map_err(|e| invalid(&format!("is not JSON: {e}")))?;
    let object = event
        .get_mut("object")
        .map(Value::take)
        .ok_or_else(|| invalid("has no object"))?;
    match event["type"].as_str() {
        Some("ADDED") => Ok(WatchEvent::Added(object)),
        Some("MODIFIED") => Ok(WatchEvent::Modified(object)),
        Some("DELETED") => Ok(WatchEvent::Deleted(object)),
        Some("BOOKMARK") => {
            let resource_version = object["metadata"]["resourceVersion"].as_str().unwrap_or_default();
            Ok(WatchEvent::Bookmark(resource_version.to_string()))
        }
        Some("ERROR") => {
            let code = object["code"]
                .as_u64()
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(500);
            Err(KubeError::from_response(code, None, object.to_string().as_bytes()))
        }
        _ => Err(invalid("has an unknown type")),
    }
}

/// A whole response body, up to a sane size.
fn read_body(response: &mut http::Response<ureq::Body>) -> Result<Vec<u8>, KubeError> {
    response
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE_BYTES)
        .read_to_vec()
        .map_err(KubeError::from_transport)
}

/// A TLS configuration that trusts the CAs in `config.ca_file` and nothing else: the API
/// server's certificate is issued by the cluster's own CA, never by a public one.
fn tls_trusting_only(config: &Config) -> Result<TlsConfig, ConfigError> {
    let path = config.ca_file.display();
    let pem =
        fs::read(&config.ca_file).map_err(|e| ConfigError::new("KUBE_CA_FILE", format!("cannot read {path}: {e}")))?;
    let certificates = certificates_in(&pem);
    if certificates.is_empty() {
        return Err(ConfigError::new(
            "KUBE_CA_FILE",
            format!("{path} holds no PEM certificate"),
        ));
    }
    Ok(tls_trusting(certificates))
}

/// Whether `existing` carries every label that `wanted` asks for (and `wanted` asks for some).
fn carries_labels_of(existing: &Value, wanted: &Value) -> bool {
    match wanted["metadata"]["labels"].as_object() {
        Some(labels) if !labels.is_empty() => labels
            .iter()
            .all(|(key, value)| existing["metadata"]["labels"].get(key) == Some(value)),
        _ => false,
    }
}

/// The service-account token, re-read from disk so that rotation needs no restart.
struct BearerToken {
    file: PathBuf,
    refresh_every: Duration,
    cached: Mutex<CachedToken>,
}

#[derive(Default)]
struct CachedToken {
    value: Option<String>,
    read_at: Option<Instant>,
}

impl BearerToken {
    fn new(file: PathBuf, refresh_every: Duration) -> BearerToken {
        BearerToken {
            file,
            refresh_every,
            cached: Mutex::new(CachedToken::default()),
        }
    }

    fn current(&self) -> Option<String> {
        let mut cached = lock(&self.cached);
        if cached.read_at.is_none_or(|at| at.elapsed() >= self.refresh_every) {
            self.read_into(&mut cached);
        }
        cached.value.clone()
    }

    /// Re-reads the file now; true when the token is not the one that was refused.
    fn reread_differs_from(&self, refused: Option<&str>) -> bool {
        let mut cached = lock(&self.cached);
        self.read_into(&mut cached);
        cached.value.as_deref() != refused
    }

    fn read_into(&self, cached: &mut CachedToken) {
        cached.read_at = Some(Instant::now());
        match fs::read_to_string(&self.file) {
            Ok(text) if !text.trim().is_empty() => cached.value = Some(text.trim().to_string()),
            // The kubelet replaces the file atomically, but a mount can briefly show it
            // missing or empty: the last good token is still the best one we have.
            _ if cached.value.is_some() => {
                log::warn!("cannot read the token in {}; keeping the last one", self.file.display());
            }
            _ => {}
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A URL for the log: continue tokens are long and say nothing to a reader.
fn redact_query(url: &str) -> &str {
    url.split_once('?').map_or(url, |(path, _)| path)
}

/// A label selector that matches labels equal to all of `labels`.
pub fn selector(labels: &[(&str, &str)]) -> String {
    labels
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",")
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_env(&|name| vars.get(name).cloned())
    }

    #[test]
    fn in_cluster_url_comes_from_the_service_env() {
        let c = config(&[
            ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
        ])
        .unwrap();
        assert_eq!(c.api_url, "https://10.0.0.1:443");
        let c = config(&[
            ("KUBERNETES_SERVICE_HOST", "fd00::1"),
            ("KUBERNETES_SERVICE_PORT", "6443"),
        ])
        .unwrap();
        assert_eq!(c.api_url, "https://[fd00::1]:6443");
        assert_eq!(
            c.token_file,
            PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount/token")
        );
        assert_eq!(
            c.ca_file,
            PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
        );
    }

    #[test]
    fn overrides_win_and_bad_values_name_their_variable() {
        let c = config(&[
            ("KUBE_API_URL", "http://127.0.0.1:8001/"),
            ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
            ("KUBE_TOKEN_FILE", "/tmp/t"),
            ("NAMESPACE", "sandboxes"),
        ])
        .unwrap();
        assert_eq!(c.api_url, "http://127.0.0.1:8001");
        assert_eq!(c.token_file, PathBuf::from("/tmp/t"));
        assert_eq!(c.namespace, "sandboxes");

        assert_eq!(config(&[]).unwrap_err().variable, "KUBE_API_URL");
        assert_eq!(
            config(&[("KUBE_API_URL", "127.0.0.1:8001")]).unwrap_err().variable,
            "KUBE_API_URL"
        );
        let bad_port = config(&[("KUBERNETES_SERVICE_HOST", "h"), ("KUBERNETES_SERVICE_PORT", "https")]);
        assert_eq!(bad_port.unwrap_err().variable, "KUBERNETES_SERVICE_PORT");
        let bad_namespace = config(&[("KUBE_API_URL", "http://h"), ("NAMESPACE", "Open_Hands")]);
        assert_eq!(bad_namespace.unwrap_err().variable, "NAMESPACE");
    }

    #[test]
    fn errors_come_from_status_bodies_and_plain_text() {
        let status = br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \"a\" already exists","reason":"AlreadyExists","details":{"name":"a","kind":"pods"},"code":409}"#;
        assert_eq!(
            KubeError::from_response(409, None, status),
            KubeError::AlreadyExists("pods \"a\" already exists".into())
        );
        let throttled = KubeError::from_response(
            429,
            Some(Duration::from_secs(3)),
            b"Too many requests, please try again later.\n",
        );
        assert_eq!(
            throttled,
            KubeError::TooManyRequests {
                message: "Too many requests, please try again later.".into(),
                retry_after: Some(Duration::from_secs(3))
            }
        );
        let server_timeout = br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"The create operation against pods could not be completed at this time, please try again.","reason":"ServerTimeout","details":{"name":"create","kind":"pods","retryAfterSeconds":2},"code":500}"#;
        assert_eq!(
            KubeError::from_response(500, None, server_timeout).retry_after(),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            KubeError::from_response(502, None, b""),
            KubeError::Server {
                code: 502,
                message: "HTTP 502".into(),
                retry_after: None
            }
        );
    }

    #[test]
    fn any_error_body_gives_an_error_not_a_panic() {
        for body in [
            &b"\xff\xfe not utf-8"[..],
            b"[1,2]",
            b"null",
            b"{\"message\": 7}",
            b"{\"details\": []}",
            b"",
        ] {
            for code in [400, 401, 404, 409, 410, 418, 422, 429, 500, 599] {
                let error = KubeError::from_response(code, None, body);
                assert!(!error.message().is_empty(), "{code} {body:?}");
            }
        }
    }

    #[test]
    fn retry_delays_grow_honour_retry_after_and_stop() {
        let policy = RetryPolicy::default();
        let server = KubeError::Server {
            code: 503,
            message: String::new(),
            retry_after: None,
        };
        assert_eq!(policy.delay(&server, 0), Some(Duration::from_millis(200)));
        assert_eq!(policy.delay(&server, 1), Some(Duration::from_millis(400)));
        assert_eq!(policy.delay(&server, 3), None, "four attempts in all");
        let throttled = |secs| KubeError::TooManyRequests {
            message: String::new(),
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(policy.delay(&throttled(1), 0), Some(Duration::from_secs(1)));
        assert_eq!(
            policy.delay(&throttled(60), 0),
            None,
            "too long a wait goes back to the caller"
        );
        assert_eq!(policy.delay(&KubeError::NotFound(String::new()), 0), None);
    }
}
