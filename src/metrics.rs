//! What an operator watches: counters and histograms kept as the service works, served at
//! `GET /metrics` in the Prometheus text format (version 0.0.4). Every label value comes from a
//! fixed set (routes, verbs, resources, status codes), never a session or runtime id, so the
//! series stay few however many sandboxes there are.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::events::Action;

/// A bucket's upper bound: as written in `le`, and in microseconds. Written as text, not
/// formatted from a float: float formatting alone would add some 20 KiB to the binary.
type Bound = (&'static str, u64);

/// Bounds of the request-duration buckets.
const REQUEST_BUCKETS: &[Bound] = &[
    ("0.001", 1_000),
    ("0.005", 5_000),
    ("0.01", 10_000),
    ("0.025", 25_000),
    ("0.05", 50_000),
    ("0.1", 100_000),
    ("0.25", 250_000),
    ("0.5", 500_000),
    ("1", 1_000_000),
    ("2.5", 2_500_000),
    ("5", 5_000_000),
    ("10", 10_000_000),
];
/// Bounds of the time-to-running buckets: a warm start takes well under a second, a cold one
/// the agent's boot and more.
const READY_BUCKETS: &[Bound] = &[
    ("0.25", 250_000),
    ("0.5", 500_000),
    ("1", 1_000_000),
    ("2", 2_000_000),
    ("5", 5_000_000),
    ("10", 10_000_000),
    ("20", 20_000_000),
    ("30", 30_000_000),
    ("60", 60_000_000),
    ("120", 120_000_000),
    ("300", 300_000_000),
    ("600", 600_000_000),
];

/// How a runtime got its pod: a new one (`cold`) or a booted one from a pool (`warm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartKind {
    Cold,
    Warm,
}

impl StartKind {
    const ALL: [StartKind; 2] = [StartKind::Cold, StartKind::Warm];

    fn label(self) -> &'static str {
        match self {
            StartKind::Cold => "cold",
            StartKind::Warm => "warm",
        }
    }
}

/// The `status` label of `openhands_runtimes`, in the order they are written.
pub const STATUSES: [&str; 4] = ["starting", "running", "paused", "error"];

/// A Prometheus histogram with fixed bucket bounds.
struct Histogram {
    bounds: &'static [Bound],
    /// Observations at or below each bound (not cumulative; summed when written).
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [Bound]) -> Histogram {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, duration: Duration) {
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        if let Some(bucket) = self.bounds.iter().position(|(_, bound)| micros <= *bound) {
            self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The `_bucket`, `_sum` and `_count` lines; `labels` is `name="value",` or empty.
    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for ((bound, _), bucket) in self.bounds.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {count}");
        let micros = self.sum_micros.load(Ordering::Relaxed);
        let labels = labels.trim_end_matches(',');
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {}.{:06}",
            micros / 1_000_000,
            micros % 1_000_000
        );
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// A label set: up to two words and a status code (unused parts empty or 0). One key type for
/// every counter keeps the binary small: each map type would be code of its own.
type Labels = (&'static str, &'static str, u16);

/// Counters by label set; the sets are few, so a list searched in order serves.
#[derive(Default)]
struct Counters(Mutex<Vec<(Labels, u64)>>);

impl Counters {
    fn add(&self, labels: Labels) {
        let mut counters = lock(&self.0);
        match counters.iter_mut().find(|(l, _)| *l == labels) {
            Some((_, count)) => *count += 1,
            None => counters.push((labels, 1)),
        }
    }

    fn get(&self, labels: Labels) -> u64 {
        lock(&self.0)
            .iter()
            .find(|(l, _)| *l == labels)
            .map_or(0, |(_, count)| *count)
    }

    /// Every label set and its count, in order.
    fn sorted(&self) -> Vec<(Labels, u64)> {
        let mut all = lock(&self.0).clone();
        all.sort_unstable();
        all
    }
}

/// The Kubernetes API calls a client made, by verb, resource and status code (0: no answer).
#[derive(Default)]
pub struct KubeCalls(Counters);

impl KubeCalls {
    pub fn count(&self, verb: &'static str, resource: &'static str, code: u16) {
        self.0.add((verb, resource, code));
    }
}

/// The service's metrics but those of its Kubernetes client (`KubeCalls`).
pub struct Metrics {
    starts: Vec<AtomicU64>,
    ready: Vec<Histogram>,
    actions: Vec<AtomicU64>,
    requests: Counters,
    request_durations: Vec<Histogram>,
    watch_restarts: Counters,
    /// Runtimes started or resumed that have not read `running` yet, and since when.
    awaiting_running: Mutex<HashMap<String, (StartKind, Instant)>>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            starts: StartKind::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            ready: StartKind::ALL.iter().map(|_| Histogram::new(READY_BUCKETS)).collect(),
            actions: Action::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            requests: Counters::default(),
            request_durations: ENDPOINTS.iter().map(|_| Histogram::new(REQUEST_BUCKETS)).collect(),
            watch_restarts: Counters::default(),
            awaiting_running: Mutex::new(HashMap::new()),
        }
    }
}

/// The `endpoint` label values: each route once, ids left out; `other` for any unknown path.
pub const ENDPOINTS: [&str; 15] = [
    "/start",
    "/stop",
    "/pause",
    "/resume",
    "/list",
    "/runtime/{id}",
    "/sessions/{id}",
    "/sessions/batch",
    "/registry_prefix",
    "/image_exists",
    "/health",
    "/liveness",
    "/readiness",
    "/metrics",
    "other",
];

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn kind_index(kind: StartKind) -> usize {
    StartKind::ALL.iter().position(|k| *k == kind).unwrap_or(0)
}

impl Metrics {
    /// A runtime was started or resumed: counted, and timed until it first reads `running`.
    pub fn started(&self, runtime_id: &str, kind: StartKind) {
        self.started_at(runtime_id, kind, Instant::now());
    }

    /// A start whose request arrived at `at` (a claim is known to be one only once it is done).
    pub fn started_at(&self, runtime_id: &str, kind: StartKind, at: Instant) {
        self.starts[kind_index(kind)].fetch_add(1, Ordering::Relaxed);
        lock(&self.awaiting_running).insert(runtime_id.to_string(), (kind, at));
    }

    /// A runtime's pod turned ready: the time since its start or resume, if one is awaited.
    pub fn running(&self, runtime_id: &str) {
        if let Some((kind, since)) = lock(&self.awaiting_running).remove(runtime_id) {
            self.ready[kind_index(kind)].observe(since.elapsed());
        }
    }

    /// A runtime is gone (stopped, paused): it no longer awaits `running`.
    pub fn forget(&self, runtime_id: &str) {
        lock(&self.awaiting_running).remove(runtime_id);
    }

    pub fn action(&self, action: Action) {
        let index = Action::ALL.iter().position(|a| *a == action).unwrap_or(0);
        self.actions[index].fetch_add(1, Ordering::Relaxed);
    }

    /// An HTTP request answered `code` after `took`; `endpoint` is one of `ENDPOINTS`.
    pub fn request(&self, endpoint: &'static str, code: u16, took: Duration) {
        self.requests.add((endpoint, "", code));
        if let Some(index) = ENDPOINTS.iter().position(|e| *e == endpoint) {
            self.request_durations[index].observe(took);
        }
    }

    pub fn watch_restarted(&self, resource: &'static str) {
        self.watch_restarts.add((resource, "", 0));
    }

    /// Everything, in the Prometheus text format; `runtimes` counts runtimes per `STATUSES`,
    /// `pools` the Ready warm pods of each pool.
    pub fn render(&self, runtimes: [usize; 4], pools: &[(&str, usize)], kube: &KubeCalls) -> String {
        let mut out = String::new();
        header(&mut out, "openhands_runtimes", "gauge", "Runtimes by status.");
        for (status, count) in STATUSES.iter().zip(runtimes) {
            let _ = writeln!(out, "openhands_runtimes{{status=\"{status}\"}} {count}");
        }
        let name = "openhands_warm_pool_ready";
        header(&mut out, name, "gauge", "Ready warm pods, by pool.");
        for (pool, ready) in pools {
            let _ = writeln!(out, "{name}{{pool=\"{pool}\"}} {ready}");
        }
        let name = "openhands_runtime_starts_total";
        header(
            &mut out,
            name,
            "counter",
            "Runtimes started or resumed, by how they got their pod.",
        );
        for (kind, count) in StartKind::ALL.iter().zip(&self.starts) {
            let _ = writeln!(
                out,
                "{name}{{kind=\"{}\"}} {}",
                kind.label(),
                count.load(Ordering::Relaxed)
            );
        }
        let name = "openhands_runtime_ready_seconds";
        header(
            &mut out,
            name,
            "histogram",
            "Time from /start or /resume to the runtime first read running.",
        );
        for (kind, histogram) in StartKind::ALL.iter().zip(&self.ready) {
            histogram.write(&mut out, name, &format!("kind=\"{}\",", kind.label()));
        }
        let name = "openhands_runtime_lifecycle_actions_total";
        header(
            &mut out,
            name,
            "counter",
            "What the service did to runtimes on its own.",
        );
        for (action, count) in Action::ALL.iter().zip(&self.actions) {
            let _ = writeln!(
                out,
                "{name}{{action=\"{}\"}} {}",
                action.label(),
                count.load(Ordering::Relaxed)
            );
        }
        let name = "openhands_http_requests_total";
        header(
            &mut out,
            name,
            "counter",
            "HTTP requests answered, by route and status code.",
        );
        for ((endpoint, _, code), count) in self.requests.sorted() {
            let _ = writeln!(out, "{name}{{endpoint=\"{endpoint}\",code=\"{code}\"}} {count}");
        }
        let name = "openhands_http_request_duration_seconds";
        header(&mut out, name, "histogram", "Time to answer an HTTP request, by route.");
        for (endpoint, histogram) in ENDPOINTS.iter().zip(&self.request_durations) {
            histogram.write(&mut out, name, &format!("endpoint=\"{endpoint}\","));
        }
        let name = "openhands_kube_requests_total";
        header(
            &mut out,
            name,
            "counter",
            "Kubernetes API requests, by verb, resource and status code (0: no answer).",
        );
        for ((verb, resource, code), count) in kube.0.sorted() {
            let _ = writeln!(
                out,
                "{name}{{verb=\"{verb}\",resource=\"{resource}\",code=\"{code}\"}} {count}"
            );
        }
        let name = "openhands_kube_watch_restarts_total";
        header(
            &mut out,
            name,
            "counter",
            "Watches started again after an error or an expired version.",
        );
        for resource in ["pods", "secrets"] {
            let count = self.watch_restarts.get((resource, "", 0));
            let _ = writeln!(out, "{name}{{resource=\"{resource}\"}} {count}");
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let histogram = Histogram::new(&[("0.1", 100_000), ("1", 1_000_000)]);
        for millis in [50, 500, 5000] {
            histogram.observe(Duration::from_millis(millis));
        }
        let mut out = String::new();
        histogram.write(&mut out, "h", "kind=\"cold\",");
        let expected = "h_bucket{kind=\"cold\",le=\"0.1\"} 1\nh_bucket{kind=\"cold\",le=\"1\"} 2\n\
                        h_bucket{kind=\"cold\",le=\"+Inf\"} 3\nh_sum{kind=\"cold\"} 5.550000\nh_count{kind=\"cold\"} 3\n";
        assert_eq!(out, expected);
    }

    #[test]
    fn time_to_running_is_observed_once_per_start() {
        let metrics = Metrics::default();
        metrics.started("r1", StartKind::Cold);
        metrics.running("r1");
        metrics.running("r1");
        metrics.running("never-started");
        let text = metrics.render([0, 1, 0, 0], &[("v1", 2)], &KubeCalls::default());
        assert!(text.contains("openhands_warm_pool_ready{pool=\"v1\"} 2\n"), "{text}");
        assert!(
            text.contains("openhands_runtime_starts_total{kind=\"cold\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("openhands_runtime_ready_seconds_count{kind=\"cold\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("openhands_runtimes{status=\"running\"} 1\n"), "{text}");
    }
}
