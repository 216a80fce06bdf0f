//! Time to a working sandbox: from `POST /start` (or `/resume`) to the first successful
//! authenticated call to the sandbox's real agent server (a command run through the ingress
//! stand-in with the returned key), for each agent-server version the clients deploy, one
//! sandbox at a time and 8 at once: cold, claimed from a warm pool sized for them, and cold
//! with a pool configured but empty (its pods unschedulable). Prints Markdown tables that split
//! the time into the service's share and the rest, and the warm-pool targets.
//!
//! ```sh
//! bash tests/agent-server/install.sh 1.58.2 1.34.0            # once
//! cargo run --release --example time-to-sandbox               # 20 one at a time, 3 rounds of 8
//! cargo run --release --example time-to-sandbox -- --quick    # CI: 2 and 1 round of 2, one version
//! cargo run --release --example time-to-sandbox -- --warm     # warm starts only (to iterate on them)
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
use support::{FakeKube, NAMESPACE, PodFate, TOKEN};

const API_KEY: &str = "bench-key";
const BASE_DOMAIN: &str = "sandbox.bench";
const PATIENCE: Duration = Duration::from_secs(300);
/// The service's share between the pod turning Ready and `running` being served (issue #18).
const READY_TO_RUNNING_P99: Duration = Duration::from_millis(100);
/// A warm start, request to working sandbox (issue #20).
const WARM_P50: Duration = Duration::from_millis(300);
const WARM_P99: Duration = Duration::from_secs(1);
/// What a configured but empty pool may add to a cold start's answer (issue #20).
const EMPTY_POOL_COST: Duration = Duration::from_millis(50);
const POOL: &str = "bench";

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

/// A claimed warm pod booted before the request: only these steps are the request's.
const WARM_ROWS: [Row; 3] = [
    (
        "request answered (201, `running`)",
        "service + agent's /api/init",
        |s| s.answered,
    ),
    ("answered → first command OK via ingress", "ingress + agent", |s| {
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
    /// The bed; with a pool of `pool_size` pods booted from `image`, unschedulable when
    /// `starved` (a full cluster: the pool stays empty).
    fn start(binary: &Path, agents: AgentBed, pool: Option<(&str, usize)>, starved: bool) -> Bed {
        let fake = FakeKube::builder().run_agents(agents).start();
        fake.skip_self_validation();
        if starved {
            let message = "0/1 nodes are available: 1 Insufficient cpu.".to_string();
            fake.kubelet_rule(
                &format!("openhands.dev/warm-pool={POOL}"),
                PodFate::Unschedulable { message },
            );
        }
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
        .chain(pool.map(|(image, size)| {
            let pools = json!([{"name": POOL, "size": size, "request": {"image": image}}]);
            ("WARM_POOLS", pools.to_string())
        }))
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

    /// Waits until the pool has `ready` Ready warm pods.
    fn wait_pool(&self, ready: usize) {
        let line = format!("openhands_warm_pool_ready{{pool=\"{POOL}\"}} {ready}\n");
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut answer = self
                .http
                .get(format!("{}/metrics", self.service.url))
                .call()
                .expect("/metrics answers");
            if answer.body_mut().read_to_string().unwrap_or_default().contains(&line) {
                return;
            }
            assert!(Instant::now() < deadline, "the pool never had {ready} Ready pods");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// `at_once` starts of `image` together, measured; then stopped.
    fn round(&self, name: &str, image: &str, at_once: usize) -> Vec<Sample> {
        let samples: Vec<Sample> = thread::scope(|scope| {
            let handles: Vec<_> = (0..at_once)
                .map(|i| scope.spawn(move || self.measure(&format!("{name}-{i}"), image, None)))
                .collect();
            handles.into_iter().map(|h| h.join().expect("a start")).collect()
        });
        for i in 0..at_once {
            self.put_away(&self.runtime_id(&format!("{name}-{i}")), "stop");
        }
        samples
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
    /// Cold starts, resumes and the empty pool too, not only warm starts.
    cold: bool,
}

/// The samples of one agent-server version, each kind of start on a bed of its own.
#[derive(Default)]
struct Measured {
    cold: Vec<Sample>,
    resumed: Vec<Sample>,
    cold_together: Vec<Sample>,
    warm: Vec<Sample>,
    warm_together: Vec<Sample>,
    empty_pool: Vec<Sample>,
}

impl Measured {
    fn of(binary: &Path, agents: &AgentBed, version: &str, options: &Options) -> Measured {
        let image = AgentBed::image(version);
        let mut measured = Measured::default();
        if options.cold {
            let bed = Bed::start(binary, agents.clone(), None, false);
            for i in 0..options.sequential {
                let session = format!("seq-{i}");
                eprintln!("time-to-sandbox {version}: {session}");
                measured.cold.push(bed.measure(&session, &image, None));
                let id = bed.runtime_id(&session);
                bed.put_away(&id, "pause");
                measured.resumed.push(bed.measure(&session, &image, Some(&id)));
                bed.put_away(&id, "stop");
            }
            for round in 0..options.rounds {
                eprintln!(
                    "time-to-sandbox {version}: round {round} of {} at once",
                    options.concurrency
                );
                let samples = bed.round(&format!("par-{round}"), &image, options.concurrency);
                measured.cold_together.extend(samples);
            }
        }

        // Warm: a pool sized for the starts, full before each one (or each round).
        let bed = Bed::start(binary, agents.clone(), Some((&image, options.concurrency)), false);
        for i in 0..options.sequential {
            eprintln!("time-to-sandbox {version}: warm-{i}");
            bed.wait_pool(options.concurrency);
            measured.warm.push(bed.measure(&format!("warm-{i}"), &image, None));
            bed.put_away(&bed.runtime_id(&format!("warm-{i}")), "stop");
        }
        for round in 0..options.rounds {
            eprintln!(
                "time-to-sandbox {version}: warm round {round} of {} at once",
                options.concurrency
            );
            bed.wait_pool(options.concurrency);
            let samples = bed.round(&format!("warm-par-{round}"), &image, options.concurrency);
            measured.warm_together.extend(samples);
        }
        drop(bed);

        if options.cold {
            // A pool configured, its pods unschedulable: every start is cold and goes by the pool.
            let bed = Bed::start(binary, agents.clone(), Some((&image, 1)), true);
            for i in 0..options.sequential {
                eprintln!("time-to-sandbox {version}: empty-pool-{i}");
                measured
                    .empty_pool
                    .push(bed.measure(&format!("empty-pool-{i}"), &image, None));
                bed.put_away(&bed.runtime_id(&format!("empty-pool-{i}")), "stop");
            }
        }
        measured
    }
}

fn table(out: &mut String, title: &str, samples: &[Sample]) {
    rows_table(out, title, samples, &ROWS);
}

fn rows_table(out: &mut String, title: &str, samples: &[Sample], rows: &[Row]) {
    let _ = writeln!(out, "\n#### {title} ({} sandboxes)\n", samples.len());
    let _ = writeln!(out, "| step | whose | p50 ms | p90 ms | p99 ms |");
    let _ = writeln!(out, "|---|---|---:|---:|---:|");
    for (name, whose, field) in rows {
        let mut values: Vec<Duration> = samples.iter().map(field).collect();
        let [p50, p90, p99] = [0.5, 0.9, 0.99].map(|p| percentile(&mut values, p).as_secs_f64() * 1000.0);
        let _ = writeln!(out, "| {name} | {whose} | {p50:.0} | {p90:.0} | {p99:.0} |");
    }
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let cold = !std::env::args().any(|arg| arg == "--warm");
    let options = if quick {
        Options {
            sequential: 2,
            rounds: 1,
            concurrency: 2,
            versions: vec![VERSIONS[0]],
            cold,
        }
    } else {
        Options {
            sequential: 20,
            rounds: 3,
            concurrency: 8,
            versions: VERSIONS.to_vec(),
            cold,
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
    let mut worst_ready_to_running = None;
    let mut targets = Vec::new();
    for version in &options.versions {
        let m = Measured::of(&binary, &agents, version, &options);
        let _ = writeln!(out, "\n### agent server {version}");
        let at_once = |what: &str| format!("{what}, {} at once", options.concurrency);
        if options.cold {
            table(&mut out, "cold start, one at a time", &m.cold);
            table(&mut out, "resume, one at a time", &m.resumed);
            table(&mut out, &at_once("cold start"), &m.cold_together);
        }
        rows_table(&mut out, "warm start, one at a time", &m.warm, &WARM_ROWS);
        rows_table(&mut out, &at_once("warm start"), &m.warm_together, &WARM_ROWS);
        if options.cold {
            table(&mut out, "cold start with the pool empty, one at a time", &m.empty_pool);
        }
        for samples in [&m.cold, &m.resumed, &m.cold_together, &m.empty_pool] {
            let mut values: Vec<Duration> = samples.iter().map(|s| s.running_served).collect();
            if !values.is_empty() {
                let p99 = percentile(&mut values, 0.99);
                worst_ready_to_running = worst_ready_to_running.max(Some(p99));
            }
        }
        for (what, samples) in [("one at a time", &m.warm), ("at once", &m.warm_together)] {
            let mut totals: Vec<Duration> = samples.iter().map(|s| s.total).collect();
            let (p50, p99) = (percentile(&mut totals, 0.5), percentile(&mut totals, 0.99));
            targets.push((
                format!(
                    "{version}: warm start {what}, p50 <= {} ms and p99 <= {} ms",
                    WARM_P50.as_millis(),
                    WARM_P99.as_millis()
                ),
                format!("{} / {}", ms(p50), ms(p99)),
                p50 <= WARM_P50 && p99 <= WARM_P99,
            ));
        }
        if options.cold {
            let answered = |samples: &[Sample]| {
                let mut values: Vec<Duration> = samples.iter().map(|s| s.answered).collect();
                percentile(&mut values, 0.5)
            };
            let (with_pool, without) = (answered(&m.empty_pool), answered(&m.cold));
            targets.push((
                format!(
                    "{version}: an empty pool adds <= {} ms to a cold start's answer (p50)",
                    EMPTY_POOL_COST.as_millis()
                ),
                format!("{} vs {}", ms(with_pool), ms(without)),
                with_pool <= without + EMPTY_POOL_COST,
            ));
        }
    }
    if let Some(worst) = worst_ready_to_running {
        targets.push((
            format!(
                "pod Ready → `running` served, worst p99 < {} ms",
                READY_TO_RUNNING_P99.as_millis()
            ),
            ms(worst),
            worst < READY_TO_RUNNING_P99,
        ));
    }
    let _ = writeln!(out, "\n| target | figure | verdict |\n|---|---:|---|");
    for (target, figure, pass) in targets {
        let _ = writeln!(out, "| {target} | {figure} | {} |", if pass { "PASS" } else { "FAIL" });
    }
    println!("{out}");
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
