//! What the service does on its own to keep idle and broken sandboxes from holding the cluster
//! (API.md §6): stuck runtimes paused with their reason kept, long-paused ones stopped, a cap
//! on runtimes not paused, each action recorded as an Event on the runtime's anchor.
//! (Idle pausing needs the real agent's idle clock: tests/real_agent.rs.)

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use support::{FakeKube, PodFate, Service};

const WAIT: Duration = Duration::from_secs(20);

fn start(service: &Service, session: &str, image: &str) -> Value {
    let answer = service.post("/start", &json!({"session_id": session, "image": image}));
    assert_eq!(answer.code, 201, "{:#}", answer.body);
    answer.body
}

/// The Events recorded on `runtime`'s anchor, by reason.
fn events_of(fake: &FakeKube, runtime: &Value) -> Vec<Value> {
    let anchor = format!("runtime-{}", runtime["runtime_id"].as_str().unwrap());
    fake.objects("events")
        .into_iter()
        .filter(|event| event["involvedObject"]["name"] == anchor.as_str())
        .collect()
}

#[test]
fn a_runtime_stuck_starting_is_paused_with_its_reason_kept_and_resuming_tries_again() {
    let fake = FakeKube::start();
    fake.kubelet_rule("unschedulable", PodFate::unschedulable());
    let service = Service::start(&fake, &[("STUCK_PAUSE_AFTER", "3s"), ("IDLE_CHECK_INTERVAL", "1s")]);
    let runtime = start(&service, "stuck", "registry.test/unschedulable:1");
    let id = runtime["runtime_id"].as_str().unwrap();
    let pending = service.wait_for_session("stuck", "unschedulable", |r| {
        r["status_detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("Unschedulable"))
    });
    assert_eq!(pending["status"], "starting");

    let paused = service.wait_for_status("stuck", "paused");
    assert_eq!(
        paused["status_detail"], pending["status_detail"],
        "the reason it was stuck"
    );
    assert!(
        fake.wait_for(WAIT, |view| view.objects("pods").is_empty()),
        "its pod is gone"
    );
    assert!(fake.wait_for(WAIT, |view| !view.objects("events").is_empty()));
    let events = events_of(&fake, &runtime);
    assert_eq!(events.len(), 1, "{events:#?}");
    let event = &events[0];
    assert_eq!(
        (event["reason"].as_str(), event["type"].as_str()),
        (Some("StuckPaused"), Some("Warning"))
    );
    assert_eq!(event["involvedObject"]["kind"], "Secret");
    assert_eq!(
        event["involvedObject"]["uid"],
        fake.object("secrets", &format!("runtime-{id}")).unwrap()["metadata"]["uid"]
    );
    assert!(
        event["message"].as_str().unwrap().contains("Unschedulable"),
        "{event:#}"
    );
    // The reason lives on the anchor: a restarted service shows it too.
    service.restart();
    assert_eq!(
        service.get(&format!("/runtime/{id}")).body["status_detail"],
        pending["status_detail"]
    );

    // Resuming tries again (and it is stuck again: the image is still unschedulable).
    fake.clear_kubelet_rules();
    let resumed = service.post("/resume", &json!({"runtime_id": id}));
    assert_eq!(resumed.code, 200, "{:#}", resumed.body);
    let running = service.wait_for_status("stuck", "running");
    assert_eq!(running["status_detail"], Value::Null);
}

#[test]
fn a_runtime_paused_too_long_is_stopped_on_time_across_a_restart() {
    let fake = FakeKube::start();
    let service = Service::start(&fake, &[("PAUSED_STOP_AFTER", "4s"), ("IDLE_CHECK_INTERVAL", "1s")]);
    let runtime = start(&service, "dormant", "registry.test/agent:1");
    let id = runtime["runtime_id"].as_str().unwrap();
    service.wait_for_status("dormant", "running");
    let kept = start(&service, "kept", "registry.test/agent:1");
    assert_eq!(service.post("/pause", &json!({"runtime_id": id})).code, 200);
    let paused_at = std::time::Instant::now();
    // The clock is on the anchor: a restart in between neither resets nor forgets it.
    service.kill();
    std::thread::sleep(Duration::from_secs(2));
    service.restart();
    assert!(
        fake.wait_for(WAIT, |view| view.object("secrets", &format!("runtime-{id}")).is_none()),
        "the dormant runtime was stopped"
    );
    let stopped_after = paused_at.elapsed();
    assert!(
        stopped_after >= Duration::from_secs(4) && stopped_after < Duration::from_secs(4 + 3),
        "stopped {stopped_after:?} after the pause, for a limit of 4 s and checks every second"
    );
    assert_eq!(service.get("/sessions/dormant").code, 404);
    assert_eq!(service.get("/sessions/kept").body["status"], "running", "{kept:#}");
    // Recorded once the stop is done.
    assert!(fake.wait_for(WAIT, |view| {
        view.objects("events").iter().any(|e| e["reason"] == "DormantStopped")
    }));
    let events = events_of(&fake, &runtime);
    assert_eq!(
        events.iter().map(|e| e["reason"].clone()).collect::<Vec<_>>(),
        [json!("DormantStopped")]
    );
}

#[test]
fn a_cap_on_runtimes_not_paused_refuses_starts_and_resumes_and_creates_nothing() {
    let fake = FakeKube::start();
    let service = Service::start(&fake, &[("MAX_RUNNING_RUNTIMES", "2")]);
    let first = start(&service, "one", "registry.test/agent:1");
    start(&service, "two", "registry.test/agent:1");
    let before = fake.object_names();

    let refused = service.post("/start", &json!({"session_id": "three"}));
    assert_eq!(refused.code, 429, "{:#}", refused.body);
    assert_eq!(refused.body["error"], "at_capacity");
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap()
            .contains("MAX_RUNNING_RUNTIMES")
    );
    assert_eq!(fake.object_names(), before, "nothing was created");
    // A running runtime's own /start is no new runtime.
    assert_eq!(service.post("/start", &json!({"session_id": "one"})).code, 200);

    // A pause makes room; resuming the paused one is then refused until room is made again.
    let id = first["runtime_id"].as_str().unwrap();
    assert_eq!(service.post("/pause", &json!({"runtime_id": id})).code, 200);
    assert_eq!(service.post("/start", &json!({"session_id": "three"})).code, 201);
    let resume = service.post("/resume", &json!({"runtime_id": id}));
    assert_eq!((resume.code, resume.body["error"].as_str()), (429, Some("at_capacity")));
    assert_eq!(service.get(&format!("/runtime/{id}")).body["status"], "paused");
}

#[test]
fn concurrent_starts_cannot_overshoot_the_cap() {
    let fake = FakeKube::start();
    // Slow creates, so that the starts overlap.
    fake.set_latency(Duration::from_millis(30));
    let service = Service::start(&fake, &[("MAX_RUNNING_RUNTIMES", "5")]);
    let codes: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let service = &service;
                scope.spawn(move || service.post("/start", &json!({"session_id": format!("c{i}")})).code)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(codes.iter().filter(|c| **c == 201).count(), 5, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 429).count(), 15, "{codes:?}");
    let anchors: BTreeSet<String> = fake
        .objects("secrets")
        .iter()
        .filter_map(|s| s["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    assert_eq!(anchors.len(), 5, "{anchors:?}");
    assert_eq!(service.get("/list").body["runtimes"].as_array().unwrap().len(), 5);
}

/// Agents on 127.0.0.1 that answer `/server_info` with `body` (or, for `None`, 500), as the
/// pods' agent server.
fn agent_stand_in(body: Option<&'static str>) -> (std::sync::Arc<tiny_http::Server>, u16) {
    let server = std::sync::Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let port = server.server_addr().to_ip().unwrap().port();
    let serving = server.clone();
    std::thread::spawn(move || {
        for request in serving.incoming_requests() {
            let response = match body {
                Some(body) => tiny_http::Response::from_string(body),
                None => tiny_http::Response::from_string("boom").with_status_code(500),
            };
            let _ = request.respond(response);
        }
    });
    (server, port)
}

/// A cluster whose pods' agents are `agent_stand_in(body)`, and the service pausing runtimes
/// idle for `idle_pause_after`, checking every second.
fn idle_checked(
    body: Option<&'static str>,
    idle_pause_after: &str,
) -> (std::sync::Arc<tiny_http::Server>, FakeKube, Service) {
    let (agents, port) = agent_stand_in(body);
    let fake = FakeKube::builder().pod_ip("127.0.0.1").start();
    let service = Service::start(
        &fake,
        &[
            ("AGENT_SERVER_PORT", &port.to_string()),
            ("IDLE_PAUSE_AFTER", idle_pause_after),
            ("IDLE_CHECK_INTERVAL", "1s"),
        ],
    );
    (agents, fake, service)
}

#[test]
fn a_stale_idle_clock_does_not_pause_a_runtime_started_less_than_a_limit_ago() {
    // The agent claims to have been idle for a day: a pod that booted long before its claim.
    let day_idle = r#"{"idle_time": 86400, "runtime_idle_timeout_seconds": null}"#;
    let (agents, fake, service) = idle_checked(Some(day_idle), "4s");
    let started = std::time::Instant::now();
    start(&service, "stale", "registry.test/agent:1");
    service.wait_for_status("stale", "running");
    let paused = service.wait_for_status("stale", "paused");
    let after = started.elapsed();
    assert!(
        after >= Duration::from_secs(4),
        "paused {after:?} after its start, before one limit"
    );
    assert_eq!(paused["status_detail"], Value::Null, "an idle pause keeps no reason");
    assert!(fake.wait_for(WAIT, |view| {
        view.objects("events").iter().any(|e| e["reason"] == "IdlePaused")
    }));
    agents.unblock();
}

#[test]
fn an_agent_that_does_not_answer_is_never_paused_for_idleness() {
    let (agents, fake, service) = idle_checked(None, "1s");
    start(&service, "mute", "registry.test/agent:1");
    service.wait_for_status("mute", "running");
    // Several rounds ask it and get 500.
    let asked = std::time::Instant::now();
    while asked.elapsed() < Duration::from_secs(4) {
        assert_eq!(service.get("/sessions/mute").body["status"], "running");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(service.log().contains("no idle clock"), "the rounds asked the agent");
    assert!(fake.objects("events").is_empty());
    agents.unblock();
}
