//! The real service binary, started against a fake API server, and an HTTP client for it.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::fake_kube::{FakeKube, NAMESPACE, TOKEN};

pub const API_KEY: &str = "test-api-key";
pub const BASE_DOMAIN: &str = "sandbox.test";
const STARTUP: Duration = Duration::from_secs(20);

/// An HTTP answer of the service.
#[derive(Debug)]
pub struct Answer {
    pub code: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub struct Service {
    child: std::sync::Mutex<Child>,
    env: Vec<(String, String)>,
    pub url: String,
    log: PathBuf,
    agent: ureq::Agent,
}

/// The environment the service gets against `fake`, before the test's own variables.
pub fn base_env(fake: &FakeKube, dir: &std::path::Path) -> Vec<(String, String)> {
    fs::write(dir.join("token"), TOKEN).expect("write the token");
    let mut env = vec![
        ("API_KEY", API_KEY.to_string()),
        ("KUBE_API_URL", fake.url().to_string()),
        ("KUBE_TOKEN_FILE", dir.join("token").display().to_string()),
        ("NAMESPACE", NAMESPACE.to_string()),
        ("BASE_DOMAIN", BASE_DOMAIN.to_string()),
        ("RUST_LOG", "debug".to_string()),
        ("WORKER_THREADS", "8".to_string()),
    ];
    if let Some(ca) = fake.ca_pem() {
        fs::write(dir.join("ca.crt"), ca).expect("write the CA");
        env.push(("KUBE_CA_FILE", dir.join("ca.crt").display().to_string()));
    }
    env.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Runs the binary with exactly `env` (nothing inherited but PATH); returns it once started.
/// `SERVICE_FD_LIMIT` in `env`, a test's own variable, lowers its file-descriptor limit
/// (`ulimit -n`) as a launcher would.
pub fn spawn(env: &[(String, String)], log: &std::path::Path) -> Child {
    // Appended to, so that a restarted service's log follows the first one's.
    let log_file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open the log file");
    let binary = env!("CARGO_BIN_EXE_openhands-k8s-runtime");
    let mut command = match env.iter().find(|(k, _)| k == "SERVICE_FD_LIMIT") {
        Some((_, limit)) => {
            let mut shell = Command::new("bash");
            shell.args(["-c", &format!("ulimit -n {limit} && exec \"$0\""), binary]);
            shell
        }
        None => Command::new(binary),
    };
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("start the service")
}

impl Service {
    /// Starts the service against `fake` with `extra` variables, and waits until it is ready.
    pub fn start(fake: &FakeKube, extra: &[(&str, &str)]) -> Service {
        let service = Service::start_unready(fake, extra);
        service.wait_ready();
        service
    }

    /// Starts the service without waiting until it is ready.
    pub fn start_unready(fake: &FakeKube, extra: &[(&str, &str)]) -> Service {
        fake.check_calls_against_role();
        let dir = super::temp_dir("service");
        let mut env = base_env(fake, &dir);
        for (name, value) in extra {
            env.retain(|(k, _)| k != name);
            env.push((name.to_string(), value.to_string()));
        }
        Service::launch_unready(&dir, env)
    }

    /// Starts the service with exactly `env` (and a port of its own), its files in `dir`, and
    /// waits until it is ready.
    pub fn launch(dir: &std::path::Path, env: Vec<(String, String)>) -> Service {
        let service = Service::launch_unready(dir, env);
        service.wait_ready();
        service
    }

    pub fn launch_unready(dir: &std::path::Path, mut env: Vec<(String, String)>) -> Service {
        let port = super::free_port();
        env.retain(|(k, _)| k != "SERVER_PORT");
        env.push(("SERVER_PORT".to_string(), port.to_string()));
        let log = dir.join("service.log");
        let child = spawn(&env, &log);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Service {
            child: std::sync::Mutex::new(child),
            env,
            url: format!("http://127.0.0.1:{port}"),
            log,
            agent,
        }
    }

    /// The service's process id.
    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }

    /// Sends the service a signal, as `kill -SIGNAL` would.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits up to `patience` for the service to exit; its status, if it did.
    pub fn wait_exit(&self, patience: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + patience;
        loop {
            if let Ok(Some(status)) = self.child.lock().unwrap().try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The resident memory of the service's process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Kills the service as `kill -9` would: no cleanup, no last words.
    pub fn kill(&self) {
        let mut child = self.child.lock().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Kills the service and starts it again with the same configuration; waits until ready.
    pub fn restart(&self) {
        self.kill();
        *self.child.lock().unwrap() = spawn(&self.env, &self.log);
        self.wait_ready();
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Ok(Some(status)) = self.child.lock().unwrap().try_wait() {
                panic!("the service exited ({status}) before it was ready:\n{}", self.log());
            }
            let ready = self
                .agent
                .get(format!("{}/readiness", self.url))
                .call()
                .is_ok_and(|r| r.status() == 200);
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the service was not ready in time:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The value of a variable the service was started with.
    pub fn env(&self, name: &str) -> Option<&str> {
        self.env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A request with the right API key.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Answer {
        self.call_with_key(method, path, body, Some(API_KEY))
    }

    pub fn call_with_key(&self, method: &str, path: &str, body: Option<&Value>, key: Option<&str>) -> Answer {
        self.raw(method, path, body.map(|b| b.to_string().into_bytes()), key)
    }

    /// A POST whose caller may die: `None` when no answer came.
    pub fn try_post(&self, path: &str, body: &Value) -> Option<u16> {
        let request = ureq::http::Request::builder()
            .method("POST")
            .uri(format!("{}{path}", self.url))
            .header("X-API-Key", API_KEY)
            .body(body.to_string())
            .unwrap();
        self.agent.run(request).ok().map(|r| r.status().as_u16())
    }

    pub fn raw(&self, method: &str, path: &str, body: Option<Vec<u8>>, key: Option<&str>) -> Answer {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url));
        if let Some(key) = key {
            request = request.header("X-API-Key", key);
        }
        let response = match body {
            Some(body) => self
                .agent
                .run(request.header("Content-Type", "application/json").body(body).unwrap()),
            None => self.agent.run(request.body(()).unwrap()),
        };
        let mut response = response.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text:?}"));
        Answer {
            code: response.status().as_u16(),
            headers,
            body,
        }
    }

    /// Waits until the service logs a line containing `text`; returns the line.
    pub fn wait_for_log(&self, text: &str, patience: Duration) -> String {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(line) = self.log().lines().find(|line| line.contains(text)) {
                return line.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "the service never logged {text:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A text answer (`/metrics`).
    pub fn text(&self, path: &str) -> String {
        let mut response = self
            .agent
            .get(format!("{}{path}", self.url))
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        response.body_mut().read_to_string().unwrap_or_default()
    }

    /// Waits until warm pool `pool` has `ready` Ready warm pods, as `/metrics` reports them.
    pub fn wait_warm_pool(&self, pool: &str, ready: usize, patience: Duration) {
        let line = format!("openhands_warm_pool_ready{{pool=\"{pool}\"}} {ready}\n");
        let deadline = std::time::Instant::now() + patience;
        loop {
            let metrics = self.text("/metrics");
            if metrics.contains(&line) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "pool {pool} never had {ready} Ready: {metrics}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn get(&self, path: &str) -> Answer {
        self.call("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Answer {
        self.call("POST", path, Some(body))
    }

    /// Polls `GET /sessions/{id}` until `condition` holds, and returns that runtime object.
    pub fn wait_for_session(&self, session_id: &str, what: &str, condition: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let answer = self.get(&format!("/sessions/{session_id}"));
            if answer.code == 200 && condition(&answer.body) {
                return answer.body;
            }
            assert!(
                Instant::now() < deadline,
                "session {session_id} never became {what}; last: {} {:#}",
                answer.code,
                answer.body
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits for `status` on the session's runtime.
    pub fn wait_for_status(&self, session_id: &str, status: &str) -> Value {
        self.wait_for_session(session_id, status, |r| r["status"] == status)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}
