//! Warm pools against the fake API server, the agents played by a stand-in: what a warm
//! runtime's objects are, that no client sees one, and when the service replaces one or gives
//! up a claim for a cold start.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::agent_stand_in::AgentStandIn;
use support::{FakeKube, PodFate, Service};

const WAIT: Duration = Duration::from_secs(20);
const POOL: &str = r#"[{"name": "any", "size": 2, "request": {"environment": {"LOG_JSON": "true"}}}]"#;

/// The fake with every pod at the stand-in's address, and the service with `settings`.
fn bed(agents: &AgentStandIn, settings: &[(&str, &str)]) -> (FakeKube, Service) {
    let fake = FakeKube::builder().pod_ip("127.0.0.1").start();
    let port = agents.port.to_string();
    let mut settings = settings.to_vec();
    settings.push(("AGENT_SERVER_PORT", &port));
    let service = Service::start(&fake, &settings);
    (fake, service)
}

fn warm(fake: &FakeKube, kind: &str) -> Vec<Value> {
    fake.objects(kind)
        .into_iter()
        .filter(|o| o["metadata"]["labels"]["openhands.dev/warm-pool"] == "any")
        .collect()
}

fn warm_ids(fake: &FakeKube) -> Vec<String> {
    let mut ids: Vec<String> = warm(fake, "secrets")
        .iter()
        .map(|s| s["metadata"]["labels"]["runtime-id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[test]
fn a_warm_runtime_boots_dormant_with_its_own_key_and_only_this_service_may_reach_it() {
    let agents = AgentStandIn::start();
    let (fake, service) = bed(&agents, &[("WARM_POOLS", POOL)]);
    service.wait_warm_pool("any", 2, WAIT);
    let pods = warm(&fake, "pods");
    assert_eq!(pods.len(), 2);
    // Before a warm pod counts as ready its agent built its routes (FastAPI builds them at the
    // first request otherwise): asked once for a path it has no route for, before any init.
    let asked: Vec<_> = agents
        .calls()
        .into_iter()
        .filter(|c| c.path != "/server_info")
        .collect();
    assert_eq!(asked.len(), 2, "{asked:?}");
    for call in &asked {
        assert_eq!(
            (call.method.as_str(), call.path.as_str()),
            ("GET", "/openhands-k8s-runtime/no-route")
        );
    }
    for pod in &pods {
        let name = pod["metadata"]["name"].as_str().unwrap();
        let anchor = fake.object("secrets", name).expect("its anchor");
        for object in [pod, &anchor] {
            assert!(object["metadata"]["labels"].get("session-id").is_none(), "no session");
            assert!(
                object["metadata"]["annotations"]
                    .get("openhands.dev/session-id")
                    .is_none()
            );
        }
        assert!(anchor["data"]["session_api_key"].is_string());
        assert!(
            anchor["metadata"]["annotations"]
                .get("openhands.dev/desired-state")
                .is_none()
        );
        let env = pod["spec"]["containers"][0]["env"].as_array().unwrap();
        let entry = |name: &str| {
            env.iter()
                .find(|e| e["name"] == name)
                .unwrap_or_else(|| panic!("no {name}"))
        };
        assert_eq!(entry("OH_DEFERRED_INIT")["value"], "true");
        let from_anchor = json!({"secretKeyRef": {"name": name, "key": "session_api_key"}});
        assert_eq!(entry("OH_SECRET_KEY")["valueFrom"], from_anchor, "never in plain text");
        assert_eq!(
            entry("OH_SESSION_API_KEYS_0")["valueFrom"],
            from_anchor,
            "the same key K"
        );
        assert_eq!(entry("LOG_JSON")["valueFrom"]["secretKeyRef"]["key"], "pool-env-0");
        let policy = fake.object("networkpolicies", name).expect("its policy");
        assert_eq!(
            policy["spec"]["ingress"],
            json!([{"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "openhands-k8s-runtime"}}}]}])
        );
        assert_eq!(
            policy["spec"]["podSelector"]["matchLabels"]["runtime-id"],
            pod["metadata"]["labels"]["runtime-id"]
        );
        assert!(fake.object("services", name).is_none() && fake.object("ingresses", name).is_none());
    }
    // No client sees a warm runtime.
    assert_eq!(service.get("/list").body["runtimes"], json!([]));
    let id = pods[0]["metadata"]["labels"]["runtime-id"].as_str().unwrap();
    assert_eq!(service.get(&format!("/runtime/{id}")).code, 404);
}

#[test]
fn warm_runtimes_count_against_no_cap() {
    let agents = AgentStandIn::start();
    let (_fake, service) = bed(&agents, &[("WARM_POOLS", POOL), ("MAX_RUNNING_RUNTIMES", "1")]);
    service.wait_warm_pool("any", 2, WAIT);
    let first = service.post(
        "/start",
        &json!({"session_id": "one", "environment": {"LOG_JSON": "true"}}),
    );
    assert_eq!((first.code, first.body["status"].as_str()), (201, Some("running")));
    let second = service.post(
        "/start",
        &json!({"session_id": "two", "environment": {"LOG_JSON": "true"}}),
    );
    assert_eq!((second.code, second.body["error"].as_str()), (429, Some("at_capacity")));
}

#[test]
fn a_failed_init_deletes_the_half_claimed_runtime_and_starts_cold() {
    let agents = AgentStandIn::answering_init(500);
    let (fake, service) = bed(&agents, &[("WARM_POOLS", POOL)]);
    service.wait_warm_pool("any", 2, WAIT);
    let before = warm_ids(&fake);
    let started = service.post(
        "/start",
        &json!({"session_id": "cold", "environment": {"LOG_JSON": "true"}}),
    );
    assert_eq!(
        (started.code, started.body["status"].as_str()),
        (201, Some("starting")),
        "{:#}",
        started.body
    );
    let id = started.body["runtime_id"].as_str().unwrap().to_string();
    assert!(!before.contains(&id), "a new runtime");
    assert!(
        agents
            .calls()
            .iter()
            .any(|c| c.method == "POST" && c.path == "/api/init"),
        "a claim was tried"
    );
    let gone = |view: &support::fake_kube::FakeView| {
        before
            .iter()
            .filter(|w| view.object("secrets", &format!("runtime-{w}")).is_none())
            .count()
    };
    assert!(
        fake.wait_for(WAIT, |view| gone(view) == 1),
        "the half-claimed runtime is deleted"
    );
    let runtime = service.wait_for_status("cold", "running");
    let pod = fake.object("pods", &format!("runtime-{id}")).unwrap();
    let env = pod["spec"]["containers"][0]["env"].as_array().unwrap().clone();
    assert!(env.iter().all(|e| e["name"] != "OH_DEFERRED_INIT"), "a cold pod");
    assert_eq!(runtime["session_api_key"], started.body["session_api_key"]);
}

#[test]
fn failed_and_aged_warm_pods_are_replaced() {
    let agents = AgentStandIn::start();
    let (fake, service) = bed(
        &agents,
        &[
            ("WARM_POOLS", r#"[{"name": "any", "size": 1, "request": {}}]"#),
            ("WARM_POD_MAX_AGE", "2s"),
        ],
    );
    service.wait_warm_pool("any", 1, WAIT);
    let first = warm_ids(&fake);
    service.wait_for_log("older than WARM_POD_MAX_AGE", WAIT);
    assert!(fake.wait_for(WAIT, |view| {
        view.object("secrets", &format!("runtime-{}", first[0])).is_none()
    }));
    service.wait_warm_pool("any", 1, WAIT);

    // A crash-looping warm pod is replaced by the next.
    fake.kubelet_rule("openhands.dev/warm-pool=any", PodFate::crash_loop());
    let replaced = service.wait_for_log("its pod failed", WAIT);
    assert!(
        replaced.contains("CrashLoopBackOff") || replaced.contains("Error"),
        "{replaced}"
    );
}

#[test]
fn a_pool_is_filled_one_pod_at_a_time() {
    // Booting agents take the nodes' cores: a pool short of 4 pods (at startup, or after a
    // burst of claims) must not start all 4 at once, but one every half second.
    let agents = AgentStandIn::start();
    let pool = r#"[{"name": "any", "size": 4, "request": {}}]"#;
    let (fake, service) = bed(&agents, &[("WARM_POOLS", pool)]);
    service.wait_warm_pool("any", 4, WAIT);
    let created: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/pods") && r.code == 201)
        .map(|r| r.at)
        .collect();
    assert_eq!(created.len(), 4, "one pod per warm runtime");
    for pair in created.windows(2) {
        let gap = pair[1] - pair[0];
        // The service waits 500 ms from the answer to a pod's creation to the next mint.
        assert!(gap >= Duration::from_millis(500), "pods created {gap:?} apart");
    }
}
