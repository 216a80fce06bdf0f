//! The README's first command, `cargo run --release --example demo`, as a newcomer uses it:
//! the curl lines it prints show a sandbox go from `starting` to `running`.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const PATIENCE: Duration = Duration::from_secs(30);

/// The demo example, which `cargo test` builds beside the test binaries.
fn demo_binary() -> PathBuf {
    let test_binary = std::env::current_exe().expect("the test binary's path");
    let profile_dir = test_binary
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    profile_dir
        .join("examples")
        .join(format!("demo{}", std::env::consts::EXE_SUFFIX))
}

struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn call(agent: &ureq::Agent, method: &str, url: &str, body: Option<Value>) -> Option<(u16, Value)> {
    let request = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .header("X-API-Key", "dev");
    let mut response = match body {
        Some(body) => agent.run(request.body(body.to_string()).ok()?),
        None => agent.run(request.body(()).ok()?),
    }
    .ok()?;
    let code = response.status().as_u16();
    let body = serde_json::from_str(&response.body_mut().read_to_string().ok()?).ok()?;
    Some((code, body))
}

#[test]
fn the_demo_serves_a_sandbox_that_starts_then_runs() {
    let binary = demo_binary();
    assert!(
        binary.exists(),
        "{} is missing: `cargo test` builds the examples, `cargo test --test demo` alone does not (add `cargo build --example demo`)",
        binary.display()
    );
    let port = support::free_port();
    let _demo = Demo(
        Command::new(&binary)
            .env("SERVER_PORT", port.to_string())
            .env_remove("API_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the demo"),
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let api = format!("http://127.0.0.1:{port}");

    let deadline = Instant::now() + PATIENCE;
    let started = loop {
        match call(
            &agent,
            "POST",
            &format!("{api}/start"),
            Some(json!({"session_id": "demo"})),
        ) {
            Some((201, runtime)) => break runtime,
            // Not listening yet, or still loading its runtimes (503).
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            other => panic!("the demo did not start a sandbox: {other:?}"),
        }
    };
    assert_eq!(started["status"], "starting");

    let mut seen = vec!["starting".to_string()];
    while seen.last().map(String::as_str) != Some("running") {
        assert!(Instant::now() < deadline, "the sandbox went {seen:?}, never running");
        std::thread::sleep(Duration::from_millis(100));
        let (code, runtime) = call(&agent, "GET", &format!("{api}/sessions/demo"), None).expect("an answer");
        assert_eq!(code, 200, "{runtime}");
        let status = runtime["status"].as_str().unwrap_or_default().to_string();
        if seen.last() != Some(&status) {
            seen.push(status);
        }
    }
    assert_eq!(seen.first().map(String::as_str), Some("starting"));
    assert!(seen.iter().all(|s| s == "starting" || s == "running"), "{seen:?}");
}
