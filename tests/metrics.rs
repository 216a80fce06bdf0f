//! `GET /metrics`: open like the probes, in the Prometheus text format, with counters that
//! move as the service works and labels from fixed sets (never a runtime or session id).

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use support::{FakeKube, Service};

/// One scrape: every sample by `name{labels}`, after checking the text's grammar.
fn scrape(service: &Service) -> BTreeMap<String, f64> {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut answer = agent.get(format!("{}/metrics", service.url)).call().expect("an answer");
    assert_eq!(answer.status(), 200);
    let content_type = answer
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = answer.body_mut().read_to_string().unwrap();
    parse(&text)
}

/// The Prometheus text format (0.0.4): `# HELP` and `# TYPE` before a family's samples, one
/// TYPE per family, each sample `name{label="value",...} number` of a declared family.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut families: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(
                families.insert(name.to_string(), kind.to_string()).is_none(),
                "two TYPEs: {line}"
            );
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {line}"));
        let name = series.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|f| families.get(*f).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        assert!(families.contains_key(family), "a sample before its TYPE: {line}");
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                let inner = labels
                    .strip_prefix('{')
                    .and_then(|l| l.strip_suffix('}'))
                    .expect("{labels}");
                for pair in inner.split(',') {
                    let (key, quoted) = pair.split_once('=').unwrap_or_else(|| panic!("label: {line}"));
                    assert!(key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line}");
                    assert!(
                        quoted.len() >= 2 && quoted.starts_with('"') && quoted.ends_with('"'),
                        "{line}"
                    );
                }
            }
        }
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "a sample twice: {line}"
        );
    }
    samples
}

fn value(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no {series} in {samples:#?}"))
}

#[test]
fn metrics_parse_move_with_the_work_and_name_no_runtime() {
    let fake = FakeKube::start();
    let service = Service::start(&fake, &[("MAX_RUNNING_RUNTIMES", "2")]);
    let before = scrape(&service);
    assert_eq!(value(&before, "openhands_runtime_starts_total{kind=\"cold\"}"), 0.0);

    let first = service.post("/start", &json!({"session_id": "metrics-one"})).body;
    let second = service.post("/start", &json!({"session_id": "metrics-two"})).body;
    assert_eq!(
        service.post("/start", &json!({"session_id": "metrics-three"})).code,
        429
    );
    service.wait_for_status("metrics-one", "running");
    service.wait_for_status("metrics-two", "running");
    assert_eq!(
        service
            .post("/pause", &json!({"runtime_id": second["runtime_id"]}))
            .code,
        200
    );
    assert_eq!(service.get("/runtime/no-such-runtime").code, 404);
    // A pod deleted behind the service's back is recreated: a lifecycle action.
    assert!(fake.delete_by_operator("pods", &format!("runtime-{}", first["runtime_id"].as_str().unwrap())));
    assert!(fake.wait_for(Duration::from_secs(20), |view| !view.objects("events").is_empty()));
    service.wait_for_status("metrics-one", "running");
    fake.break_watches();

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let after = loop {
        let after = scrape(&service);
        if after
            .get("openhands_kube_watch_restarts_total{resource=\"pods\"}")
            .is_some_and(|n| *n >= 1.0)
        {
            break after;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no watch restart counted: {after:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(value(&after, "openhands_runtimes{status=\"running\"}"), 1.0);
    assert_eq!(value(&after, "openhands_runtimes{status=\"paused\"}"), 1.0);
    assert_eq!(value(&after, "openhands_runtimes{status=\"starting\"}"), 0.0);
    assert_eq!(value(&after, "openhands_runtime_starts_total{kind=\"cold\"}"), 2.0);
    assert_eq!(
        value(&after, "openhands_runtime_ready_seconds_count{kind=\"cold\"}"),
        2.0
    );
    assert!(value(&after, "openhands_runtime_ready_seconds_sum{kind=\"cold\"}") > 0.0);
    assert_eq!(
        value(
            &after,
            "openhands_runtime_lifecycle_actions_total{action=\"pod_recreated\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "openhands_runtime_lifecycle_actions_total{action=\"idle_pause\"}"
        ),
        0.0
    );
    assert_eq!(
        value(
            &after,
            "openhands_http_requests_total{endpoint=\"/start\",code=\"201\"}"
        ),
        2.0
    );
    assert_eq!(
        value(
            &after,
            "openhands_http_requests_total{endpoint=\"/start\",code=\"429\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "openhands_http_requests_total{endpoint=\"/runtime/{id}\",code=\"404\"}"
        ),
        1.0
    );
    assert!(
        value(
            &after,
            "openhands_http_requests_total{endpoint=\"/sessions/{id}\",code=\"200\"}"
        ) >= 2.0
    );
    assert_eq!(
        value(
            &after,
            "openhands_http_request_duration_seconds_count{endpoint=\"/start\"}"
        ),
        3.0
    );
    assert!(
        value(
            &after,
            "openhands_kube_requests_total{verb=\"create\",resource=\"pods\",code=\"201\"}"
        ) >= 3.0
    );
    assert!(
        value(
            &after,
            "openhands_kube_requests_total{verb=\"create\",resource=\"events\",code=\"201\"}"
        ) >= 1.0
    );
    assert!(
        value(
            &after,
            "openhands_kube_requests_total{verb=\"patch\",resource=\"secrets\",code=\"200\"}"
        ) >= 1.0
    );

    let text = after.keys().cloned().collect::<Vec<_>>().join("\n");
    for id in [&first["runtime_id"], &second["runtime_id"], &json!("metrics-one")] {
        assert!(!text.contains(id.as_str().unwrap()), "an id in a label: {id}");
    }
}
