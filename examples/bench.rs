//! The benchmark: the release binary of the service against the fake API server, at 100, 1,000
//! and 5,000 runtimes, with a warm pool of 10 pods Ready throughout (which its starts do not
//! match). Prints one Markdown table of figures and PASS/FAIL per target.
//!
//! ```sh
//! cargo run --release --example bench                      # the full run (a few minutes)
//! cargo run --release --example bench -- --runtimes 1000   # levels up to 1,000
//! cargo run --release --example bench -- --quick           # CI: tiny, checks nothing rots
//! cargo run --release --example bench -- --no-pool         # without the warm pool, to compare
//! ```
//!
//! The static binary measured is the one the Dockerfile ships, musl's, where this machine has
//! the target (`rustup target add x86_64-unknown-linux-musl` and Debian's `musl-tools`); else
//! glibc's with `+crt-static`, about 0.9 MiB larger.
//!
//! Everything runs on this machine: the fake API server and the clients share its cores with
//! the service, as they would share a small node.

#[path = "../tests/support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::release::{BINARY, Service, build, percentile};
use support::{FakeKube, NAMESPACE, TOKEN};

const API_KEY: &str = "bench-key";
const CONCURRENCY: [usize; 3] = [1, 8, 32];
/// Idle checks every half minute, so that the run sees a round without waiting long.
const IDLE_CHECK_INTERVAL_SECS: u32 = 30;
const IDLE_CHECK_INTERVAL: &str = "30s";
const MIB: f64 = 1024.0 * 1024.0;
/// A pool of 10 warm pods Ready throughout, which the bench's starts do not match (they stay
/// cold): what a pool costs everything else.
const WARM_POOL_SIZE: usize = 10;
const WARM_POOLS: &str = r#"[{"name": "bench", "size": 10, "request": {"environment": {"LOG_JSON": "true"}}}]"#;

struct Options {
    levels: Vec<usize>,
    quick: bool,
    /// With the warm pool of `WARM_POOL_SIZE` (the default), or without any.
    pool: bool,
}

impl Options {
    fn parse() -> Options {
        let mut options = Options {
            levels: vec![100, 1_000, 5_000],
            quick: false,
            pool: true,
        };
        let usage = || -> ! {
            eprintln!("usage: bench [--runtimes N] [--quick] [--no-pool]");
            std::process::exit(2);
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => {
                    options.quick = true;
                    options.levels = vec![10, 20];
                }
                "--no-pool" => options.pool = false,
                "--runtimes" => match args.next().and_then(|n| n.parse::<usize>().ok()) {
                    Some(n) if n > 0 => {
                        options.levels.retain(|level| *level < n);
                        options.levels.push(n);
                    }
                    _ => usage(),
                },
                _ => usage(),
            }
        }
        options
    }

    /// Requests per latency cell: enough for a p99, bounded for the costly endpoints.
    fn requests(&self, endpoint: Endpoint, clients: usize) -> usize {
        let total = match (self.quick, endpoint) {
            (true, Endpoint::Start) => clients,
            (true, _) => 4 * clients,
            (false, Endpoint::Session | Endpoint::Batch) => 2_000,
            (false, Endpoint::List) => 300,
            (false, Endpoint::Start) => 192,
        };
        total.div_ceil(clients).max(1)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Session,
    Batch,
    List,
    Start,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::Session => "GET /sessions/{id}",
            Endpoint::Batch => "GET /sessions/batch (100 ids)",
            Endpoint::List => "GET /list",
            Endpoint::Start => "POST /start",
        }
    }
}

/// The service process, its port and its HTTP clients.
/// The service against `fake`, its log in `log_path()`; its idle checks ask the agent stand-in
/// on `agent_port` (every pod's address is 127.0.0.1).
fn start_service(binary: &Path, fake: &FakeKube, dir: &Path, agent_port: u16, pool: bool) -> Service {
    std::fs::write(dir.join("token"), TOKEN).expect("write the token");
    let pool = if pool { WARM_POOLS } else { "[]" };
    let env: Vec<(String, String)> = [
        ("API_KEY", API_KEY.to_string()),
        ("KUBE_API_URL", fake.url().to_string()),
        ("KUBE_TOKEN_FILE", dir.join("token").display().to_string()),
        ("NAMESPACE", NAMESPACE.to_string()),
        ("BASE_DOMAIN", "sandbox.bench".to_string()),
        ("RUST_LOG", "info".to_string()),
        ("AGENT_SERVER_PORT", agent_port.to_string()),
        ("IDLE_CHECK_INTERVAL", IDLE_CHECK_INTERVAL.to_string()),
        ("WARM_POOLS", pool.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Service::start(binary, env, &log_path())
}

/// The service's log (appended to across restarts), where it says how long recovery took.
fn log_path() -> PathBuf {
    std::env::temp_dir().join(format!("openhands-bench-{}.log", std::process::id()))
}

/// The last "recovered N runtimes ... in X" line of the service's log.
fn recovery_logged() -> String {
    std::fs::read_to_string(log_path())
        .unwrap_or_default()
        .lines()
        .rev()
        .find_map(|line| line.split_once("recovered ").map(|(_, rest)| rest.to_string()))
        .unwrap_or_else(|| "not logged".into())
}

/// A keep-alive HTTP client.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// One request; panics on anything but the expected answer, so that a figure is never of errors.
fn call(agent: &ureq::Agent, url: &str, body: Option<&Value>) -> Vec<u8> {
    let response = match body {
        Some(body) => agent
            .post(url)
            .header("X-API-Key", API_KEY)
            .header("Content-Type", "application/json")
            .send(body.to_string()),
        None => agent.get(url).header("X-API-Key", API_KEY).call(),
    };
    let mut response = response.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = response.status().as_u16();
    let bytes = response
        .body_mut()
        .with_config()
        .limit(256 * 1024 * 1024)
        .read_to_vec()
        .expect("a body");
    assert!(
        (200..300).contains(&status),
        "{url}: {status} {}",
        String::from_utf8_lossy(&bytes)
    );
    bytes
}

/// Runs `clients` keep-alive clients, each sending `per_client` requests built by `request`
/// (client index, request index); returns every latency.
fn load(
    clients: usize,
    per_client: usize,
    request: impl Fn(usize, usize) -> (String, Option<Value>) + Sync,
) -> Vec<Duration> {
    let start = Barrier::new(clients);
    thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|client| {
                let (start, request) = (&start, &request);
                scope.spawn(move || {
                    let agent = agent();
                    start.wait();
                    (0..per_client)
                        .map(|i| {
                            let (url, body) = request(client, i);
                            let sent = Instant::now();
                            call(&agent, &url, body.as_ref());
                            sent.elapsed()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("a client")).collect()
    })
}

/// Requests per second that `clients` clients get for `run` seconds.
fn throughput(clients: usize, run: Duration, url: &str) -> f64 {
    let stop = AtomicBool::new(false);
    let done = AtomicUsize::new(0);
    let start = Barrier::new(clients + 1);
    let elapsed = thread::scope(|scope| {
        for _ in 0..clients {
            let (stop, done, start) = (&stop, &done, &start);
            scope.spawn(move || {
                let agent = agent();
                start.wait();
                while !stop.load(Ordering::Relaxed) {
                    call(&agent, url, None);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        start.wait();
        let began = Instant::now();
        thread::sleep(run);
        stop.store(true, Ordering::Relaxed);
        began.elapsed()
    });
    done.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64()
}

/// A trivial HTTP server answering `body` to everything: the floor our service is compared with.
fn static_responder(body: Vec<u8>, workers: usize) -> (Arc<tiny_http::Server>, String) {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("a static responder"));
    let url = format!("http://{}/", server.server_addr().to_ip().expect("an address"));
    let content_type = tiny_http::Header::from_bytes("Content-Type", "application/json").expect("a header");
    for _ in 0..workers {
        let (server, body, content_type) = (server.clone(), body.clone(), content_type.clone());
        thread::spawn(move || {
            for request in server.incoming_requests() {
                let _ = request.respond(tiny_http::Response::from_data(body.clone()).with_header(content_type.clone()));
            }
        });
    }
    (server, url)
}

/// Agents that answer `/server_info` at once, none of them idle, noting when each was asked.
fn agent_stand_in(workers: usize) -> (Arc<tiny_http::Server>, Arc<Mutex<Vec<Instant>>>) {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("an agent stand-in"));
    let asked = Arc::new(Mutex::new(Vec::new()));
    let body = br#"{"uptime": 600.0, "idle_time": 5.0, "runtime_idle_timeout_seconds": null}"#.to_vec();
    for _ in 0..workers {
        let (server, asked, body) = (server.clone(), asked.clone(), body.clone());
        thread::spawn(move || {
            for request in server.incoming_requests() {
                asked.lock().expect("the stand-in's record").push(Instant::now());
                let _ = request.respond(tiny_http::Response::from_data(body.clone()));
            }
        });
    }
    (server, asked)
}

/// One whole idle-check round: waits for the next burst of `/server_info` calls and its end
/// (no call for 2 s). Returns the agents asked, the round's duration, and the Kubernetes calls
/// the service made meanwhile.
fn idle_round(asked: &Mutex<Vec<Instant>>, fake: &FakeKube) -> (usize, Duration, usize) {
    let record = || asked.lock().expect("the stand-in's record");
    record().clear();
    let deadline = Instant::now() + Duration::from_secs(u64::from(IDLE_CHECK_INTERVAL_SECS) * 3);
    while record().is_empty() {
        assert!(Instant::now() < deadline, "no idle-check round came");
        thread::sleep(Duration::from_millis(1));
    }
    let kube_before = fake.requests().len();
    loop {
        let last = *record().last().expect("a call");
        if last.elapsed() >= Duration::from_secs(2) {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let kube_calls = fake.requests().len() - kube_before;
    if kube_calls > 0 {
        let mut kinds: Vec<String> = fake.requests()[kube_before..]
            .iter()
            .map(|r| {
                format!(
                    "{} {}",
                    r.method,
                    r.path.split('/').take(6).collect::<Vec<_>>().join("/")
                )
            })
            .collect();
        kinds.sort();
        kinds.dedup();
        eprintln!("bench: Kubernetes calls during the idle-check round: {kinds:?}");
    }
    let calls = record().clone();
    (calls.len(), calls[calls.len() - 1] - calls[0], kube_calls)
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn host_target() -> String {
    let output = Command::new("rustc").arg("-vV").output().expect("run rustc");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("a host target")
        .to_string()
}

/// The target of the static binary measured: musl's, which the Dockerfile ships, where it is
/// installed (`rustup target add x86_64-unknown-linux-musl`, and Debian's musl-tools for ring's
/// C); else the host's glibc with `+crt-static`, larger by what static glibc brings (~0.9 MiB).
fn static_target(host: &str) -> String {
    let musl = host.replace("-gnu", "-musl");
    let output = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .expect("run rustc");
    let sysroot = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let musl_gcc = Command::new("musl-gcc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if musl != host && musl_gcc && sysroot.join("lib/rustlib").join(&musl).is_dir() {
        musl
    } else {
        host.to_string()
    }
}

/// Starts sessions `from..to` with `clients` clients, and waits until all of them run.
fn grow(service: &Service, from: usize, to: usize, clients: usize) {
    let url = format!("{}/start", service.url);
    let per_client = (to - from).div_ceil(clients);
    load(clients, per_client, |client, i| {
        let n = (from + client * per_client + i).min(to - 1);
        (url.clone(), Some(json!({"session_id": format!("s{n}")})))
    });
    let agent = agent();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let list: Value = serde_json::from_slice(&call(&agent, &format!("{}/list", service.url), None)).expect("JSON");
        let runtimes = list["runtimes"].as_array().expect("runtimes");
        let running = runtimes.iter().filter(|r| r["status"] == "running").count();
        if running >= to {
            return;
        }
        assert!(Instant::now() < deadline, "only {running} of {to} runtimes are running");
        thread::sleep(Duration::from_millis(100));
    }
}

struct Target {
    name: String,
    figure: String,
    pass: bool,
}

fn main() {
    let options = Options::parse();
    let host = host_target();
    let binary = build(None);
    let static_target = static_target(&host);
    let static_binary = build(Some(&static_target));
    let size = std::fs::metadata(&binary).expect("the binary").len() as f64 / MIB;
    let static_size = std::fs::metadata(&static_binary).expect("the static binary").len() as f64 / MIB;

    let fake = FakeKube::builder().pod_ip("127.0.0.1").start();
    fake.skip_self_validation();
    let dir = support::temp_dir("bench");
    let (agents, asked) = agent_stand_in(16);
    let agent_port = agents.server_addr().to_ip().expect("an address").port();
    let mut service = start_service(&binary, &fake, &dir, agent_port, options.pool);
    let reads = agent();
    let pool_ready = || {
        if !options.pool {
            return true;
        }
        let metrics = String::from_utf8_lossy(&call(&reads, &format!("{}/metrics", service.url), None)).into_owned();
        metrics.contains(&format!(
            "openhands_warm_pool_ready{{pool=\"bench\"}} {WARM_POOL_SIZE}\n"
        ))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pool_ready() {
        assert!(Instant::now() < deadline, "the warm pool never filled");
        thread::sleep(Duration::from_millis(50));
    }
    // Let the watches and the first convergence settle before the idle figure.
    thread::sleep(Duration::from_millis(500));
    let rss_idle = service.rss_mib();

    let mut out = String::new();
    // The worst level decides the target: one level calling Kubernetes on reads is a failure.
    let mut most_calls_per_1000_reads: f64 = 0.0;
    let mut rss_rows = vec![format!("| idle | {rss_idle:.1} |")];
    let mut latency_rows = Vec::new();
    let mut kube_rows = Vec::new();
    // Sessions s0, s1, ... exist up to `started`.
    let mut started = 0;
    let max_level = *options.levels.last().expect("a level");
    let mut list_p99_at_max = Duration::ZERO;
    let mut batch_p99_at_max = Duration::ZERO;

    for &level in &options.levels {
        eprintln!("bench: growing to {level} runtimes");
        if started < level {
            grow(&service, started, level, 32);
            started = level;
        }
        let runtimes = started;
        rss_rows.push(format!("| {runtimes} runtimes | {:.1} |", service.rss_mib()));
        let sessions: Vec<String> = (0..runtimes).map(|n| format!("s{n}")).collect();

        // Kubernetes calls per 1,000 reads of every kind.
        let before = fake.requests().len();
        let per = 1000 / 4;
        for i in 0..per {
            let id = &sessions[i * 7919 % sessions.len()];
            call(&reads, &format!("{}/sessions/{id}", service.url), None);
            call(&reads, &format!("{}/sessions/batch?ids={id}", service.url), None);
            call(&reads, &format!("{}/list", service.url), None);
            let runtime: Value =
                serde_json::from_slice(&call(&reads, &format!("{}/sessions/{id}", service.url), None)).expect("JSON");
            call(
                &reads,
                &format!(
                    "{}/runtime/{}",
                    service.url,
                    runtime["runtime_id"].as_str().unwrap_or_default()
                ),
                None,
            );
        }
        let calls_per_1000_reads = (fake.requests().len() - before) as f64 * 1000.0 / (per * 5) as f64;

        for endpoint in [Endpoint::Session, Endpoint::Batch, Endpoint::List, Endpoint::Start] {
            eprintln!(
                "bench: {} at {runtimes} runtimes (RSS {:.1} MiB)",
                endpoint.name(),
                service.rss_mib()
            );
            let mut row = format!("| {} | {runtimes} |", endpoint.name());
            for clients in CONCURRENCY {
                let per_client = options.requests(endpoint, clients);
                let writes_before = fake.requests().iter().filter(|r| r.method != "GET").count();
                let first_new = started;
                let mut latencies = load(clients, per_client, |client, i| {
                    let pick = |k: usize| &sessions[(client * 7919 + i * 104_729 + k * 31) % sessions.len()];
                    match endpoint {
                        Endpoint::Session => (format!("{}/sessions/{}", service.url, pick(0)), None),
                        Endpoint::Batch => {
                            let ids: Vec<String> = (0..100).map(|k| format!("ids={}", pick(k))).collect();
                            (format!("{}/sessions/batch?{}", service.url, ids.join("&")), None)
                        }
                        Endpoint::List => (format!("{}/list", service.url), None),
                        Endpoint::Start => {
                            let n = first_new + client * per_client + i;
                            (
                                format!("{}/start", service.url),
                                Some(json!({"session_id": format!("s{n}")})),
                            )
                        }
                    }
                });
                if endpoint == Endpoint::Start {
                    let count = clients * per_client;
                    started += count;
                    let writes = fake.requests().iter().filter(|r| r.method != "GET").count() - writes_before;
                    if clients == 1 {
                        kube_rows.push(format!(
                            "| {runtimes} | {calls_per_1000_reads:.1} | {:.1} |",
                            writes as f64 / count as f64
                        ));
                    }
                }
                let (p50, p99) = (percentile(&mut latencies, 0.50), percentile(&mut latencies, 0.99));
                if level == max_level && clients == 1 {
                    match endpoint {
                        Endpoint::List => list_p99_at_max = p99,
                        Endpoint::Batch => batch_p99_at_max = p99,
                        _ => {}
                    }
                }
                let _ = write!(row, " {} / {} |", ms(p50), ms(p99));
            }
            latency_rows.push(row);
        }
        most_calls_per_1000_reads = most_calls_per_1000_reads.max(calls_per_1000_reads);
    }
    let rss_max = service.rss_mib();

    let pool_still_full = pool_ready();
    // One idle-check round over every running runtime, the agents answering at once.
    eprintln!("bench: waiting for an idle-check round at {started} runtimes");
    let (agents_asked, idle_round_took, idle_round_kube_calls) = idle_round(&asked, &fake);
    agents.unblock();

    // Throughput of reads, against the floor of a static responder with as many workers.
    let run = if options.quick {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(5)
    };
    let session_url = format!("{}/sessions/s0", service.url);
    let sample = call(&reads, &session_url, None);
    let ours = throughput(32, run, &session_url);
    let (floor_server, floor_url) = static_responder(sample, 16);
    let floor = throughput(32, run, &floor_url);
    floor_server.unblock();

    // Ready-to-visible: from the moment the fake marks a pod Ready to `pod_status: ready`.
    let samples = if options.quick { 3 } else { 20 };
    let mut visible = Vec::new();
    for i in 0..samples {
        let session = format!("ready-{i}");
        let created: Value = serde_json::from_slice(&call(
            &reads,
            &format!("{}/start", service.url),
            Some(&json!({"session_id": session})),
        ))
        .expect("JSON");
        let pod = format!("runtime-{}", created["runtime_id"].as_str().expect("a runtime id"));
        let is_ready = |pod: &Value| {
            pod["status"]["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        };
        assert!(
            fake.wait_for(Duration::from_secs(60), |view| view
                .object("pods", &pod)
                .is_some_and(|p| is_ready(&p))),
            "{pod} never became Ready"
        );
        let ready_at = Instant::now();
        let url = format!("{}/sessions/{session}", service.url);
        loop {
            let runtime: Value = serde_json::from_slice(&call(&reads, &url, None)).expect("JSON");
            if runtime["pod_status"] == "ready" {
                break;
            }
            assert!(
                ready_at.elapsed() < Duration::from_secs(30),
                "{session} never read ready"
            );
        }
        visible.push(ready_at.elapsed());
    }
    let visible_p50 = percentile(&mut visible, 0.5);
    let visible_max = percentile(&mut visible, 1.0);

    // Recovery: everything the cluster holds, rebuilt by a fresh process.
    let in_cluster = fake.objects("secrets").len();
    let recovery = service.restart();

    // The table.
    let _ = writeln!(out, "## Sizes\n\n| binary | MiB |\n|---|---|");
    let _ = writeln!(out, "| release, stripped (`target/release/{BINARY}`) | {size:.2} |");
    let _ = writeln!(out, "| static (`+crt-static`, {static_target}) | {static_size:.2} |");
    let _ = writeln!(out, "\n## Memory (RSS)\n\n| state | MiB |\n|---|---|");
    for row in &rss_rows {
        let _ = writeln!(out, "{row}");
    }
    let _ = writeln!(out, "| after the latency runs ({started} runtimes) | {rss_max:.1} |");
    let _ = writeln!(
        out,
        "\n## Latency, ms (p50 / p99), keep-alive clients\n\nThe fake API server adds no latency of its own: \
         `POST /start` is the service's work plus the fake's (about 1 ms per object for schema checks).\n"
    );
    let _ = writeln!(
        out,
        "| request | runtimes | 1 client | 8 clients | 32 clients |\n|---|---|---|---|---|"
    );
    for row in &latency_rows {
        let _ = writeln!(out, "{row}");
    }
    let _ = writeln!(
        out,
        "\n## Kubernetes API requests\n\n| runtimes | per 1,000 client reads | writes per `/start` |\n|---|---|---|"
    );
    for row in &kube_rows {
        let _ = writeln!(out, "{row}");
    }
    let _ = writeln!(out, "\n## Other figures\n\n| figure | value |\n|---|---|");
    let _ = writeln!(
        out,
        "| `GET /sessions/{{id}}` throughput, 32 clients | {ours:.0} req/s |"
    );
    let _ = writeln!(
        out,
        "| static responder (tiny_http, 16 workers, same body), 32 clients | {floor:.0} req/s |"
    );
    let _ = writeln!(out, "| ratio | {:.2} |", ours / floor);
    let _ = writeln!(
        out,
        "| pod Ready -> `pod_status: ready` served ({samples} pods) | p50 {} ms, max {} ms |",
        ms(visible_p50),
        ms(visible_max)
    );
    let _ = writeln!(
        out,
        "| one idle-check round: {agents_asked} agents asked `/server_info` (stand-in, none idle) | {} ms, {idle_round_kube_calls} Kubernetes calls |",
        ms(idle_round_took)
    );
    let _ = writeln!(
        out,
        "| a warm pool of {WARM_POOL_SIZE} Ready throughout every measurement (the starts do not match it) | {} |",
        match (options.pool, pool_still_full) {
            (false, _) => "no pool (--no-pool)",
            (true, true) => "full at the end",
            (true, false) => "NOT full at the end",
        }
    );
    let _ = writeln!(
        out,
        "| startup recovery of {in_cluster} runtimes (spawn to `/readiness` 200) | {} ms (the service logged: recovered {}) |",
        ms(recovery),
        recovery_logged()
    );

    let targets = [
        Target {
            name: "binary <= 3 MiB (release, stripped)".into(),
            figure: format!("{size:.2} MiB"),
            pass: size <= 3.0,
        },
        Target {
            name: "Kubernetes calls per read: 0".into(),
            figure: format!("{most_calls_per_1000_reads:.1} per 1,000 at the worst level"),
            pass: most_calls_per_1000_reads == 0.0,
        },
        Target {
            name: "static binary <= 3 MiB".into(),
            figure: format!("{static_size:.2} MiB ({static_target})"),
            pass: static_size <= 3.0,
        },
        Target {
            name: "RSS idle <= 5 MiB".into(),
            figure: format!("{rss_idle:.1} MiB"),
            pass: rss_idle <= 5.0,
        },
        Target {
            name: format!("RSS at {max_level} runtimes <= 32 MiB"),
            figure: format!("{rss_max:.1} MiB ({started} runtimes)"),
            pass: rss_max <= 32.0,
        },
        Target {
            name: format!("/list p99 at {max_level} runtimes <= 20 ms (1 client)"),
            figure: format!("{} ms", ms(list_p99_at_max)),
            pass: list_p99_at_max <= Duration::from_millis(20),
        },
        Target {
            name: "/sessions/batch (100 ids) p99 <= 2 ms (1 client)".into(),
            figure: format!("{} ms", ms(batch_p99_at_max)),
            pass: batch_p99_at_max <= Duration::from_millis(2),
        },
        Target {
            name: "Ready-to-visible <= 100 ms (max)".into(),
            figure: format!("{} ms", ms(visible_max)),
            pass: visible_max <= Duration::from_millis(100),
        },
        Target {
            name: format!("recovery of {max_level}+ runtimes <= 2 s"),
            figure: format!("{} ms ({in_cluster} runtimes)", ms(recovery)),
            pass: recovery <= Duration::from_secs(2),
        },
        Target {
            name: "throughput >= 0.3x the static floor".into(),
            figure: format!("{:.2}x", ours / floor),
            pass: ours / floor >= 0.3,
        },
    ];
    let _ = writeln!(out, "\n## Targets\n\n| target | figure | |\n|---|---|---|");
    for target in &targets {
        let verdict = if target.pass { "PASS" } else { "FAIL" };
        let _ = writeln!(out, "| {} | {} | {verdict} |", target.name, target.figure);
    }
    if options.quick {
        let _ = writeln!(out, "\n(quick mode: tiny N and few requests; the figures mean nothing)");
    }
    println!("{out}");
}
