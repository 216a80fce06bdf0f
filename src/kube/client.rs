//! The requests: create, get, list (page by page), delete, merge patch and watch, in one
//! namespace, each retried where that is safe and useful.

use std::fmt;
use std::thread;
use std::time::Duration;

use serde_json::Value;
use ureq::http::{self, Method};

use super::config::{Config, tls_trusting_only};
use super::error::{KubeError, RetryPolicy};
use super::resource::{Deletion, Resource};
use super::token::BearerToken;
use super::watch::Watch;
use crate::env::ConfigError;
use crate::http_client::{agent_config, percent_encode, query_string};
use crate::metrics::KubeCalls;
use crate::object;

/// Page size for lists. A page is held whole as JSON values while it is read: 100 pods are a
/// few MiB, 500 (what kubectl asks for) would double the service's memory at 5,000 runtimes.
const LIST_PAGE_SIZE: u32 = 100;
/// A list of thousands of pods is several MiB; anything beyond this is not a sane answer.
const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;
/// How long past its own timeout a silent watch stream is waited for.
const WATCH_GRACE: Duration = Duration::from_secs(15);
const USER_AGENT: &str = concat!("openhands-k8s-runtime/", env!("CARGO_PKG_VERSION"));

/// One page of a list, as the API server sends it.
#[derive(Debug)]
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
    calls: KubeCalls,
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
            calls: KubeCalls::default(),
        })
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
                let name = object::name(object).unwrap_or_default();
                let existing = self.get(resource, name)?;
                if object::carries_labels_of(&existing, object) && !object::is_being_deleted(&existing) {
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

    /// Deletes an object in the background: it goes at once, and the garbage collector removes
    /// its dependents afterwards (for an anchor: everything else of its runtime).
    pub fn delete(&self, resource: Resource, name: &str) -> Result<Deletion, KubeError> {
        let url = format!("{}?propagationPolicy=Background", self.object_url(resource, name));
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
        let (verb, resource) = call_labels(method, url);
        self.calls
            .count(verb, resource, sent.as_ref().map_or(0, |r| r.status().as_u16()));
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
        Ok(Watch::new(response.into_body()))
    }
}

/// The calls this client made, for `/metrics`.
impl Client {
    pub fn calls(&self) -> &KubeCalls {
        &self.calls
    }
}

/// The verb and resource of a call to `url`, as RBAC names them.
fn call_labels(method: &Method, url: &str) -> (&'static str, &'static str) {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let mut segments = path.rsplit('/');
    let (last, before_last) = (segments.next().unwrap_or(""), segments.next().unwrap_or(""));
    let plural = |segment: &str| Resource::ALL.into_iter().map(Resource::plural).find(|p| *p == segment);
    let (resource, named) = match (plural(last), plural(before_last)) {
        (Some(resource), _) => (resource, false),
        (None, Some(resource)) => (resource, true),
        (None, None) => ("other", false),
    };
    let verb = match *method {
        Method::GET if query.contains("watch=") => "watch",
        Method::GET if named => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "other",
    };
    (verb, resource)
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

/// A URL for the log: continue tokens are long and say nothing to a reader.
fn redact_query(url: &str) -> &str {
    url.split_once('?').map_or(url, |(path, _)| path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_labelled_as_rbac_names_them() {
        let base = "https://10.96.0.1/api/v1/namespaces/openhands";
        let cases = [
            (Method::GET, format!("{base}/pods?labelSelector=a"), ("list", "pods")),
            (Method::GET, format!("{base}/pods?watch=1&resourceVersion=5"), ("watch", "pods")),
            (Method::GET, format!("{base}/secrets/runtime-1"), ("get", "secrets")),
            (Method::POST, format!("{base}/events"), ("create", "events")),
            (Method::PATCH, format!("{base}/secrets/runtime-1"), ("patch", "secrets")),
            (
                Method::DELETE,
                "https://10.96.0.1/apis/networking.k8s.io/v1/namespaces/openhands/ingresses/runtime-1?propagationPolicy=Background".to_string(),
                ("delete", "ingresses"),
            ),
            (Method::GET, "https://10.96.0.1/version".to_string(), ("list", "other")),
        ];
        for (method, url, expected) in cases {
            assert_eq!(call_labels(&method, &url), expected, "{method} {url}");
        }
    }
}
