//! Time to a working sandbox: from `POST /start` (or `/resume`) to the first successful
//! authenticated call to the sandbox's real agent server (a command run through the ingress
//! stand-in with the returned key), for each agent-server version the clients deploy, one
//! sandbox at a time and 8 at once. Prints Markdown tables that split the time into the
//! service's share and the rest.
//!
//! ```sh
//! bash tests/agent-server/install.sh 1.58.2 1.34.0            # once
//! cargo run --release --example time-to-sandbox               # 20 one at a time, 3 rounds of 8
//! cargo run --release --example time-to-sandbox -- --quick    # CI: 2 and 1 round of 2, one version
//! ```
//!
//! Everything shares this machine's cores: the fake API server, its node running the agents,
//! the ingress stand-in and the service.

#[path = "../tests/support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::agent_bed::{AgentBed, VERSIONS};
use support::ingress::IngressStandIn;
use support::release::{Service, build, percentile};
use support::{FakeKube, NAMESPACE, TOKEN};

const API_KEY: &str = "bench-key";
const BASE_DOMAIN: &str = "sandbox.bench";
const PATIENCE: Duration = Duration::from_secs(300);
/// The service's share between the pod turning Ready and `running` being served (issue #18).
const READY_TO_RUNNING_P99: Duration = Duration::from_millis(100);

/// One sandbox's start, step by step.
#[derive(Clone, Copy, Default)]
struct Sample {
    /// `/start` or `/resume` answered.
    answered: Duration,
    /// The node saw the pod (created by the service) after the request was sent.
    pod_seen: Duration,
    /// The pod seen until its container's process started: the simulated kubelet's step.
    container_started: Duration,
    /// The process started until the startup probe first got an answer: the agent's boot.
    agent_answered: Duration,
    /// That answer until the node wrote Ready (readiness probe period).
    pod_ready: Duration,
    /// Ready written until the service first served `running`: the service's share.
    running_served: Duration,
    /// `running` until a command through the ingress with the key succeeded.
    first_command: Duration,
    /// From the request to that command.
    total: Duration,
}

/// A table row: the step, whose time it is, and its figure in a sample.
type Row = (&'static str, &'static str, fn(&Sample) -> Duration);

const ROWS: [Row; 8] = [
    ("request answered (201/200)", "service", |s| s.answered),
    ("request sent → pod seen by the node", "service + API server", |s| {
        s.pod_seen
    }),
    ("pod seen → container started", "simulated kubelet", |s| {
        s.container_started
    }),
    (
        "container started → agent answers /alive",
        "agent boot (probed every period)",
        |s| s.agent_answered,
    ),
    (
        "agent answers → pod Ready written",
        "kubelet (readiness period)",
        |s| s.pod_ready,
    ),
    ("pod Ready → `running` served", "service", |s| s.running_served),
    ("`running` → first command OK via ingress", "ingress + agent", |s| {
        s.first_command
    }),
    ("**total: request → working sandbox**", "", |s| s.total),
];

struct Bed {
    fake: FakeKube,
    ingress: IngressStandIn,
    service: Service,
    http: ureq::Agent,
}

impl Bed {
    fn start(binary: &Path, agents: AgentBed) -> Bed {
        let fake = FakeKube::builder().run_agents(agents).start();
        fake.skip_self_validation();
        let ingress = fake.start_ingress(0);
        let dir = support::temp_dir("time-to-sandbox");
        std::fs::write(dir.join("token"), TOKEN).expect("write the token");
        let env = [
            ("API_KEY", API_KEY.to_string()),
            ("KUBE_API_URL", fake.url().to_string()),
            ("KUBE_TOKEN_FILE", dir.join("token").display().to_string()),
            ("NAMESPACE", NAMESPACE.to_string()),
            ("BASE_DOMAIN", BASE_DOMAIN.to_string()),
            ("URL_SCHEME", "http".to_string()),
            ("RUST_LOG", "info".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let service = Service::start(binary, env, &dir.join("service.log"));
        let http = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Bed {
            fake,
            ingress,
            service,
            http,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.service.url);
        let answer = match body {
            Some(body) => self
                .http
                .post(&url)
                .header("X-API-Key", API_KEY)
                .header("Content-Type", "application/json")
                .send(body.to_string()),
            None if method == "GET" => self.http.get(&url).header("X-API-Key", API_KEY).call(),
            None => panic!("{method} without a body"),
        };
        let mut answer = answer.unwrap_or_else(|e| panic!("{path}: {e}"));
        let code = answer.status().as_u16();
        let text = answer.body_mut().read_to_string().unwrap_or_default();
        (code, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `/start` (or, with `resume`, `/resume`) of `session`, followed to its first command.
    fn measure(&self, session: &str, image: &str, resume: Option<&str>) -> Sample {
        let sent = Instant::now();
        let (code, body) = match resume {
            Some(id) => self.call("POST", "/resume", Some(json!({"runtime_id": id}))),
            None => self.call("POST", "/start", Some(json!({"session_id": session, "image": image}))),
        };
        let answered = sent.elapsed();
        assert!(matches!(code, 200 | 201), "{session}: {code} {body}");
        let id = body["runtime_id"].as_str().expect("a runtime id").to_string();
        let runtime = loop {
            let (_, runtime) = self.call("GET", &format!("/runtime/{id}"), None);
            if runtime["status"] == "running" {
                break runtime;
            }
            assert!(runtime["status"] != "error", "{session}: {runtime}");
            assert!(sent.elapsed() < PATIENCE, "{session} did not run: {runtime}");
            thread::sleep(Duration::from_millis(2));
        };
        let running = Instant::now();
        let key = runtime["session_api_key"].as_str().expect("a key");
        let host = runtime["url"].as_str().expect("a url").trim_start_matches("http://");
        loop {
            let answer = self
                .http
                .post(format!("{}/api/bash/execute_bash_command", self.ingress.url()))
                .header("Host", host)
                .header("X-Session-API-Key", key)
                .header("Content-Type", "application/json")
                .send(r#"{"command": "true"}"#);
            if answer.is_ok_and(|a| a.status() == 200) {
                break;
            }
            assert!(sent.elapsed() < PATIENCE, "{session}: no command succeeded");
            thread::sleep(Duration::from_millis(10));
        }
        let worked = Instant::now();
        let pod = format!("runtime-{id}");
        let timeline = self
            .fake
            .node()
            .and_then(|node| node.timeline(&pod))
            .expect("the pod's timeline");
        let since = |later: Option<Instant>, earlier: Instant| {
            later.map_or(Duration::ZERO, |t| t.saturating_duration_since(earlier))
        };
        let started = timeline.started.expect("started");
        let agent = timeline.answered.expect("answered");
        let ready = timeline.ready.expect("ready");
        Sample {
            answered,
            pod_seen: timeline.seen.saturating_duration_since(sent),
            container_started: since(timeline.started, timeline.seen),
            agent_answered: since(timeline.answered, started),
            pod_ready: since(timeline.ready, agent),
            running_served: running.saturating_duration_since(ready),
            first_command: worked.saturating_duration_since(running),
            total: worked.saturating_duration_since(sent),
        }
    }

    /// Pauses (or stops) the runtime and waits until its agent is gone.
    fn put_away(&self, id: &str, how: &str) {
        let (code, body) = self.call("POST", &format!("/{how}"), Some(json!({"runtime_id": id})));
        assert_eq!(code, 200, "{how}: {body}");
        let pod = format!("runtime-{id}");
        assert!(self.fake.wait_for(PATIENCE, |view| view.object("pods", &pod).is_none()));
    }

    fn runtime_id(&self, session: &str) -> String {
        let (_, runtime) = self.call("GET", &format!("/sessions/{session}"), None);
        runtime["runtime_id"].as_str().expect("a runtime").to_string()
    }
}

struct Options {
    sequential: usize,
    rounds: usize,
    concurrency: usize,
    versions: Vec<&'static str>,
}

fn table(out: &mut String, title: &str, samples: &[Sample]) {
    let _ = writeln!(out, "\n#### {title} ({} sandboxes)\n", samples.len());
    let _ = writeln!(out, "| step | whose | p50 ms | p90 ms | p99 ms |");
    let _ = writeln!(out, "|---|---|---:|---:|---:|");
    for (name, whose, field) in ROWS {
        let mut values: Vec<Duration> = samples.iter().map(field).collect();
        let [p50, p90, p99] = [0.5, 0.9, 0.99].map(|p| percentile(&mut values, p).as_secs_f64() * 1000.0);
        let _ = writeln!(out, "| {name} | {whose} | {p50:.0} | {p90:.0} | {p99:.0} |");
    }
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let options = if quick {
        Options {
            sequential: 2,
            rounds: 1,
            concurrency: 2,
            versions: vec![VERSIONS[0]],
        }
    } else {
        Options {
            sequential: 20,
            rounds: 3,
            concurrency: 8,
            versions: VERSIONS.to_vec(),
        }
    };
    let agents = match AgentBed::find(&options.versions) {
        Ok(agents) => agents,
        Err(why) => {
            eprintln!("time-to-sandbox: {why}");
            std::process::exit(if std::env::var_os("REQUIRE_AGENT_SERVER").is_some() {
                1
            } else {
                0
            });
        }
    };
    let binary = build(None);
    let mut out = String::new();
    let mut worst_ready_to_running = Duration::ZERO;
    for version in &options.versions {
        let image = AgentBed::image(version);
        let bed = Bed::start(&binary, agents.clone());
        let (mut cold, mut resumed, mut together) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..options.sequential {
            let session = format!("seq-{i}");
            eprintln!("time-to-sandbox {version}: {session}");
            cold.push(bed.measure(&session, &image, None));
            let id = bed.runtime_id(&session);
            bed.put_away(&id, "pause");
            resumed.push(bed.measure(&session, &image, Some(&id)));
            bed.put_away(&id, "stop");
        }
        for round in 0..options.rounds {
            eprintln!(
                "time-to-sandbox {version}: round {round} of {} at once",
                options.concurrency
            );
            let samples: Vec<Sample> = thread::scope(|scope| {
                let handles: Vec<_> = (0..options.concurrency)
                    .map(|i| {
                        let (bed, image) = (&bed, &image);
                        scope.spawn(move || bed.measure(&format!("par-{round}-{i}"), image, None))
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().expect("a start")).collect()
            });
            for i in 0..options.concurrency {
                bed.put_away(&bed.runtime_id(&format!("par-{round}-{i}")), "stop");
            }
            together.extend(samples);
        }
        let _ = writeln!(out, "\n### agent server {version}");
        table(&mut out, "cold start, one at a time", &cold);
        table(&mut out, "resume, one at a time", &resumed);
        table(
            &mut out,
            &format!("cold start, {} at once", options.concurrency),
            &together,
        );
        for samples in [&cold, &resumed, &together] {
            let mut values: Vec<Duration> = samples.iter().map(|s| s.running_served).collect();
            worst_ready_to_running = worst_ready_to_running.max(percentile(&mut values, 0.99));
        }
    }
    let verdict = if worst_ready_to_running < READY_TO_RUNNING_P99 {
        "PASS"
    } else {
        "FAIL"
    };
    let _ = writeln!(
        out,
        "\npod Ready → `running` served, worst p99: {:.1} ms (target < {} ms): {verdict}",
        worst_ready_to_running.as_secs_f64() * 1000.0,
        READY_TO_RUNNING_P99.as_millis()
    );
    println!("{out}");
}
