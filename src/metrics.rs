//! What an operator watches: counters and histograms kept as the service works, served at
//! `GET /metrics` in the Prometheus text format (version 0.0.4). Every label value comes from a
//! fixed set (routes, verbs, resources, status codes), never a session or runtime id, so the
//! series stay few however many sandboxes there are.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::events::Action;

/// Bounds of the request-duration buckets, in seconds.
const REQUEST_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Bounds of the time-to-running buckets, in seconds: a warm start takes well under one, a cold
/// one the agent's boot and more.
const READY_BUCKETS: &[f64] = &[0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0];

/// How a runtime got its pod: a new one (`cold`) or a booted one from a pool (`warm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartKind {
    Cold,
}

impl StartKind {
    const ALL: [StartKind; 1] = [StartKind::Cold];

    fn label(self) -> &'static str {
        match self {
            StartKind::Cold => "cold",
        }
    }
}

/// The `status` label of `openhands_runtimes`, in the order they are written.
pub const STATUSES: [&str; 4] = ["starting", "running", "paused", "error"];

/// A Prometheus histogram with fixed bucket bounds.
struct Histogram {
    bounds: &'static [f64],
    /// Observations at or below each bound (not cumulative; summed when written).
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        if let Some(bucket) = self.bounds.iter().position(|bound| seconds <= *bound) {
            self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The `_bucket`, `_sum` and `_count` lines; `labels` is `name="value",` or empty.
    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let labels = labels.trim_end_matches(',');
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// The Kubernetes API calls a client made, by verb, resource and status code (0: no answer).
#[derive(Default)]
pub struct KubeCalls(Mutex<BTreeMap<(&'static str, &'static str, u16), u64>>);

impl KubeCalls {
    pub fn count(&self, verb: &'static str, resource: &'static str, code: u16) {
        *lock(&self.0).entry((verb, resource, code)).or_default() += 1;
    }
}

/// The service's metrics but those of its Kubernetes client (`KubeCalls`).
pub struct Metrics {
    starts: Vec<AtomicU64>,
    ready: Vec<Histogram>,
    actions: Vec<AtomicU64>,
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    request_durations: Vec<Histogram>,
    watch_restarts: Mutex<BTreeMap<&'static str, u64>>,
    /// Runtimes started or resumed that have not read `running` yet, and since when.
    awaiting_running: Mutex<HashMap<String, (StartKind, Instant)>>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            starts: StartKind::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            ready: StartKind::ALL.iter().map(|_| Histogram::new(READY_BUCKETS)).collect(),
            actions: Action::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            requests: Mutex::new(BTreeMap::new()),
            request_durations: ENDPOINTS.iter().map(|_| Histogram::new(REQUEST_BUCKETS)).collect(),
            watch_restarts: Mutex::new(BTreeMap::new()),
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
        self.starts[kind_index(kind)].fetch_add(1, Ordering::Relaxed);
        lock(&self.awaiting_running).insert(runtime_id.to_string(), (kind, Instant::now()));
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
        *lock(&self.requests).entry((endpoint, code)).or_default() += 1;
        if let Some(index) = ENDPOINTS.iter().position(|e| *e == endpoint) {
            self.request_durations[index].observe(took);
        }
    }

    pub fn watch_restarted(&self, resource: &'static str) {
        *lock(&self.watch_restarts).entry(resource).or_default() += 1;
    }

    /// Everything, in the Prometheus text format; `runtimes` counts runtimes per `STATUSES`.
    pub fn render(&self, runtimes: [usize; 4], kube: &KubeCalls) -> String {
        let mut out = String::new();
        header(&mut out, "openhands_runtimes", "gauge", "Runtimes by status.");
        for (status, count) in STATUSES.iter().zip(runtimes) {
            let _ = writeln!(out, "openhands_runtimes{{status=\"{status}\"}} {count}");
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
        for ((endpoint, code), count) in lock(&self.requests).iter() {
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
        for ((verb, resource, code), count) in lock(&kube.0).iter() {
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
            let count = lock(&self.watch_restarts).get(resource).copied().unwrap_or(0);
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
        let histogram = Histogram::new(&[0.1, 1.0]);
        for millis in [50, 500, 5000] {
            histogram.observe(Duration::from_millis(millis));
        }
        let mut out = String::new();
        histogram.write(&mut out, "h", "kind=\"cold\",");
        let expected = "h_bucket{kind=\"cold\",le=\"0.1\"} 1\nh_bucket{kind=\"cold\",le=\"1\"} 2\n\
                        h_bucket{kind=\"cold\",le=\"+Inf\"} 3\nh_sum{kind=\"cold\"} 5.55\nh_count{kind=\"cold\"} 3\n";
        assert_eq!(out, expected);
    }

    #[test]
    fn time_to_running_is_observed_once_per_start() {
        let metrics = Metrics::default();
        metrics.started("r1", StartKind::Cold);
        metrics.running("r1");
        metrics.running("r1");
        metrics.running("never-started");
        let text = metrics.render([0, 1, 0, 0], &KubeCalls::default());
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
