//! The service's release binary, built and run for the benchmarks (`examples/`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

pub const BINARY: &str = "openhands-k8s-runtime";

/// Builds the service with `cargo build --release` (statically for `static_target`); its path.
pub fn build(static_target: Option<&str>) -> PathBuf {
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["build", "--release", "--locked", "--bin", BINARY])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    let path = match static_target {
        Some(target) => {
            command
                .args(["--target", target])
                .env("RUSTFLAGS", "-C target-feature=+crt-static");
            if target.ends_with("-musl") {
                // ring's C and assembly, for musl (Debian's musl-tools).
                command.env(format!("CC_{}", target.replace('-', "_")), "musl-gcc");
            }
            target_dir.join(target).join("release").join(BINARY)
        }
        None => target_dir.join("release").join(BINARY),
    };
    let status = command.status().expect("run cargo");
    assert!(status.success(), "cargo build failed");
    path
}

/// The `p` quantile (nearest rank) of `latencies`, which it sorts.
pub fn percentile(latencies: &mut [Duration], p: f64) -> Duration {
    latencies.sort_unstable();
    let rank = ((latencies.len() as f64) * p).ceil() as usize;
    latencies[rank.clamp(1, latencies.len()) - 1]
}

/// The service process, its log appended to `log` across restarts; killed when dropped.
pub struct Service {
    binary: PathBuf,
    child: Child,
    env: Vec<(String, String)>,
    log: PathBuf,
    pub url: String,
}

impl Service {
    /// Starts `binary` with exactly `env` and a port of its own; returns once it is ready.
    pub fn start(binary: &Path, mut env: Vec<(String, String)>, log: &Path) -> Service {
        let port = super::free_port();
        env.retain(|(name, _)| name != "SERVER_PORT");
        env.push(("SERVER_PORT".into(), port.to_string()));
        let mut service = Service {
            binary: binary.to_path_buf(),
            child: spawn(binary, &env, log),
            env,
            log: log.to_path_buf(),
            url: format!("http://127.0.0.1:{port}"),
        };
        service.wait_ready();
        service
    }

    /// Kills the process and starts it again; returns the time until `/readiness` said 200.
    pub fn restart(&mut self) -> Duration {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let started = Instant::now();
        self.child = spawn(&self.binary, &self.env, &self.log);
        self.wait_ready();
        started.elapsed()
    }

    fn wait_ready(&mut self) {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the service exited ({status})");
            }
            if agent
                .get(format!("{}/readiness", self.url))
                .call()
                .is_ok_and(|r| r.status() == 200)
            {
                return;
            }
            assert!(Instant::now() < deadline, "the service was not ready in 120 s");
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Its resident memory in MiB.
    pub fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let kib: f64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .unwrap_or(f64::NAN);
        kib / 1024.0
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(binary: &Path, env: &[(String, String)], log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open the service log");
    Command::new(binary)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start the service")
}
