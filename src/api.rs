//! The HTTP API (SPEC §3) on `tiny_http`: routing, the API key, bodies and JSON answers.
//!
//! Reads answer from the store and never call Kubernetes; writes go to the controller.

use std::io::Read;
use std::time::{Instant, SystemTime};

use serde::Serialize;
use serde_json::{Value, json};
use tiny_http::{Header, Method, Request, Response};

use crate::controller::{Controller, Started};
use crate::error::Error;
use crate::store::{EncodedView, Snapshot};

/// Bodies above this are refused with 413 (a start request is a few KiB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
const MAX_BATCH_IDS: usize = 1000;
/// How much of a `/list` answer is encoded at a time: a few runtimes' worth.
const LIST_CHUNK_BYTES: usize = 16 * 1024;

/// The endpoints, by path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
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
}

impl Endpoint {
    fn parse(path: &str) -> Option<Endpoint> {
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

    /// Probes and health checks answer without the API key.
    fn is_open(&self) -> bool {
        matches!(self, Endpoint::Health | Endpoint::Liveness | Endpoint::Readiness)
    }
}

/// A successful answer: status code and JSON body.
struct Reply<'a> {
    code: u16,
    body: Body<'a>,
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
        })
    }
}

/// The `/list` answer, encoded a few runtimes at a time as the client reads it: however many
/// runtimes there are, a request holds their snapshots and a few KiB of JSON, never the whole
/// answer. The store's lock is held to take the snapshots and, after each chunk, to keep the
/// views encoded in it for the next list (see `EncodedView`).
struct ListBody<'a> {
    runtimes: std::vec::IntoIter<Snapshot>,
    include_paused: bool,
    controller: &'a Controller,
    now: SystemTime,
    /// Views encoded for this answer, for the store to keep.
    fresh: Vec<EncodedView>,
    /// Encoded and not yet read, from `read_from`.
    encoded: Vec<u8>,
    read_from: usize,
    started: bool,
    finished: bool,
}

impl<'a> ListBody<'a> {
    fn new(controller: &'a Controller, include_paused: bool, now: SystemTime) -> ListBody<'a> {
        ListBody {
            runtimes: controller.store().all().into_iter(),
            include_paused,
            controller,
            now,
            fresh: Vec::new(),
            encoded: b"{\"runtimes\":[".to_vec(),
            read_from: 0,
            started: false,
            finished: false,
        }
    }

    /// Encodes the next runtimes; false once everything has been encoded.
    fn encode_more(&mut self) -> std::io::Result<bool> {
        if self.finished {
            return Ok(false);
        }
        self.encoded.clear();
        self.read_from = 0;
        while self.encoded.len() < LIST_CHUNK_BYTES {
            let Some(snapshot) = self.runtimes.next() else {
                self.encoded.extend_from_slice(b"]}");
                self.finished = true;
                break;
            };
            if snapshot.runtime.is_paused() && !self.include_paused {
                continue;
            }
            if self.started {
                self.encoded.push(b',');
            }
            self.started = true;
            match &snapshot.encoded {
                Some(encoded) => self.encoded.extend_from_slice(&encoded.json),
                None => {
                    let start = self.encoded.len();
                    let view = snapshot.view(self.controller.config(), self.now);
                    serde_json::to_writer(&mut self.encoded, &view)?;
                    self.fresh.extend(EncodedView::of(&snapshot, &self.encoded[start..]));
                }
            }
        }
        if !self.fresh.is_empty() {
            self.controller.store().keep_encoded(std::mem::take(&mut self.fresh));
        }
        Ok(true)
    }
}

impl Read for ListBody<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.read_from == self.encoded.len() {
            if !self.encode_more()? {
                return Ok(0);
            }
        }
        let left = &self.encoded[self.read_from..];
        let n = left.len().min(out.len());
        out[..n].copy_from_slice(&left[..n]);
        self.read_from += n;
        Ok(n)
    }
}

/// The API's server on `0.0.0.0:port`.
pub fn listen(port: u16) -> std::io::Result<tiny_http::Server> {
    let listener = bind_no_delay(("0.0.0.0", port))?;
    tiny_http::Server::from_listener(listener, None).map_err(std::io::Error::other)
}

/// A listening socket with `TCP_NODELAY`, which Linux passes on to every accepted connection.
/// tiny_http writes an answer's head and body separately, and Nagle's algorithm would hold the
/// body back until the client's delayed ACK: 40 ms on every answer over about 1 KiB.
pub fn bind_no_delay(address: impl std::net::ToSocketAddrs) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(address)?;
    set_no_delay(&listener)?;
    Ok(listener)
}

#[cfg(unix)]
fn set_no_delay(listener: &std::net::TcpListener) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: the descriptor is a TCP socket owned by `listener`, and the value is a c_int
    // of the length given, as setsockopt(2) asks.
    let result = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&raw const on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(unix))]
fn set_no_delay(_: &std::net::TcpListener) -> std::io::Result<()> {
    Ok(())
}

/// Serves requests from `server` until it is unblocked; one call per worker thread.
pub fn serve(server: &tiny_http::Server, controller: &Controller) {
    for request in server.incoming_requests() {
        handle(controller, request);
    }
}

fn handle(controller: &Controller, mut request: Request) {
    let started = Instant::now();
    let method = request.method().clone();
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let answer = answer(controller, &mut request, path, query);
    let (code, body, extra_headers) = match answer {
        Ok(reply) => (reply.code, reply.body, Vec::new()),
        Err(error) => {
            let mut headers = Vec::new();
            if let Error::MethodNotAllowed { allow } = &error {
                headers.push(("Allow", allow.to_string()));
            }
            if let Some(seconds) = error.retry_after() {
                headers.push(("Retry-After", seconds.to_string()));
            }
            // Not ready is the expected answer to probes while the store loads.
            if error.status_code() >= 500 && !matches!(error, Error::NotReady) {
                log::warn!("{method} {path}: {error}");
            }
            let body = json!({"detail": error.to_string(), "error": error.code()});
            (error.status_code(), Body::Bytes(body.to_string().into_bytes()), headers)
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
    let headers = std::iter::once(("Content-Type", "application/json".to_string())).chain(extra_headers);
    for (name, value) in headers {
        if let Some(header) = header(name, &value) {
            response.add_header(header);
        }
    }
    if let Err(error) = request.respond(response) {
        log::debug!("{method} {path}: the client went away: {error}");
    }
    log::debug!("{method} {path} {code} in {:?}", started.elapsed());
}

/// A header from our own ASCII names and values, which tiny_http always accepts.
fn header(name: &str, value: &str) -> Option<Header> {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
}

fn answer<'a>(controller: &'a Controller, request: &mut Request, path: &str, query: &str) -> Result<Reply<'a>, Error> {
    let endpoint = Endpoint::parse(path).ok_or(Error::NotFound)?;
    let expected = endpoint.method();
    if *request.method() != expected {
        return Err(Error::MethodNotAllowed {
            allow: if expected == Method::Post { "POST" } else { "GET" },
        });
    }
    if !endpoint.is_open() && !authorized(controller, request) {
        return Err(Error::Unauthorized);
    }
    let store = controller.store();
    // Until the store is rebuilt from the cluster, a missing runtime may only not be loaded
    // yet, and a start could duplicate one: every runtime endpoint waits.
    if !endpoint.is_open() && !store.is_ready() {
        return Err(Error::NotReady);
    }
    let (config, now) = (controller.config(), SystemTime::now());
    match endpoint {
        Endpoint::Start => match controller.start(&json_body(request)?)? {
            Started::Created(runtime) => Reply::with_code(201, runtime),
            Started::Existing(runtime) => Reply::ok(runtime),
        },
        Endpoint::Stop => Reply::ok(controller.stop(&runtime_id(&json_body(request)?)?)?),
        Endpoint::Pause => Reply::ok(controller.pause(&runtime_id(&json_body(request)?)?)?),
        Endpoint::Resume => Reply::ok(controller.resume(&runtime_id(&json_body(request)?)?)?),
        Endpoint::List => {
            let include_paused = query_values(query, "include_paused")
                .iter()
                .any(|v| v == "true" || v == "1");
            Ok(Reply {
                code: 200,
                body: Body::List(ListBody::new(controller, include_paused, now)),
            })
        }
        Endpoint::Runtime(id) => {
            let found = store.find(&id).ok_or(Error::RuntimeNotFound(id))?;
            Reply::ok(found.view(config, now))
        }
        Endpoint::Session(session_id) => {
            let found = store.of_sessions(&[session_id.as_str()]).pop().flatten();
            Reply::ok(found.ok_or(Error::SessionNotFound(session_id))?.view(config, now))
        }
        Endpoint::SessionsBatch => {
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
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            let found = store.of_sessions(&ids);
            let views: Vec<_> = found.iter().map(|s| s.as_ref().map(|s| s.view(config, now))).collect();
            Reply::ok(views)
        }
        Endpoint::RegistryPrefix => Reply::ok(json!({"registry_prefix": controller.config().registry_prefix})),
        Endpoint::ImageExists => {
            let image = query_values(query, "image").into_iter().find(|i| !i.is_empty());
            let image = image.ok_or_else(|| Error::invalid("image", "is required"))?;
            Reply::ok(json!({"exists": controller.image_exists(&image)?}))
        }
        Endpoint::Health | Endpoint::Liveness => Reply::ok(json!({"status": "ok"})),
        Endpoint::Readiness if store.is_ready() => Reply::ok(json!({"status": "ok"})),
        Endpoint::Readiness => Err(Error::NotReady),
    }
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

/// Every value of `name` in a query string, decoded.
fn query_values(query: &str, name: &str) -> Vec<String> {
    query
        .split('&')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key) == name).then(|| percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                i += 3;
            }
            (b'+', _) => {
                decoded.push(b' ');
                i += 1;
            }
            (byte, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
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
    fn queries_decode_repeated_values() {
        assert_eq!(query_values("ids=a&ids=b%2Cc&x=1", "ids"), ["a", "b,c"]);
        assert_eq!(
            query_values("image=ghcr.io%2Fopenhands%2Fagent%3A1", "image"),
            ["ghcr.io/openhands/agent:1"]
        );
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn keys_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }
}
