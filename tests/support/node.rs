//! A node whose kubelet really runs sandbox pods: the container of a pod with an agent-server
//! image is the real agent server (`agent_bed.rs`), a process on this machine.
//!
//! What a kubelet and container runtime do, done here:
//! - the environment is resolved as the kubelet does: the image's variables, the service
//!   variables it always adds, then the container's `env` in order (`$(NAME)` expanded against
//!   what came before, `secretKeyRef` and `fieldRef` looked up; a missing secret or key is
//!   `CreateContainerConfigError`, retried);
//! - the command is built on the image's entrypoint (`tini -- /usr/local/bin/openhands-agent-server`,
//!   no CMD): `command` replaces the entrypoint, `args` follow; tini's part is played by running
//!   the process in a process group of its own;
//! - each pod has an address of its own in 127.0.0.0/8 as `status.podIP`: the agent's binds to
//!   the wildcard or loopback, and its calls to loopback, go to that address (the shim in
//!   `tests/agent-server/netns_shim.py`), so pods never collide and are reached at `podIP:port`;
//!   its filesystem is a directory of its own (`/` of the working directory and HOME, and /tmp
//!   as TMPDIR);
//! - startup and readiness probes (`httpGet`) run on their periods from the container's start
//!   and decide `started` and Ready; readiness waits for the startup probe, and runs at once
//!   when it succeeds;
//! - a container that exits is restarted (restartPolicy Always): at once the first time, then
//!   after a back-off of 10 s doubling to 5 minutes, `CrashLoopBackOff` meanwhile;
//! - a deleted pod's processes get SIGTERM, SIGKILL once its grace period is over, and the pod
//!   goes when they are gone.
//!
//! The node works in three steps so that the cluster is never locked while a process starts or a
//! probe waits: `observe` (cluster locked) takes the pods, `act` (unlocked) runs them, `report`
//! (locked) writes their status.

use std::collections::HashMap;
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use super::agent_bed::AgentBed;
use super::cluster::{Cluster, Key, timestamp};
use super::kubelet;

pub const NODE_NAME: &str = "node-real-1";
const HOST_IP: &str = "127.0.0.1";
/// The agent-server image's entrypoint; it has no CMD.
const ENTRYPOINT: [&str; 3] = ["/usr/bin/tini", "--", "/usr/local/bin/openhands-agent-server"];
const AGENT_SERVER_PATH: &str = "/usr/local/bin/openhands-agent-server";
const IMAGE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The variables the kubelet gives every container for the cluster's API service.
const API_SERVICE_ENV: [(&str, &str); 7] = [
    ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
    ("KUBERNETES_SERVICE_PORT", "443"),
    ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
    ("KUBERNETES_PORT", "tcp://10.96.0.1:443"),
    ("KUBERNETES_PORT_443_TCP", "tcp://10.96.0.1:443"),
    ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
    ("KUBERNETES_PORT_443_TCP_ADDR", "10.96.0.1"),
];
const FIRST_BACK_OFF: Duration = Duration::from_secs(10);
const MAX_BACK_OFF: Duration = Duration::from_secs(300);

/// Whether a pod of this image runs the agent server (`*/agent-server:*`).
pub fn is_agent_server_image(image: &str) -> bool {
    image.contains("/agent-server:") || image.starts_with("agent-server:")
}

/// When each step of a pod's life happened, for the time-to-working-sandbox benchmark.
#[derive(Debug, Clone, Copy)]
pub struct Timeline {
    /// The node first saw the pod (it was created moments before).
    pub seen: Instant,
    /// Its container's process was started (the latest start).
    pub started: Option<Instant>,
    /// Its startup probe first succeeded: the agent answered.
    pub answered: Option<Instant>,
    /// Its Ready condition was written `True` to the API server.
    pub ready: Option<Instant>,
}

/// One of `observe`'s pods: what `act` needs to know of it.
pub struct PodView {
    key: Key,
    uid: String,
    pod: Value,
    deleting: Option<Duration>,
    /// Resolved for a container about to start; `Err` is why it cannot.
    env: Option<Result<Vec<(String, String)>, String>>,
}

/// What `act` found: statuses to write (and whether each says Ready) and terminated pods to
/// remove.
pub struct Reports {
    statuses: Vec<(Key, String, Value, bool)>,
    terminated: Vec<(Key, String)>,
}

#[derive(Debug, Clone)]
struct Probe {
    path: String,
    port: u16,
    period: Duration,
    timeout: Duration,
    failure_threshold: u32,
}

impl Probe {
    fn of(container: &Value, kind: &str) -> Option<Probe> {
        let probe = container.get(kind)?;
        let seconds = |field: &str, default: u64| Duration::from_secs(probe[field].as_u64().unwrap_or(default).max(1));
        Some(Probe {
            path: probe["httpGet"]["path"].as_str().unwrap_or("/").to_string(),
            port: named_port(container, &probe["httpGet"]["port"])?,
            period: seconds("periodSeconds", 10),
            timeout: seconds("timeoutSeconds", 1),
            failure_threshold: probe["failureThreshold"].as_u64().unwrap_or(3).max(1) as u32,
        })
    }
}

/// A port given as a number or as the name of one of the container's ports.
pub fn named_port(container: &Value, port: &Value) -> Option<u16> {
    if let Some(number) = port.as_u64() {
        return u16::try_from(number).ok();
    }
    let name = port.as_str()?;
    container["ports"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| u16::try_from(p["containerPort"].as_u64()?).ok())
}

/// When a probe runs next and how many times in a row it failed.
#[derive(Debug)]
struct ProbeClock {
    next: Instant,
    failures: u32,
}

/// A pod on this node.
struct Sandbox {
    name: String,
    ip: Ipv4Addr,
    dir: PathBuf,
    startup: Option<Probe>,
    readiness: Option<Probe>,
    process: Option<Child>,
    /// Why the container is not running (`ContainerCreating`, `CrashLoopBackOff`, ...).
    waiting: Option<(String, Option<String>)>,
    started_at: String,
    restarts: i64,
    last_state: Option<Value>,
    restart_at: Instant,
    back_off: Duration,
    started: bool,
    ready: bool,
    startup_clock: ProbeClock,
    readiness_clock: ProbeClock,
    /// Deleted: when the processes get SIGKILL.
    kill_at: Option<Instant>,
    start_time: String,
    changed_at: String,
    timeline: Timeline,
}

struct NodeState {
    pods: HashMap<String, Sandbox>,
}

/// The node; its processes are killed when it is dropped.
pub struct Node {
    bed: AgentBed,
    root: PathBuf,
    state: Mutex<NodeState>,
    prober: ureq::Agent,
}

/// Addresses in 127.0.0.0/8, one per pod, a different run in each process.
fn next_pod_ip() -> Ipv4Addr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = (std::process::id() % 200 + 20) << 16;
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % 65_000 + 2;
    Ipv4Addr::from(0x7f00_0000 | base | n)
}

impl Node {
    pub fn new(bed: AgentBed) -> Node {
        // Short: tmux and others put sockets under TMPDIR, whose paths are limited to 108 bytes.
        static NODES: AtomicU32 = AtomicU32::new(0);
        let root = std::env::temp_dir().join(format!(
            "ohtb-{}-{}",
            std::process::id(),
            NODES.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).expect("create the node's directory");
        Node {
            bed,
            root,
            state: Mutex::new(NodeState { pods: HashMap::new() }),
            prober: ureq::Agent::config_builder().http_status_as_error(false).build().into(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, NodeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pods that run here, with the environment of those whose container is about to start.
    pub fn observe(&self, cluster: &Cluster) -> Vec<PodView> {
        let state = self.lock();
        cluster
            .running_pods()
            .into_iter()
            .map(|(key, pod)| {
                let uid = pod["metadata"]["uid"].as_str().unwrap_or_default().to_string();
                let deleting = (!pod["metadata"]["deletionTimestamp"].is_null())
                    .then(|| Duration::from_secs(pod["metadata"]["deletionGracePeriodSeconds"].as_u64().unwrap_or(30)));
                let needs_env = deleting.is_none()
                    && state
                        .pods
                        .get(&uid)
                        .is_some_and(|sandbox| sandbox.process.is_none() && Instant::now() >= sandbox.restart_at);
                let env = needs_env.then(|| {
                    let ip = state.pods[&uid].ip;
                    resolve_environment(cluster, &pod, ip)
                });
                PodView {
                    key,
                    uid,
                    pod,
                    deleting,
                    env,
                }
            })
            .collect()
    }

    /// Starts, probes, restarts and stops containers; returns what to report.
    pub fn act(&self, views: Vec<PodView>) -> Reports {
        let mut state = self.lock();
        let mut reports = Reports {
            statuses: Vec::new(),
            terminated: Vec::new(),
        };
        let present: Vec<String> = views.iter().map(|view| view.uid.clone()).collect();
        state.pods.retain(|uid, sandbox| {
            let keep = present.contains(uid);
            if !keep {
                sandbox.kill_now();
            }
            keep
        });
        for view in views {
            let now = Instant::now();
            if !state.pods.contains_key(&view.uid) {
                if view.deleting.is_some() {
                    reports.terminated.push((view.key, view.uid));
                    continue;
                }
                let sandbox = self.admit(&view.pod);
                state.pods.insert(view.uid.clone(), sandbox);
                let sandbox = &state.pods[&view.uid];
                reports
                    .statuses
                    .push((view.key, view.uid.clone(), sandbox.status(&view.pod), false));
                continue;
            }
            let Some(sandbox) = state.pods.get_mut(&view.uid) else {
                continue;
            };
            if let Some(grace) = view.deleting {
                if sandbox.stop(now, grace) {
                    reports.terminated.push((view.key, view.uid.clone()));
                    state.pods.remove(&view.uid);
                }
                continue;
            }
            let container = &view.pod["spec"]["containers"][0];
            sandbox.reap(now);
            match view.env {
                Some(Ok(env)) => self.start(sandbox, container, env),
                Some(Err(why)) => sandbox.set_waiting("CreateContainerConfigError", Some(why)),
                None => {}
            }
            if sandbox.process.is_some() {
                sandbox.probe(&self.prober, now);
            }
            reports
                .statuses
                .push((view.key, view.uid.clone(), sandbox.status(&view.pod), sandbox.ready));
        }
        reports
    }

    /// Writes the reports to the cluster; true when anything changed.
    pub fn report(&self, cluster: &mut Cluster, reports: Reports) -> bool {
        let mut changed = false;
        let mut state = self.lock();
        for (key, uid, status, ready) in reports.statuses {
            if cluster.report_pod(&key, &uid, NODE_NAME, status) {
                changed = true;
                if let Some(sandbox) = state.pods.get_mut(&uid)
                    && ready
                    && sandbox.timeline.ready.is_none()
                {
                    sandbox.timeline.ready = Some(Instant::now());
                }
            }
        }
        for (key, uid) in reports.terminated {
            cluster.pod_terminated(&key, &uid);
            changed = true;
        }
        changed
    }

    /// A new pod: its address and directory, its container waiting to be created.
    fn admit(&self, pod: &Value) -> Sandbox {
        let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
        let dir = self.root.join(&uid[..uid.len().min(8)]);
        for part in ["fs", "root", "tmp"] {
            let _ = fs::create_dir_all(dir.join(part));
        }
        let container = &pod["spec"]["containers"][0];
        let now = Instant::now();
        let at = timestamp(SystemTime::now());
        Sandbox {
            name,
            ip: next_pod_ip(),
            dir,
            startup: Probe::of(container, "startupProbe"),
            readiness: Probe::of(container, "readinessProbe"),
            process: None,
            waiting: Some(("ContainerCreating".to_string(), None)),
            started_at: at.clone(),
            restarts: 0,
            last_state: None,
            restart_at: now,
            back_off: Duration::ZERO,
            started: false,
            ready: false,
            startup_clock: ProbeClock { next: now, failures: 0 },
            readiness_clock: ProbeClock { next: now, failures: 0 },
            kill_at: None,
            start_time: at.clone(),
            changed_at: at,
            timeline: Timeline {
                seen: now,
                started: None,
                answered: None,
                ready: None,
            },
        }
    }

    /// Starts the container's process (a failure to start is an exit with `StartError`).
    fn start(&self, sandbox: &mut Sandbox, container: &Value, mut env: Vec<(String, String)>) {
        // The pod's own /tmp, and HOME where the image's user (root) has it, as a container has.
        let own = |part: &str| sandbox.dir.join(part).display().to_string();
        if !env.iter().any(|(name, _)| name == "HOME") {
            env.push(("HOME".into(), own("root")));
        }
        env.push(("TMPDIR".into(), own("tmp")));
        env.push(("TMUX_TMPDIR".into(), own("tmp")));
        let image = container["image"].as_str().unwrap_or_default();
        let agent_server = self.bed.venv_for_image(image).join("bin/agent-server");
        let argv = command_line(container, &agent_server);
        let cwd = match container["workingDir"].as_str() {
            Some(dir) => sandbox.dir.join("fs").join(dir.trim_start_matches('/')),
            None => sandbox.dir.join("fs"),
        };
        let _ = fs::create_dir_all(&cwd);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(sandbox.dir.join("container.log"));
        let now = Instant::now();
        let spawned = log.and_then(|log| {
            let mut command = Command::new(&argv[0]);
            command
                .args(&argv[1..])
                .env_clear()
                .envs(env)
                .current_dir(&cwd)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .process_group(0);
            // The container dies with the node (the thread that started it), as a test ends.
            unsafe {
                command.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            command.spawn()
        });
        sandbox.changed_at = timestamp(SystemTime::now());
        match spawned {
            Ok(child) => {
                sandbox.process = Some(child);
                sandbox.waiting = None;
                sandbox.started_at = timestamp(SystemTime::now());
                sandbox.timeline.started = Some(now);
                sandbox.started = sandbox.startup.is_none();
                sandbox.ready = false;
                sandbox.startup_clock = ProbeClock { next: now, failures: 0 };
                sandbox.readiness_clock = ProbeClock { next: now, failures: 0 };
            }
            Err(e) => {
                let message = format!("failed to start {:?}: {e}", argv[0]);
                sandbox.exited(now, 128, "StartError", Some(message));
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        for sandbox in self.lock().pods.values_mut() {
            sandbox.kill_now();
        }
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// The process's command line: the image's entrypoint unless `command` replaces it, then `args`;
/// the agent server's path in the image is its path in the virtual environment.
fn command_line(container: &Value, agent_server: &Path) -> Vec<String> {
    let strings = |field: &str| -> Option<Vec<String>> {
        container[field].as_array().map(|items| {
            items
                .iter()
                .map(|s| s.as_str().unwrap_or_default().to_string())
                .collect()
        })
    };
    let mut argv = strings("command").unwrap_or_else(|| ENTRYPOINT.iter().map(|s| s.to_string()).collect());
    argv.extend(strings("args").unwrap_or_default());
    if argv.first().is_some_and(|first| first.ends_with("tini")) {
        let skip = if argv.get(1).is_some_and(|s| s == "--") { 2 } else { 1 };
        argv.drain(..skip);
    }
    let agent_server = agent_server.display().to_string();
    argv.iter()
        .map(|arg| arg.replace(AGENT_SERVER_PATH, &agent_server))
        .collect()
}

/// The container's environment as the kubelet builds it, plus what stands in for the pod's own
/// network and filesystem here.
fn resolve_environment(cluster: &Cluster, pod: &Value, ip: Ipv4Addr) -> Result<Vec<(String, String)>, String> {
    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let mut env: Vec<(String, String)> = vec![("PATH".into(), IMAGE_PATH.into()), ("HOSTNAME".into(), name.into())];
    env.extend(API_SERVICE_ENV.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    for entry in pod["spec"]["containers"][0]["env"].as_array().into_iter().flatten() {
        let variable = entry["name"].as_str().unwrap_or_default().to_string();
        let value = if let Some(value) = entry["value"].as_str() {
            expand(value, &env)
        } else if let Some(reference) = entry["valueFrom"].get("secretKeyRef") {
            match secret_value(cluster, namespace, reference) {
                Ok(Some(value)) => value,
                Ok(None) => continue,
                Err(why) => return Err(why),
            }
        } else if let Some(path) = entry["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            match path {
                "metadata.name" => name.to_string(),
                "metadata.namespace" => namespace.to_string(),
                "status.podIP" => ip.to_string(),
                "spec.nodeName" => NODE_NAME.to_string(),
                _ => String::new(),
            }
        } else {
            String::new()
        };
        env.retain(|(k, _)| *k != variable);
        env.push((variable, value));
    }
    // The pod's own network (see the module's comment).
    env.push(("OPENHANDS_TESTBED_POD_IP".into(), ip.to_string()));
    Ok(env)
}

/// `$(NAME)` replaced by an earlier variable's value (left as it is when there is none);
/// `$$` is a literal `$`.
fn expand(value: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
            && let Some((_, found)) = env.iter().rev().find(|(k, _)| *k == inner[..end])
        {
            out.push_str(found);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A `secretKeyRef`'s value: `None` when optional and missing, `Err` in the kubelet's words.
fn secret_value(cluster: &Cluster, namespace: &str, reference: &Value) -> Result<Option<String>, String> {
    let secret_name = reference["name"].as_str().unwrap_or_default();
    let key = reference["key"].as_str().unwrap_or_default();
    let optional = reference["optional"].as_bool().unwrap_or(false);
    let Some(secret) = cluster.object("secrets", namespace, secret_name) else {
        return if optional {
            Ok(None)
        } else {
            Err(format!("secret \"{secret_name}\" not found"))
        };
    };
    match secret["data"][key].as_str() {
        Some(encoded) => {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| format!("secret {secret_name}/{key}: {e}"))?;
            Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
        }
        None if optional => Ok(None),
        None => Err(format!("couldn't find key {key} in Secret {namespace}/{secret_name}")),
    }
}

impl Sandbox {
    fn set_waiting(&mut self, reason: &str, message: Option<String>) {
        let waiting = Some((reason.to_string(), message));
        if self.waiting != waiting {
            self.waiting = waiting;
            self.changed_at = timestamp(SystemTime::now());
        }
    }

    /// Notices the container's process ending.
    fn reap(&mut self, now: Instant) {
        let Some(process) = self.process.as_mut() else {
            return;
        };
        let Ok(Some(status)) = process.try_wait() else {
            return;
        };
        use std::os::unix::process::ExitStatusExt;
        let code = status
            .code()
            .map_or_else(|| 128 + i64::from(status.signal().unwrap_or(9)), i64::from);
        let reason = if code == 0 { "Completed" } else { "Error" };
        self.process = None;
        self.exited(now, code, reason, None);
    }

    /// The container ended: counted as a restart, started again after the back-off.
    fn exited(&mut self, now: Instant, code: i64, reason: &str, message: Option<String>) {
        let at = timestamp(SystemTime::now());
        let mut terminated = kubelet::terminated(reason, code, &at);
        terminated["terminated"]["startedAt"] = json!(self.started_at);
        if let Some(message) = message {
            terminated["terminated"]["message"] = json!(message);
        }
        self.last_state = Some(terminated);
        self.restarts += 1;
        self.started = false;
        self.ready = false;
        self.restart_at = now + self.back_off;
        self.waiting = (!self.back_off.is_zero()).then(|| {
            let message = format!(
                "back-off {}s restarting failed container=agent pod={}",
                self.back_off.as_secs(),
                self.name
            );
            ("CrashLoopBackOff".to_string(), Some(message))
        });
        self.back_off = if self.back_off.is_zero() {
            FIRST_BACK_OFF
        } else {
            (self.back_off * 2).min(MAX_BACK_OFF)
        };
        self.changed_at = at;
    }

    /// Runs the probes that are due.
    fn probe(&mut self, prober: &ureq::Agent, now: Instant) {
        let url = |probe: &Probe| format!("http://{}:{}{}", self.ip, probe.port, probe.path);
        if let Some(startup) = self.startup.clone()
            && !self.started
            && now >= self.startup_clock.next
        {
            self.startup_clock.next += startup.period;
            if probe_ok(prober, &url(&startup), startup.timeout) {
                self.started = true;
                // The kubelet runs the readiness probe at once when a container has started
                // (prober_manager.go UpdatePodStatus), not at its next period.
                self.readiness_clock.next = now;
                self.timeline.answered.get_or_insert(now);
                self.changed_at = timestamp(SystemTime::now());
            } else {
                self.startup_clock.failures += 1;
                if self.startup_clock.failures >= startup.failure_threshold {
                    self.kill_now();
                    self.exited(now, 137, "Error", Some("startup probe failed".into()));
                    return;
                }
            }
        }
        if now < self.readiness_clock.next {
            return;
        }
        let Some(readiness) = self.readiness.clone() else {
            if self.started && !self.ready {
                self.ready = true;
                self.changed_at = timestamp(SystemTime::now());
            }
            return;
        };
        self.readiness_clock.next += readiness.period;
        // Readiness is not probed until the startup probe has succeeded.
        if !self.started {
            return;
        }
        let ok = probe_ok(prober, &url(&readiness), readiness.timeout);
        self.readiness_clock.failures = if ok { 0 } else { self.readiness_clock.failures + 1 };
        let ready = ok || (self.ready && self.readiness_clock.failures < readiness.failure_threshold);
        if ready != self.ready {
            self.ready = ready;
            self.changed_at = timestamp(SystemTime::now());
        }
    }

    /// The deleted pod's processes: SIGTERM, then SIGKILL after the grace. True once gone.
    fn stop(&mut self, now: Instant, grace: Duration) -> bool {
        let Some(process) = self.process.as_mut() else {
            return true;
        };
        if matches!(process.try_wait(), Ok(Some(_))) {
            self.kill_now();
            return true;
        }
        match self.kill_at {
            None => {
                signal_group(process, libc::SIGTERM);
                self.kill_at = Some(now + grace);
                false
            }
            Some(at) if now >= at => {
                self.kill_now();
                true
            }
            Some(_) => false,
        }
    }

    /// SIGKILL to every process of the pod, and waits for the container's.
    fn kill_now(&mut self) {
        if let Some(mut process) = self.process.take() {
            signal_group(&process, libc::SIGKILL);
            let _ = process.wait();
        }
    }

    fn status(&self, pod: &Value) -> Value {
        let containers = kubelet::container_specs(pod);
        let mut status = match (&self.process, &self.waiting) {
            (None, Some((reason, message))) if reason == "CrashLoopBackOff" => kubelet::crash_status(
                &containers,
                |_| json!({"waiting": {"reason": reason, "message": message}}),
                self.restarts,
                self.last_state.as_ref().unwrap_or(&Value::Null),
                &self.changed_at,
            ),
            (None, waiting) => {
                let (reason, message) = waiting.clone().unwrap_or(("ContainerCreating".to_string(), None));
                let mut status = kubelet::pending_status(&containers, &reason, message, &self.changed_at);
                if self.restarts > 0 {
                    status["phase"] = json!("Running");
                    status["containerStatuses"][0]["restartCount"] = json!(self.restarts);
                    status["containerStatuses"][0]["lastState"] = self.last_state.clone().unwrap_or(json!({}));
                }
                status
            }
            (Some(_), _) => {
                let mut status = kubelet::running_status(
                    &containers,
                    self.ready,
                    &self.started_at,
                    self.restarts,
                    self.last_state.as_ref(),
                );
                status["containerStatuses"][0]["started"] = json!(self.started);
                status
            }
        };
        for condition in status["conditions"].as_array_mut().into_iter().flatten() {
            condition["lastTransitionTime"] = json!(self.changed_at);
        }
        status["hostIP"] = json!(HOST_IP);
        status["hostIPs"] = json!([{"ip": HOST_IP}]);
        status["podIP"] = json!(self.ip.to_string());
        status["podIPs"] = json!([{"ip": self.ip.to_string()}]);
        status["startTime"] = json!(self.start_time);
        status["qosClass"] = json!(kubelet::qos_class(pod));
        status
    }
}

fn probe_ok(prober: &ureq::Agent, url: &str, timeout: Duration) -> bool {
    prober
        .get(url)
        .config()
        .timeout_global(Some(timeout))
        .build()
        .call()
        .is_ok_and(|answer| (200..400).contains(&answer.status().as_u16()))
}

fn signal_group(process: &Child, signal: i32) {
    if let Ok(pid) = i32::try_from(process.id()) {
        // The container's process leads its own group: its children (commands) go with it.
        unsafe {
            libc::kill(-pid, signal);
        }
    }
}

impl Node {
    /// Sends `signal` to a pod's container (as the container runtime or the OOM killer would).
    pub fn signal_container(&self, pod_name: &str, signal: i32) -> bool {
        let state = self.lock();
        match state
            .pods
            .values()
            .find(|s| s.name == pod_name)
            .and_then(|s| s.process.as_ref())
        {
            Some(process) => {
                signal_group(process, signal);
                true
            }
            None => false,
        }
    }

    /// What a pod's container printed, all its runs (`kubectl logs` with `--previous` too).
    pub fn container_log(&self, pod_name: &str) -> String {
        let state = self.lock();
        state
            .pods
            .values()
            .find(|s| s.name == pod_name)
            .and_then(|s| fs::read_to_string(s.dir.join("container.log")).ok())
            .unwrap_or_default()
    }

    /// The timeline of the pod of this name now on the node.
    pub fn timeline(&self, pod_name: &str) -> Option<Timeline> {
        self.lock()
            .pods
            .values()
            .find(|s| s.name == pod_name)
            .map(|s| s.timeline)
    }

    /// How many container processes run on the node.
    pub fn running_containers(&self) -> usize {
        self.lock().pods.values().filter(|s| s.process.is_some()).count()
    }
}
