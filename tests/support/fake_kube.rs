//! A fake Kubernetes API server, run in-process by tests: real paths, real `Status` bodies,
//! bearer tokens over TLS, throttling and storage faults on demand, and a simulated kubelet.
//! Every object it receives is checked against the strict v1.32.2 schema of its kind; a
//! violation fails the test that caused it (when the `FakeKube` is dropped).

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::agent_bed::AgentBed;
use super::cluster::{self, Cluster, DeleteOptions, RESOURCES, ResourceType, StatusError};
use super::ingress::{self, IngressStandIn};
use super::kubelet::PodFate;
use super::node::Node;
use super::schema;
use super::selector::Selector;
use super::tls::TestPki;

pub const NAMESPACE: &str = "openhands";
pub const TOKEN: &str = "fake-service-account-token";

/// A failure to answer with instead of doing the work.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// API Priority and Fairness throttling: 429 in plain text with `Retry-After` (§3.6).
    TooManyRequests { retry_after_secs: u64 },
    /// etcd unreachable: 500 `ServerTimeout` with `retryAfterSeconds` and `Retry-After` (§3.7).
    ServerTimeout { retry_after_secs: u64 },
    /// 500 `InternalError`, no `Retry-After`.
    InternalError,
    /// 503 in plain text, as a proxy in front of the API server answers.
    ServiceUnavailable,
    /// 504 `Timeout`.
    GatewayTimeout,
    /// 410 `Expired`, as for a continue token past compaction.
    Expired,
    /// No answer at all until `FakeKube::release_hung` (a test kills the caller meanwhile).
    Hang,
}

/// Which requests get a fault, and how many of them.
#[derive(Debug, Clone)]
pub struct FaultRule {
    method: Option<String>,
    path_contains: Option<String>,
    skip: usize,
    times: usize,
    after_commit: bool,
    fault: Fault,
}

impl FaultRule {
    /// The next matching request gets `fault`.
    pub fn new(fault: Fault) -> FaultRule {
        FaultRule {
            method: None,
            path_contains: None,
            skip: 0,
            times: 1,
            after_commit: false,
            fault,
        }
    }

    /// Only requests with this method whose path contains `path_part`.
    pub fn on(mut self, method: &str, path_part: &str) -> FaultRule {
        self.method = Some(method.to_string());
        self.path_contains = Some(path_part.to_string());
        self
    }

    /// Let `n` matching requests through first (so the fault hits the (n+1)th).
    pub fn skip(mut self, n: usize) -> FaultRule {
        self.skip = n;
        self
    }

    pub fn times(mut self, n: usize) -> FaultRule {
        self.times = n;
        self
    }

    /// Do the work, then answer with the fault: the caller cannot know the call took effect.
    pub fn after_commit(mut self) -> FaultRule {
        self.after_commit = true;
        self
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m == method)
            && self.path_contains.as_deref().is_none_or(|p| path.contains(p))
    }
}

/// One request the fake answered.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub code: u16,
    pub token: Option<String>,
    /// When it was answered.
    pub at: Instant,
}

/// How to start a fake.
pub struct Builder {
    tls: bool,
    tokens: Option<Vec<String>>,
    namespaces: Vec<String>,
    tick: Duration,
    port: u16,
    agents: Option<AgentBed>,
    pod_ip: Option<String>,
}

impl Builder {
    /// The simulated kubelet reports `ip` as every pod's address.
    pub fn pod_ip(mut self, ip: &str) -> Builder {
        self.pod_ip = Some(ip.to_string());
        self
    }

    /// Pods of an agent-server image really run the agent server of `bed` (`node.rs`).
    pub fn run_agents(mut self, bed: AgentBed) -> Builder {
        self.agents = Some(bed);
        self
    }

    /// Serve HTTPS with a CA made for this fake (`FakeKube::ca_pem`).
    pub fn tls(mut self) -> Builder {
        self.tls = true;
        self
    }

    /// Accept no token at all (`kubectl proxy` style), for local trials.
    pub fn without_auth(mut self) -> Builder {
        self.tokens = None;
        self
    }

    /// How often the controllers (kubelet, garbage collector) run: one pod step per tick.
    pub fn tick(mut self, tick: Duration) -> Builder {
        self.tick = tick;
        self
    }

    pub fn port(mut self, port: u16) -> Builder {
        self.port = port;
        self
    }

    pub fn start(self) -> FakeKube {
        let address = format!("127.0.0.1:{}", self.port);
        // TCP_NODELAY as the Go API server has: without it each answer over ~1 KiB waits for
        // the client's delayed ACK.
        let listener = openhands_k8s_runtime::testing::bind_no_delay(&address).expect("bind the fake API server");
        let (server, ca_pem) = if self.tls {
            let pki = TestPki::generate("fake-kube-ca");
            let config = tiny_http::SslConfig {
                certificate: pki.server_cert_pem.into_bytes(),
                private_key: pki.server_key_pem.into_bytes(),
            };
            (
                tiny_http::Server::from_listener(listener, Some(config)).expect("start the fake API server"),
                Some(pki.ca_pem),
            )
        } else {
            (
                tiny_http::Server::from_listener(listener, None).expect("start the fake API server"),
                None,
            )
        };
        let port = server.server_addr().to_ip().expect("an IP address").port();
        let scheme = if self.tls { "https" } else { "http" };
        let namespaces: Vec<&str> = self.namespaces.iter().map(String::as_str).collect();
        let mut cluster = Cluster::new(&namespaces);
        cluster.runs_agents = self.agents.is_some();
        cluster.pod_ip = self.pod_ip.clone();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                cluster,
                requests: Vec::new(),
                faults: Vec::new(),
                tokens: self.tokens,
                denied: Vec::new(),
                latency: Duration::ZERO,
                watch_epoch: 0,
                break_watches_mid_line: false,
                hung_release: 0,
                watches_held: false,
                watches_sent: HashMap::new(),
                check_role: false,
                stopping: false,
            }),
            changed: Condvar::new(),
        });
        let server = Arc::new(server);
        let (stop, stopped) = mpsc::channel::<()>();
        let mut node_stop = None;
        let ticker = {
            let shared = shared.clone();
            let tick = self.tick;
            thread::spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                    let changed = shared.lock().cluster.tick();
                    if changed {
                        shared.changed.notify_all();
                    }
                }
            })
        };
        let node = self.agents.map(|bed| Arc::new(Node::new(bed)));
        let mut threads = Vec::new();
        if let Some(node) = node.clone() {
            let shared = shared.clone();
            let (stop_node, node_stopped) = mpsc::channel::<()>();
            node_stop = Some(stop_node);
            threads.push(thread::spawn(move || {
                // Process exits and probes are looked at this often; the probes keep their periods.
                while let Err(mpsc::RecvTimeoutError::Timeout) = node_stopped.recv_timeout(Duration::from_millis(20)) {
                    let views = node.observe(&shared.lock().cluster);
                    let reports = node.act(views);
                    if node.report(&mut shared.lock().cluster, reports) {
                        shared.changed.notify_all();
                    }
                }
            }));
        }
        let acceptor = {
            let shared = shared.clone();
            let server = server.clone();
            thread::spawn(move || {
                for request in server.incoming_requests() {
                    let shared = shared.clone();
                    thread::spawn(move || serve(&shared, request));
                }
            })
        };
        FakeKube {
            url: format!("{scheme}://127.0.0.1:{port}"),
            ca_pem,
            shared,
            server,
            stop: Some(stop),
            node_stop,
            node,
            threads: [ticker, acceptor].into_iter().chain(threads).collect(),
        }
    }
}

struct State {
    cluster: Cluster,
    requests: Vec<RecordedRequest>,
    faults: Vec<FaultRule>,
    /// Accepted bearer tokens; `None` accepts requests without one.
    tokens: Option<Vec<String>>,
    /// `(verb, resource)` pairs RBAC refuses.
    denied: Vec<(String, String)>,
    latency: Duration,
    /// Bumped to end every open watch stream.
    watch_epoch: u64,
    /// Whether ended streams stop in the middle of an event line.
    break_watches_mid_line: bool,
    /// Bumped to release hung requests.
    hung_release: u64,
    /// While set, watch requests wait before they start.
    watches_held: bool,
    /// Per resource (plural), the highest resourceVersion a watch stream has sent up to.
    watches_sent: HashMap<&'static str, u64>,
    check_role: bool,
    stopping: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running fake API server; stops when dropped.
pub struct FakeKube {
    url: String,
    ca_pem: Option<String>,
    shared: Arc<Shared>,
    server: Arc<tiny_http::Server>,
    stop: Option<mpsc::Sender<()>>,
    node_stop: Option<mpsc::Sender<()>>,
    node: Option<Arc<Node>>,
    threads: Vec<JoinHandle<()>>,
}

impl FakeKube {
    /// Plain HTTP, token `TOKEN` required, namespace `NAMESPACE`, a 20 ms controller tick.
    pub fn builder() -> Builder {
        Builder {
            tls: false,
            tokens: Some(vec![TOKEN.to_string()]),
            namespaces: vec![NAMESPACE.to_string(), "default".to_string()],
            tick: Duration::from_millis(20),
            port: 0,
            agents: None,
            pod_ip: None,
        }
    }

    pub fn start() -> FakeKube {
        FakeKube::builder().start()
    }

    /// The node that really runs agent-server pods (`Builder::run_agents`).
    pub fn node(&self) -> Option<&Node> {
        self.node.as_deref()
    }

    /// An ingress controller's stand-in routing by this cluster's Ingresses (port 0: any).
    pub fn start_ingress(&self, port: u16) -> IngressStandIn {
        let shared = self.shared.clone();
        IngressStandIn::start(port, move |host| ingress::route(&shared.lock().cluster, host))
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The CA that signed the fake's certificate (with `Builder::tls`).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// From now on only these tokens are accepted (others answer 401).
    pub fn accept_tokens(&self, tokens: &[&str]) {
        self.shared.lock().tokens = Some(tokens.iter().map(|t| t.to_string()).collect());
    }

    pub fn add_fault(&self, rule: FaultRule) {
        self.shared.lock().faults.push(rule);
    }

    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().latency = latency;
    }

    /// RBAC refuses `verb` (get, list, create, delete, patch) on `resource` with 403.
    pub fn deny(&self, verb: &str, resource: &str) {
        self.shared.lock().denied.push((verb.to_string(), resource.to_string()));
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// How many requests had this method and a path containing `path_part`.
    pub fn count(&self, method: &str, path_part: &str) -> usize {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.method == method && r.path.contains(path_part))
            .count()
    }

    pub fn objects(&self, resource: &str) -> Vec<Value> {
        self.shared.lock().cluster.objects(resource)
    }

    pub fn object(&self, resource: &str, name: &str) -> Option<Value> {
        self.shared.lock().cluster.object(resource, NAMESPACE, name)
    }

    /// Every object in the fake, as `(resource, name)`.
    pub fn object_names(&self) -> Vec<(String, String)> {
        self.shared
            .lock()
            .cluster
            .all_objects()
            .map(|(k, _)| (k.plural.to_string(), k.name.clone()))
            .collect()
    }

    /// Creates an object as another client would (it is validated like any POST).
    pub fn insert(&self, resource: &str, object: &Value) -> Value {
        let rt = RESOURCES
            .iter()
            .find(|r| r.plural == resource)
            .expect("a known resource");
        let body = serde_json::to_vec(object).expect("JSON");
        let created = self.shared.lock().cluster.create(rt, NAMESPACE, &body);
        self.shared.changed.notify_all();
        created.unwrap_or_else(|e| panic!("insert {resource}: {}", e.status))
    }

    /// Applies a merge patch as another client would (`kubectl annotate`, `kubectl patch`).
    pub fn merge_patch(&self, resource: &str, name: &str, patch: &Value) -> Value {
        let rt = RESOURCES
            .iter()
            .find(|r| r.plural == resource)
            .expect("a known resource");
        let body = serde_json::to_vec(patch).expect("JSON");
        let patched = self.shared.lock().cluster.merge_patch(rt, NAMESPACE, name, &body);
        self.shared.changed.notify_all();
        patched.unwrap_or_else(|e| panic!("patch {resource} {name}: {}", e.status))
    }

    /// Deletes an object behind the service's back, as `kubectl delete` would.
    pub fn delete_by_operator(&self, resource: &str, name: &str) -> bool {
        let deleted = self.shared.lock().cluster.delete_by_operator(resource, NAMESPACE, name);
        self.shared.changed.notify_all();
        deleted
    }

    /// Pods whose image contains `image_part` (or, for `label=value`, with that label) live out
    /// `fate` (the default is `Ready`).
    pub fn kubelet_rule(&self, image_part: &str, fate: PodFate) {
        self.shared.lock().cluster.add_rule(image_part, fate);
    }

    /// Forgets every kubelet rule: new pods become Ready again.
    pub fn clear_kubelet_rules(&self) {
        self.shared.lock().cluster.clear_rules();
    }

    /// Changes the fate of an existing pod; it goes on from `ContainerCreating`.
    pub fn set_pod_fate(&self, name: &str, fate: PodFate) -> bool {
        self.shared.lock().cluster.set_fate(NAMESPACE, name, fate)
    }

    /// Sets a pod's status by hand, e.g. from `tests/fixtures/k8s-examples/`.
    pub fn set_pod_status(&self, name: &str, status: Value) -> bool {
        let done = self.shared.lock().cluster.set_pod_status(NAMESPACE, name, status);
        self.shared.changed.notify_all();
        done
    }

    /// Stops pods from moving along their lives until called again with `false` (terminating
    /// pods still go).
    pub fn freeze_kubelet(&self, frozen: bool) {
        self.shared.lock().cluster.kubelet_frozen = frozen;
    }

    /// Holds terminating pods in `Terminating` until called again with `false`.
    pub fn hold_terminating(&self, hold: bool) {
        self.shared.lock().cluster.hold_terminating = hold;
    }

    /// Ends every open watch stream cleanly, as a proxy cutting long connections would.
    pub fn drop_watches(&self) {
        let mut state = self.shared.lock();
        state.break_watches_mid_line = false;
        state.watch_epoch += 1;
        drop(state);
        self.shared.changed.notify_all();
    }

    /// Ends every open watch stream in the middle of an event line.
    pub fn break_watches(&self) {
        let mut state = self.shared.lock();
        state.break_watches_mid_line = true;
        state.watch_epoch += 1;
        drop(state);
        self.shared.changed.notify_all();
    }

    /// Ends every open watch stream and holds new watch requests until called with `false`:
    /// whatever changes meanwhile must be caught up with when they go on.
    pub fn hold_watches(&self, hold: bool) {
        let mut state = self.shared.lock();
        state.watches_held = hold;
        if hold {
            state.break_watches_mid_line = false;
            state.watch_epoch += 1;
        }
        drop(state);
        self.shared.changed.notify_all();
    }

    /// How many plain lists (not watches) of `resource` were made.
    pub fn list_count(&self, resource: &str) -> usize {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.method == "GET" && r.path.ends_with(resource) && !r.query.contains("watch="))
            .count()
    }

    /// Waits until a request satisfying `what` has been received.
    pub fn wait_for_request(&self, timeout: Duration, what: impl Fn(&RecordedRequest) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if state.requests.iter().any(&what) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// How many watch requests of `resource` were made.
    pub fn watch_count(&self, resource: &str) -> usize {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.path.ends_with(resource) && r.query.contains("watch="))
            .count()
    }

    /// Lets requests held by `Fault::Hang` go (unanswered).
    pub fn release_hung(&self) {
        self.shared.lock().hung_release += 1;
        self.shared.changed.notify_all();
    }

    /// Makes every continue token issued so far expire (410).
    pub fn compact(&self) {
        self.shared.lock().cluster.compact();
    }

    /// On drop, every request must be one the Role of deploy.yaml permits (set when the real
    /// service talks to this fake: across the suite, no call it makes may lack a permission).
    pub fn check_calls_against_role(&self) {
        self.shared.lock().check_role = true;
    }

    /// Turns off the check of the fake's own objects (costly for benchmarks).
    pub fn skip_self_validation(&self) {
        self.shared.lock().cluster.validate_own_objects = false;
    }

    /// Forgets the violations so far (for tests that provoke them on purpose).
    pub fn clear_schema_violations(&self) {
        self.shared.lock().cluster.violations.clear();
    }

    pub fn schema_violations(&self) -> Vec<String> {
        self.shared.lock().cluster.violations.clone()
    }

    /// Waits until `condition` holds for the fake's objects, re-checking on every change.
    pub fn wait_for(&self, timeout: Duration, mut condition: impl FnMut(&FakeView) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if condition(&FakeView(&state)) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl FakeKube {
    /// Waits until object `name` satisfies `condition`, and returns it as it was then.
    pub fn wait_for_object(
        &self,
        resource: &str,
        name: &str,
        timeout: Duration,
        condition: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let mut seen = None;
        self.wait_for(timeout, |cluster| {
            seen = cluster.object(resource, name).filter(|object| condition(object));
            seen.is_some()
        });
        seen
    }
}

/// A read-only look at the fake's objects, for `FakeKube::wait_for`.
pub struct FakeView<'a>(&'a State);

impl FakeView<'_> {
    pub fn object(&self, resource: &str, name: &str) -> Option<Value> {
        self.0.cluster.object(resource, NAMESPACE, name)
    }

    pub fn objects(&self, resource: &str) -> Vec<Value> {
        self.0.cluster.objects(resource)
    }

    /// Whether a watch of `resource` has sent every change up to `resource_version`.
    pub fn watch_sent(&self, resource: &str, resource_version: u64) -> bool {
        self.0
            .watches_sent
            .get(resource)
            .is_some_and(|sent| *sent >= resource_version)
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.changed.notify_all();
        self.stop.take();
        self.node_stop.take();
        self.server.unblock();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        let violations = self.schema_violations();
        if !violations.is_empty() && !thread::panicking() {
            panic!(
                "objects sent to the fake API server break the Kubernetes schemas:\n{}",
                violations.join("\n")
            );
        }
        let state = self.shared.lock();
        if state.check_role && !thread::panicking() {
            let granted = super::deploy::role_permissions();
            let missing: std::collections::BTreeSet<_> = state
                .requests
                .iter()
                .filter_map(super::deploy::permission_of)
                .filter(|permission| !granted.contains(permission))
                .collect();
            assert!(
                missing.is_empty(),
                "the Role in deploy.yaml does not grant calls the service made: {missing:?}"
            );
        }
    }
}

// ---- serving ----

struct Reply {
    code: u16,
    content_type: &'static str,
    body: Body,
    headers: Vec<(&'static str, String)>,
    special: Option<Special>,
}

/// A body as sent, or as JSON still to encode: a list is encoded once the state lock is
/// released, since a page of pods is large and other requests would wait for it.
enum Body {
    Text(String),
    Json(Value),
}

/// Answers that are not one body.
enum Special {
    Hang,
    Watch(WatchSpec),
}

struct WatchSpec {
    rt: &'static ResourceType,
    namespace: String,
    selector: Selector,
    /// `None` starts with the current objects as ADDED events.
    resource_version: Option<u64>,
    timeout: Duration,
    bookmarks: bool,
}

impl Reply {
    fn new(code: u16, content_type: &'static str, body: Body) -> Reply {
        Reply {
            code,
            content_type,
            body,
            headers: Vec::new(),
            special: None,
        }
    }

    fn json(code: u16, body: &Value) -> Reply {
        Reply::new(code, "application/json", Body::Text(body.to_string()))
    }

    /// A JSON answer encoded after the lock is released.
    fn unencoded(code: u16, body: Value) -> Reply {
        Reply::new(code, "application/json", Body::Json(body))
    }

    fn text(code: u16, text: &str) -> Reply {
        Reply {
            headers: vec![("X-Content-Type-Options", "nosniff".to_string())],
            ..Reply::new(code, "text/plain; charset=utf-8", Body::Text(text.to_string()))
        }
    }

    fn error(error: StatusError) -> Reply {
        let mut reply = Reply::json(error.code, &error.status);
        if let Some(seconds) = error.status["details"]["retryAfterSeconds"].as_u64() {
            reply.headers.push(("Retry-After", seconds.to_string()));
        }
        reply
    }

    fn fault(fault: &Fault, method: &str, rt: Option<&ResourceType>) -> Reply {
        let plural = rt.map_or("", |r| r.plural);
        match fault {
            Fault::TooManyRequests { retry_after_secs } => {
                let mut reply = Reply::text(429, "Too many requests, please try again later.\n");
                reply.headers.push(("Retry-After", retry_after_secs.to_string()));
                reply
            }
            Fault::ServerTimeout { retry_after_secs } => {
                let op = match method {
                    "POST" => "create",
                    "DELETE" => "delete",
                    "PATCH" => "patch",
                    _ => "get",
                };
                let message = format!(
                    "The {op} operation against {plural} could not be completed at this time, please try again."
                );
                let details = json!({"name": op, "kind": plural, "retryAfterSeconds": retry_after_secs});
                Reply::error(StatusError::new(500, "ServerTimeout", &message, Some(details)))
            }
            Fault::InternalError => Reply::error(StatusError::new(
                500,
                "InternalError",
                "Internal error occurred: etcdserver: request timed out",
                Some(json!({"causes": [{"message": "etcdserver: request timed out"}]})),
            )),
            Fault::ServiceUnavailable => {
                Reply::text(503, "upstream connect error or disconnect/reset before headers\n")
            }
            Fault::Hang => Reply {
                special: Some(Special::Hang),
                ..Reply::text(0, "")
            },
            Fault::Expired => Reply::error(StatusError::expired(
                "The provided continue parameter is too old to display a consistent list result.",
            )),
            Fault::GatewayTimeout => Reply::error(StatusError::new(
                504,
                "Timeout",
                "Timeout: request did not complete within requested timeout - context deadline exceeded",
                Some(json!({"retryAfterSeconds": 0})),
            )),
        }
    }
}

fn serve(shared: &Shared, mut request: tiny_http::Request) {
    let method = request.method().as_str().to_uppercase();
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').map_or((url.as_str(), ""), |(p, q)| (p, q));
    let header = |name: &str| {
        request
            .headers()
            .iter()
            .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str().to_string())
    };
    let token = header("Authorization").and_then(|v| v.strip_prefix("Bearer ").map(str::to_string));
    let content_type = header("Content-Type").unwrap_or_default();
    let mut body = Vec::new();
    let _ = request.as_reader().read_to_end(&mut body);

    let latency = shared.lock().latency;
    if !latency.is_zero() {
        thread::sleep(latency);
    }
    let mut reply = {
        let mut state = shared.lock();
        let reply = answer(&mut state, &method, path, query, token.as_deref(), &content_type, &body);
        state.requests.push(RecordedRequest {
            method: method.clone(),
            path: path.to_string(),
            query: query.to_string(),
            code: reply.code,
            token: token.clone(),
            at: Instant::now(),
        });
        reply
    };
    shared.changed.notify_all();
    match reply.special.take() {
        Some(Special::Hang) => return hang(shared),
        Some(Special::Watch(spec)) => return stream_watch(shared, request, spec),
        None => {}
    }

    let body = match reply.body {
        Body::Text(text) => text,
        Body::Json(value) => value.to_string(),
    };
    let mut response = tiny_http::Response::from_string(body).with_status_code(reply.code);
    let mut headers = reply.headers;
    headers.push(("Content-Type", reply.content_type.to_string()));
    headers.push(("Cache-Control", "no-cache, private".to_string()));
    for (name, value) in headers {
        if let Ok(header) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(header);
        }
    }
    let _ = request.respond(response);
}

/// Where a path leads.
enum Route {
    Version,
    Discovery(Value),
    Namespace(String),
    Collection {
        rt: &'static ResourceType,
        namespace: String,
    },
    Object {
        rt: &'static ResourceType,
        namespace: String,
        name: String,
    },
    Unknown,
}

fn route(path: &str) -> Route {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let (group, rest) = match parts.as_slice() {
        ["version"] => return Route::Version,
        ["api"] => return Route::Discovery(discovery_api()),
        ["apis"] => return Route::Discovery(discovery_apis()),
        ["api", "v1"] => return Route::Discovery(resource_list("")),
        ["apis", "networking.k8s.io", "v1"] => return Route::Discovery(resource_list("networking.k8s.io")),
        ["api", "v1", "namespaces", namespace] => return Route::Namespace(namespace.to_string()),
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", group, "v1", rest @ ..] => (*group, rest),
        _ => return Route::Unknown,
    };
    let lookup = |plural: &str| cluster::resource(group, plural);
    match rest {
        ["namespaces", namespace, plural] => lookup(plural).map_or(Route::Unknown, |rt| Route::Collection {
            rt,
            namespace: namespace.to_string(),
        }),
        ["namespaces", namespace, plural, name] | ["namespaces", namespace, plural, name, "status"] => lookup(plural)
            .map_or(Route::Unknown, |rt| Route::Object {
                rt,
                namespace: namespace.to_string(),
                name: name.to_string(),
            }),
        _ => Route::Unknown,
    }
}

fn verb_of(method: &str, route: &Route) -> &'static str {
    match (method, route) {
        ("GET", Route::Collection { .. }) => "list",
        ("GET", _) => "get",
        ("POST", _) => "create",
        ("DELETE", _) => "delete",
        ("PATCH", _) => "patch",
        ("PUT", _) => "update",
        _ => "unknown",
    }
}

fn answer(
    state: &mut State,
    method: &str,
    path: &str,
    query: &str,
    token: Option<&str>,
    content_type: &str,
    body: &[u8],
) -> Reply {
    let route = route(path);
    if matches!(route, Route::Version) {
        return Reply::json(
            200,
            &json!({"major": "1", "minor": "32", "gitVersion": "v1.32.2",
            "gitCommit": "67a30c0adcf52bd3f56ff0893ce19966be12991f", "gitTreeState": "clean",
            "buildDate": "2025-02-12T21:19:07Z", "goVersion": "go1.23.6", "compiler": "gc", "platform": "linux/amd64"}),
        );
    }
    if let Some(tokens) = &state.tokens {
        // A bad token is never downgraded to anonymous (§3.4).
        if !token.is_some_and(|t| tokens.iter().any(|accepted| accepted == t)) {
            return Reply::error(StatusError::new(401, "Unauthorized", "Unauthorized", None));
        }
    }
    let rt = match &route {
        Route::Collection { rt, .. } | Route::Object { rt, .. } => Some(*rt),
        _ => None,
    };
    let fault = state
        .faults
        .iter_mut()
        .find(|rule| rule.times > 0 && rule.matches(method, path))
        .and_then(|rule| {
            if rule.skip > 0 {
                rule.skip -= 1;
                None
            } else {
                rule.times -= 1;
                Some((rule.fault.clone(), rule.after_commit))
            }
        });
    if let Some((fault, false)) = &fault {
        return Reply::fault(fault, method, rt);
    }
    let verb = verb_of(method, &route);
    if let Some(rt) = rt {
        if state.denied.iter().any(|(v, r)| v == verb && r == rt.plural) {
            return Reply::error(forbidden(rt, verb, &route));
        }
    }
    let reply = match route {
        Route::Version => unreachable!("answered above"),
        Route::Discovery(document) if method == "GET" => Reply::json(200, &document),
        Route::Namespace(name) if method == "GET" => namespace(&state.cluster, &name),
        Route::Collection { rt, namespace } => match method {
            "GET" => list(&state.cluster, rt, &namespace, query),
            "POST" => state
                .cluster
                .create(rt, &namespace, body)
                .map_or_else(Reply::error, |o| Reply::json(201, &o)),
            _ => method_not_allowed(method, rt),
        },
        Route::Object { rt, namespace, name } => match method {
            "GET" => state
                .cluster
                .get(rt, &namespace, &name)
                .map_or_else(Reply::error, |o| Reply::json(200, &o)),
            "DELETE" => match delete_options(query, body, &mut state.cluster.violations) {
                Ok(options) => state
                    .cluster
                    .delete(rt, &namespace, &name, &options)
                    .map_or_else(Reply::error, |o| Reply::json(200, &o)),
                Err(error) => Reply::error(error),
            },
            "PATCH" if content_type.starts_with("application/merge-patch+json") => state
                .cluster
                .merge_patch(rt, &namespace, &name, body)
                .map_or_else(Reply::error, |o| Reply::json(200, &o)),
            "PATCH" => Reply::error(StatusError::new(
                415,
                "UnsupportedMediaType",
                &format!(
                    "the body of the request was in an unknown format - accepted media types include: application/merge-patch+json (got {content_type:?})"
                ),
                None,
            )),
            _ => method_not_allowed(method, rt),
        },
        Route::Discovery(_) | Route::Namespace(_) => Reply::error(StatusError::new(
            405,
            "MethodNotAllowed",
            &format!("{method} is not supported"),
            None,
        )),
        // The API server's last-resort handler is Go's http.NotFound (§3.2).
        Route::Unknown => Reply::text(404, "404 page not found\n"),
    };
    match fault {
        Some((fault, true)) => Reply::fault(&fault, method, rt),
        _ => reply,
    }
}

fn forbidden(rt: &ResourceType, verb: &str, route: &Route) -> StatusError {
    let (namespace, name) = match route {
        Route::Object { namespace, name, .. } => (namespace.as_str(), Some(name.as_str())),
        Route::Collection { namespace, .. } => (namespace.as_str(), None),
        _ => ("", None),
    };
    let subject = match name {
        Some(name) => format!("{} \"{name}\"", rt.qualified()),
        None => rt.qualified(),
    };
    let message = format!(
        "{subject} is forbidden: User \"system:serviceaccount:{NAMESPACE}:openhands-runtime\" cannot {verb} resource \"{}\" in API group \"{}\" in the namespace \"{namespace}\"",
        rt.plural, rt.group
    );
    let mut details = json!({});
    if let Some(name) = name {
        details["name"] = json!(name);
    }
    if !rt.group.is_empty() {
        details["group"] = json!(rt.group);
    }
    details["kind"] = json!(rt.plural);
    StatusError::new(403, "Forbidden", &message, Some(details))
}

fn method_not_allowed(method: &str, rt: &ResourceType) -> Reply {
    let message = format!("{method} is not supported on resources of kind \"{}\"", rt.qualified());
    Reply::error(StatusError::new(405, "MethodNotAllowed", &message, None))
}

/// The decoded parameters of a query string.
pub fn query_params(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&text[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn list(cluster: &Cluster, rt: &'static ResourceType, namespace: &str, query: &str) -> Reply {
    let params = query_params(query);
    if params.get("watch").is_some_and(|w| w == "1" || w == "true") {
        return watch(rt, namespace, &params);
    }
    if params.get("fieldSelector").is_some_and(|f| !f.is_empty()) {
        return Reply::error(StatusError::bad_request(
            "field selectors are not supported by this fake API server",
        ));
    }
    let limit = match params.get("limit").map(|l| l.parse::<usize>()) {
        None => None,
        Some(Ok(limit)) => Some(limit),
        Some(Err(_)) => return Reply::error(StatusError::bad_request("limit: must be a non-negative integer")),
    };
    let selector = params.get("labelSelector").map_or("", String::as_str);
    match cluster.list(
        rt,
        Some(namespace),
        selector,
        limit,
        params.get("continue").map(String::as_str),
    ) {
        Ok(page) => {
            let mut metadata = json!({"resourceVersion": page.resource_version});
            if let Some(token) = page.continue_token {
                metadata["continue"] = json!(token);
            }
            if let Some(remaining) = page.remaining {
                metadata["remainingItemCount"] = json!(remaining);
            }
            let mut list =
                json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(), "metadata": metadata});
            // Moved in: `json!` would copy every item through serde.
            list["items"] = Value::Array(page.items);
            Reply::unencoded(200, list)
        }
        Err(error) => Reply::error(error),
    }
}

/// DeleteOptions from the body (as kubectl sends them) or the query.
fn delete_options(query: &str, body: &[u8], violations: &mut Vec<String>) -> Result<DeleteOptions, StatusError> {
    let params = query_params(query);
    let mut options = DeleteOptions {
        propagation_policy: params.get("propagationPolicy").cloned(),
        grace_period_seconds: params.get("gracePeriodSeconds").and_then(|g| g.parse().ok()),
        ..DeleteOptions::default()
    };
    if !body.iter().all(u8::is_ascii_whitespace) {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| StatusError::bad_request(&format!("error decoding DeleteOptions: {e}")))?;
        let problems = schema::errors("deleteoptions-meta-v1.json", &value);
        if !problems.is_empty() {
            violations.push(format!("DELETE body: {}", problems.join("; ")));
        }
        if let Some(policy) = value["propagationPolicy"].as_str() {
            options.propagation_policy = Some(policy.to_string());
        }
        if let Some(grace) = value["gracePeriodSeconds"].as_i64() {
            options.grace_period_seconds = Some(grace);
        }
        options.precondition_uid = value["preconditions"]["uid"].as_str().map(str::to_string);
        options.precondition_resource_version = value["preconditions"]["resourceVersion"].as_str().map(str::to_string);
    }
    Ok(options)
}

fn namespace(cluster: &Cluster, name: &str) -> Reply {
    if !cluster.namespaces.contains(name) {
        let details = json!({"name": name, "kind": "namespaces"});
        return Reply::error(StatusError::new(
            404,
            "NotFound",
            &format!("namespaces \"{name}\" not found"),
            Some(details),
        ));
    }
    Reply::json(
        200,
        &json!({
            "kind": "Namespace", "apiVersion": "v1",
            "metadata": {"name": name, "uid": "6c4a4e5e-5d0b-4c43-9a57-3f3c0f3f1a01", "resourceVersion": "1",
                "creationTimestamp": "2025-03-04T10:00:00Z", "labels": {"kubernetes.io/metadata.name": name}},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"}
        }),
    )
}

fn discovery_api() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}]})
}

fn discovery_apis() -> Value {
    let version = json!({"groupVersion": "networking.k8s.io/v1", "version": "v1"});
    json!({"kind": "APIGroupList", "apiVersion": "v1",
        "groups": [{"name": "networking.k8s.io", "versions": [version], "preferredVersion": version}]})
}

fn resource_list(group: &str) -> Value {
    let verbs = [
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ];
    let mut resources: Vec<Value> = RESOURCES
        .iter()
        .filter(|r| r.group == group)
        .map(|r| {
            json!({"name": r.plural, "singularName": r.singular, "namespaced": true, "kind": r.kind,
            "verbs": verbs, "shortNames": r.short_names})
        })
        .collect();
    if group.is_empty() {
        resources.push(json!({"name": "namespaces", "singularName": "namespace", "namespaced": false,
            "kind": "Namespace", "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"], "shortNames": ["ns"]}));
    }
    let group_version = if group.is_empty() {
        "v1".to_string()
    } else {
        format!("{group}/v1")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources})
}

fn watch(rt: &'static ResourceType, namespace: &str, params: &HashMap<String, String>) -> Reply {
    let selector = match Selector::parse(params.get("labelSelector").map_or("", String::as_str)) {
        Ok(selector) => selector,
        Err(message) => return Reply::error(StatusError::bad_request(&message)),
    };
    let resource_version = match params.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(rv) => match rv.parse::<u64>() {
            Ok(rv) => Some(rv),
            Err(_) => return Reply::error(StatusError::bad_request(&format!("invalid resource version: {rv}"))),
        },
    };
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(1800);
    let spec = WatchSpec {
        rt,
        namespace: namespace.to_string(),
        selector,
        resource_version,
        timeout: Duration::from_secs(timeout),
        bookmarks: params
            .get("allowWatchBookmarks")
            .is_some_and(|b| b == "true" || b == "1"),
    };
    Reply {
        special: Some(Special::Watch(spec)),
        ..Reply::text(200, "")
    }
}

/// Holds a request unanswered until released (or the fake stops).
fn hang(shared: &Shared) {
    let mut state = shared.lock();
    let release = state.hung_release;
    while state.hung_release == release && !state.stopping {
        state = shared.changed.wait(state).unwrap_or_else(|e| e.into_inner());
    }
}

/// Streams watch events as the API server does: HTTP 200, chunked, one JSON event per line
/// (`{"type": "ADDED", "object": {...}}`), BOOKMARKs while idle, an ERROR event for a gone
/// resourceVersion, and a clean end at `timeoutSeconds`.
fn stream_watch(shared: &Shared, request: tiny_http::Request, spec: WatchSpec) {
    use std::io::Write;
    type Out = Box<dyn Write + Send>;
    fn chunk(out: &mut Out, data: &str) -> std::io::Result<()> {
        write!(out, "{:x}\r\n{data}\r\n", data.len())?;
        out.flush()
    }
    // The stream belongs to the current epoch before the client sees it begin, so that ending
    // streams right after a watch call returned always ends that one.
    let mut state = shared.lock();
    while state.watches_held && !state.stopping {
        state = shared.changed.wait(state).unwrap_or_else(|e| e.into_inner());
    }
    let epoch = state.watch_epoch;
    drop(state);
    let mut out: Out = request.into_writer();
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: no-cache, private\r\nTransfer-Encoding: chunked\r\n\r\n";
    if out.write_all(head.as_bytes()).and_then(|()| out.flush()).is_err() {
        return;
    }
    let deadline = Instant::now() + spec.timeout;
    let bookmark_every = Duration::from_millis(500);
    let mut state = shared.lock();
    let mut last = spec.resource_version;
    loop {
        // An ended or cut stream sends nothing more, not even what changed meanwhile.
        if state.stopping || Instant::now() >= deadline {
            break;
        }
        if state.watch_epoch != epoch {
            if state.break_watches_mid_line {
                drop(state);
                let _ = chunk(&mut out, "{\"type\":\"MODIFIED\",\"object\":{\"kind\":");
                let _ = chunk(&mut out, "");
                return;
            }
            break;
        }
        let events = match last {
            None => Ok(state
                .cluster
                .current_as_events(spec.rt.plural, &spec.namespace, &spec.selector)),
            Some(rv) => state
                .cluster
                .events_after(rv, spec.rt.plural, &spec.namespace, &spec.selector),
        };
        let current = state.cluster.resource_version();
        drop(state);
        match events {
            Ok(events) => {
                for (kind, _, object) in events {
                    let line = json!({"type": kind.as_str(), "object": object});
                    if chunk(&mut out, &format!("{line}\n")).is_err() {
                        return;
                    }
                }
                last = Some(current);
                // Only news wakes the waiting: other streams wait on the same condition.
                let mut state = shared.lock();
                let sent = state.watches_sent.entry(spec.rt.plural).or_default();
                if current > *sent {
                    *sent = current;
                    drop(state);
                    shared.changed.notify_all();
                }
            }
            Err(expired) => {
                let line = json!({"type": "ERROR", "object": expired.status});
                let _ = chunk(&mut out, &format!("{line}\n"));
                let _ = chunk(&mut out, "");
                return;
            }
        }
        state = shared.lock();
        if state.cluster.resource_version() != current || state.watch_epoch != epoch || state.stopping {
            continue;
        }
        let wait = bookmark_every.min(deadline.saturating_duration_since(Instant::now()));
        let (next, timeout) = shared
            .changed
            .wait_timeout(state, wait)
            .unwrap_or_else(|e| e.into_inner());
        state = next;
        if timeout.timed_out() && spec.bookmarks && state.cluster.resource_version() == current {
            let bookmark = json!({"type": "BOOKMARK", "object": {"kind": spec.rt.kind, "apiVersion": spec.rt.api_version(),
                "metadata": {"resourceVersion": current.to_string()}}});
            drop(state);
            if chunk(&mut out, &format!("{bookmark}\n")).is_err() {
                return;
            }
            state = shared.lock();
        }
    }
    drop(state);
    let _ = chunk(&mut out, "");
}
