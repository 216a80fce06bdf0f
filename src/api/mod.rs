//! The HTTP API (API.md §3) on `tiny_http`: routing, the API key, bodies and JSON answers.
//!
//! Reads answer from the store; writes and `/image_exists` go to the controller.

mod list;
pub(crate) mod query;

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde_json::{Value, json};
use tiny_http::{Header, Method, Request, Response};

use crate::config::HttpLimits;
use crate::controller::{Controller, Started};
use crate::error::{Error, HeadRefusal};
use crate::metrics;
use crate::runtime::ReportedStatus;
use crate::sys;
use list::{EncodedViews, ListBody};
use query::{percent_decode, query_values};

/// Bodies above this are refused with 413 (a start request is a few KiB).
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Request heads beyond these are refused (414, 431) without being kept: error.rs says them.
const MAX_REQUEST_LINE: usize = 8 * 1024;
const MAX_HEADER_BYTES: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;
const MAX_BATCH_IDS: usize = 1000;

/// The HTTP layer: the controller it serves, the JSON of `/list` answers kept for the next, and
/// what graceful shutdown needs to know.
pub struct Api<'a> {
    controller: &'a Controller,
    encoded_views: EncodedViews,
    shutting_down: AtomicBool,
    in_flight: AtomicUsize,
}

/// The endpoints, by path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Start,
    Stop,
    Pause,
    Resume,
    List,
    Runtime(String),
    Session(String),
    SessionsBatch,
    RegistryPrefix,
    ImageExists,
    Health,
    Liveness,
    Readiness,
    Metrics,
}

impl Endpoint {
    pub(crate) fn parse(path: &str) -> Option<Endpoint> {
        let endpoint = match path {
            "/start" => Endpoint::Start,
            "/stop" => Endpoint::Stop,
            "/pause" => Endpoint::Pause,
            "/resume" => Endpoint::Resume,
            "/list" => Endpoint::List,
            "/sessions/batch" => Endpoint::SessionsBatch,
            "/registry_prefix" => Endpoint::RegistryPrefix,
            "/image_exists" => Endpoint::ImageExists,
            "/health" => Endpoint::Health,
            "/liveness" => Endpoint::Liveness,
            "/readiness" => Endpoint::Readiness,
            "/metrics" => Endpoint::Metrics,
            _ => {
                if let Some(id) = path
                    .strip_prefix("/runtime/")
                    .filter(|id| !id.is_empty() && !id.contains('/'))
                {
                    Endpoint::Runtime(percent_decode(id))
                } else if let Some(id) = path
                    .strip_prefix("/sessions/")
                    .filter(|id| !id.is_empty() && !id.contains('/'))
                {
                    Endpoint::Session(percent_decode(id))
                } else {
                    return None;
                }
            }
        };
        Some(endpoint)
    }

    fn method(&self) -> Method {
        match self {
            Endpoint::Start | Endpoint::Stop | Endpoint::Pause | Endpoint::Resume => Method::Post,
            _ => Method::Get,
        }
    }

    /// Probes, health checks and metrics answer without the API key.
    fn is_open(&self) -> bool {
        matches!(
            self,
            Endpoint::Health | Endpoint::Liveness | Endpoint::Readiness | Endpoint::Metrics
        )
    }

    /// The `endpoint` label of the HTTP metrics: the route, never an id.
    fn label(&self) -> &'static str {
        match self {
            Endpoint::Start => "/start",
            Endpoint::Stop => "/stop",
            Endpoint::Pause => "/pause",
            Endpoint::Resume => "/resume",
            Endpoint::List => "/list",
            Endpoint::Runtime(_) => "/runtime/{id}",
            Endpoint::Session(_) => "/sessions/{id}",
            Endpoint::SessionsBatch => "/sessions/batch",
            Endpoint::RegistryPrefix => "/registry_prefix",
            Endpoint::ImageExists => "/image_exists",
            Endpoint::Health => "/health",
            Endpoint::Liveness => "/liveness",
            Endpoint::Readiness => "/readiness",
            Endpoint::Metrics => "/metrics",
        }
    }
}

/// The API's server on `0.0.0.0:port`, with its limits on connections and request heads.
pub fn listen(port: u16, limits: HttpLimits) -> std::io::Result<tiny_http::Server> {
    let listener = bind_no_delay(("0.0.0.0", port))?;
    tiny_http::Server::from_listener_with_limits(listener, None, server_limits(limits)).map_err(std::io::Error::other)
}

/// The limits the connection layer enforces, from the configuration's.
pub(crate) fn server_limits(limits: HttpLimits) -> tiny_http::Limits {
    tiny_http::Limits {
        max_connections: limits.max_connections,
        header_timeout: Some(limits.header_timeout),
        idle_timeout: Some(limits.idle_timeout),
        // A client that stops reading its answer holds a worker: no longer than a slow head.
        write_timeout: Some(limits.header_timeout),
        max_request_line: MAX_REQUEST_LINE,
        max_header_bytes: MAX_HEADER_BYTES,
        max_headers: MAX_HEADERS,
        error_body: |code| Error::HeadRefused(HeadRefusal::of_code(code)).body(),
        error_content_type: "application/json",
        overloaded_response: raw_response(&Error::Overloaded),
    }
}

/// A whole HTTP answer to `error`, for a connection the server closes at once.
fn raw_response(error: &Error) -> Vec<u8> {
    let body = error.body();
    let code = error.status_code();
    let reason = tiny_http::StatusCode(code).default_reason_phrase();
    let retry_after = error
        .retry_after()
        .map(|seconds| format!("Retry-After: {seconds}\r\n"))
        .unwrap_or_default();
    let mut response = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\n{retry_after}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend(body);
    response
}

/// A listening socket with `TCP_NODELAY`, which Linux passes on to every accepted connection.
/// tiny_http writes an answer's head and body separately, and Nagle's algorithm would hold the
/// body back until the client's delayed ACK: 40 ms on every answer over about 1 KiB.
pub fn bind_no_delay(address: impl std::net::ToSocketAddrs) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(address)?;
    sys::set_no_delay(&listener)?;
    Ok(listener)
}

const JSON: &str = "application/json";

/// A successful answer: status code and body (JSON, but for `/metrics`).
struct Reply<'a> {
    code: u16,
    body: Body<'a>,
    content_type: &'static str,
}

enum Body<'a> {
    /// Encoded in full.
    Bytes(Vec<u8>),
    /// Encoded while it is sent.
    List(ListBody<'a>),
}

impl Reply<'_> {
    fn ok(body: impl Serialize) -> Result<Reply<'static>, Error> {
        Reply::with_code(200, body)
    }

    fn with_code(code: u16, body: impl Serialize) -> Result<Reply<'static>, Error> {
        let body = serde_json::to_vec(&body).map_err(|e| Error::Internal(format!("cannot encode the answer: {e}")))?;
        Ok(Reply {
            code,
            body: Body::Bytes(body),
            content_type: JSON,
        })
    }
}

impl<'a> Api<'a> {
    pub fn new(controller: &'a Controller) -> Api<'a> {
        Api {
            controller,
            encoded_views: EncodedViews::default(),
            shutting_down: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// From now on `/readiness` answers 503, so that the Service stops routing here, and
    /// requests that still arrive are refused.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Waits until no request is being served, or `grace` has passed; true when none is.
    pub fn wait_idle(&self, grace: Duration) -> bool {
        let deadline = Instant::now() + grace;
        while self.in_flight.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Serves requests from `server` until it is unblocked; one call per worker thread.
    pub fn serve(&self, server: &tiny_http::Server) {
        for request in server.incoming_requests() {
            self.handle(request);
        }
    }

    fn handle(&self, mut request: Request) {
        let _in_flight = InFlight::new(&self.in_flight);
        let started = Instant::now();
        let method = request.method().clone();
        let url = request.url().to_string();
        let (path, query) = url.split_once('?').unwrap_or((&url, ""));
        let endpoint = Endpoint::parse(path);
        let label = endpoint.as_ref().map_or("other", Endpoint::label);
        let answer = self.answer(&mut request, endpoint, query);
        let code = respond(request, &method, path, answer);
        let took = started.elapsed();
        self.controller.metrics().request(label, code, took);
        log::debug!("{method} {path} {code} in {took:?}");
    }

    /// Routes a request: its endpoint (`None`: no such path), method, key and the store's readiness decide whether it is
    /// served at all.
    fn answer(&self, request: &mut Request, endpoint: Option<Endpoint>, query: &str) -> Result<Reply<'_>, Error> {
        let endpoint = endpoint.ok_or(Error::NotFound)?;
        let expected = endpoint.method();
        if *request.method() != expected {
            return Err(Error::MethodNotAllowed {
                allow: if expected == Method::Post { "POST" } else { "GET" },
            });
        }
        if !endpoint.is_open() && !authorized(self.controller, request) {
            return Err(Error::Unauthorized);
        }
        if self.shutting_down.load(Ordering::SeqCst) && !matches!(endpoint, Endpoint::Health | Endpoint::Liveness) {
            return Err(Error::ShuttingDown);
        }
        // Until the store is rebuilt from the cluster, a missing runtime may only not be loaded
        // yet, and a start could duplicate one: every runtime endpoint waits.
        if !endpoint.is_open() && !self.controller.store().is_ready() {
            return Err(Error::NotReady);
        }
        self.dispatch(endpoint, request, query)
    }

    /// Each endpoint's answer. Reads answer from the store alone.
    fn dispatch(&self, endpoint: Endpoint, request: &mut Request, query: &str) -> Result<Reply<'_>, Error> {
        let controller = self.controller;
        let (store, config, now) = (controller.store(), controller.config(), SystemTime::now());
        match endpoint {
            Endpoint::Start => match controller.start(&json_body(request)?)? {
                Started::Created(runtime) => Reply::with_code(201, runtime),
                Started::Existing(runtime) => Reply::ok(runtime),
            },
            Endpoint::Stop => Reply::ok(controller.stop(&runtime_id(&json_body(request)?)?)?),
            Endpoint::Pause => Reply::ok(controller.pause(&runtime_id(&json_body(request)?)?)?),
            Endpoint::Resume => Reply::ok(controller.resume(&runtime_id(&json_body(request)?)?)?),
            Endpoint::ImageExists => {
                let image = query_values(query, "image").into_iter().find(|i| !i.is_empty());
                let image = image.ok_or_else(|| Error::invalid("image", "is required"))?;
                Reply::ok(json!({"exists": controller.image_exists(&image)?}))
            }
            Endpoint::List => {
                let include_paused = query_values(query, "include_paused")
                    .iter()
                    .any(|v| v == "true" || v == "1");
                let list = ListBody::new(config, &self.encoded_views, store.snapshots(), include_paused, now);
                Ok(Reply {
                    code: 200,
                    body: Body::List(list),
                    content_type: JSON,
                })
            }
            Endpoint::Runtime(id) => {
                let found = store.snapshot(&id).ok_or(Error::RuntimeNotFound(id))?;
                Reply::ok(found.view(config, now))
            }
            Endpoint::Session(session_id) => {
                let found = store.snapshots_of_sessions(&[session_id.as_str()]).pop().flatten();
                Reply::ok(found.ok_or(Error::SessionNotFound(session_id))?.view(config, now))
            }
            Endpoint::SessionsBatch => {
                let ids = batch_ids(query)?;
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                let found = store.snapshots_of_sessions(&ids);
                let views: Vec<_> = found.iter().map(|s| s.as_ref().map(|s| s.view(config, now))).collect();
                Reply::ok(views)
            }
            Endpoint::RegistryPrefix => Reply::ok(json!({"registry_prefix": config.registry_prefix})),
            Endpoint::Health | Endpoint::Liveness => Reply::ok(json!({"status": "ok"})),
            Endpoint::Readiness if store.is_ready() => Reply::ok(json!({"status": "ok"})),
            Endpoint::Readiness => Err(Error::NotReady),
            Endpoint::Metrics => {
                let mut runtimes = [0; 4];
                for snapshot in store.snapshots() {
                    let status = ReportedStatus::Is(snapshot.status(config, now)).as_str();
                    if let Some(index) = metrics::STATUSES.iter().position(|s| *s == status) {
                        runtimes[index] += 1;
                    }
                }
                let pools: Vec<(&str, usize)> = config
                    .warm_pools
                    .iter()
                    .map(|pool| (pool.name.as_str(), store.ready_warm_pods(&pool.name)))
                    .collect();
                let text = controller.metrics().render(runtimes, &pools, controller.kube().calls());
                Ok(Reply {
                    code: 200,
                    body: Body::Bytes(text.into_bytes()),
                    content_type: "text/plain; version=0.0.4; charset=utf-8",
                })
            }
        }
    }
}

/// Sends a reply, or an error as its JSON (API.md §3) with `Allow` or `Retry-After` where due.
fn respond(request: Request, method: &Method, path: &str, answer: Result<Reply<'_>, Error>) -> u16 {
    let (code, body, content_type, extra_headers) = match answer {
        Ok(reply) => (reply.code, reply.body, reply.content_type, Vec::new()),
        Err(error) => {
            let mut headers = Vec::new();
            if let Error::MethodNotAllowed { allow } = &error {
                headers.push(("Allow", allow.to_string()));
            }
            if let Some(seconds) = error.retry_after() {
                headers.push(("Retry-After", seconds.to_string()));
            }
            // Not ready is the expected answer to probes while the store loads, shutting down
            // while the service stops.
            if error.status_code() >= 500 && !matches!(error, Error::NotReady | Error::ShuttingDown) {
                log::warn!("{method} {path}: {error}");
            }
            (error.status_code(), Body::Bytes(error.body()), JSON, headers)
        }
    };
    let (body, length): (Box<dyn Read + '_>, _) = match body {
        Body::Bytes(bytes) => {
            let length = bytes.len();
            (Box::new(std::io::Cursor::new(bytes)), Some(length))
        }
        // Sent in chunks, its length unknown until the end.
        Body::List(list) => (Box::new(list), None),
    };
    let mut response = Response::new(code.into(), Vec::new(), body, length, None);
    let headers = std::iter::once(("Content-Type", content_type.to_string())).chain(extra_headers);
    for (name, value) in headers {
        if let Some(header) = header(name, &value) {
            response.add_header(header);
        }
    }
    if let Err(error) = request.respond(response) {
        log::debug!("{method} {path}: the client went away: {error}");
    }
    code
}

/// Counts a request as in flight until it is answered.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn new(count: &'a AtomicUsize) -> InFlight<'a> {
        count.fetch_add(1, Ordering::SeqCst);
        InFlight(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A header from our own ASCII names and values, which tiny_http always accepts.
fn header(name: &str, value: &str) -> Option<Header> {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
}

/// The session ids of `/sessions/batch`: `ids` repeated and/or comma-separated.
fn batch_ids(query: &str) -> Result<Vec<String>, Error> {
    let ids: Vec<String> = query_values(query, "ids")
        .iter()
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .collect();
    if ids.len() > MAX_BATCH_IDS {
        return Err(Error::invalid(
            "ids",
            format!("at most {MAX_BATCH_IDS} ids per request"),
        ));
    }
    Ok(ids)
}

/// Compares the `X-API-Key` header with the configured key in constant time.
fn authorized(controller: &Controller, request: &Request) -> bool {
    let expected = controller.config().api_key.as_bytes();
    request
        .headers()
        .iter()
        .filter(|h| h.field.equiv("X-API-Key"))
        .any(|h| constant_time_eq(h.value.as_str().as_bytes(), expected))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads a JSON body of at most `MAX_BODY_BYTES`.
fn json_body(request: &mut Request) -> Result<Value, Error> {
    if request.body_length().is_some_and(|length| length > MAX_BODY_BYTES) {
        return Err(Error::PayloadTooLarge { limit: MAX_BODY_BYTES });
    }
    let mut body = Vec::new();
    request
        .as_reader()
        .take(MAX_BODY_BYTES as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| Error::invalid("body", format!("cannot be read: {e}")))?;
    if body.len() > MAX_BODY_BYTES {
        return Err(Error::PayloadTooLarge { limit: MAX_BODY_BYTES });
    }
    serde_json::from_slice(&body).map_err(|e| Error::invalid("body", format!("is not valid JSON: {e}")))
}

fn runtime_id(body: &Value) -> Result<String, Error> {
    match body.get("runtime_id") {
        Some(Value::String(id)) if !id.is_empty() => Ok(id.clone()),
        None | Some(Value::Null) => Err(Error::invalid("runtime_id", "is required")),
        Some(_) => Err(Error::invalid("runtime_id", "must be a non-empty string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_route_to_endpoints() {
        assert_eq!(Endpoint::parse("/sessions/batch"), Some(Endpoint::SessionsBatch));
        assert_eq!(Endpoint::parse("/sessions/abc"), Some(Endpoint::Session("abc".into())));
        assert_eq!(Endpoint::parse("/runtime/0f"), Some(Endpoint::Runtime("0f".into())));
        assert_eq!(Endpoint::parse("/runtime/"), None);
        assert_eq!(Endpoint::parse("/sessions/a/b"), None);
        assert_eq!(Endpoint::parse("/nope"), None);
    }

    #[test]
    fn keys_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }
}
