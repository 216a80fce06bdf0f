//! Sandboxes whose pods run the real OpenHands agent server (both versions the clients deploy),
//! reached as a client reaches them: the returned URL, through an ingress controller's
//! stand-in, with the returned session key.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::agent_bed::{AgentBed, VERSIONS};
use support::sandboxes::{BOOT, bed, bed_with};

/// A cold start with each agent version: the returned key opens the agent's API through the
/// ingress and no other key does, the request's environment reaches commands, and the key
/// keeps working across pause and resume.
fn cold_start_pause_and_resume(version: &str) {
    let Some(bed) = bed(&[version]) else { return };
    let session = format!("real-{}", version.replace('.', "-"));
    let started = bed.service.post(
        "/start",
        &json!({"session_id": session, "image": AgentBed::image(version),
                "environment": {"GREETING": "hello from the request", "LOG_JSON": "false"}}),
    );
    assert_eq!(started.code, 201, "{:#}", started.body);
    let runtime = bed.wait_running(&session);
    assert_eq!(
        runtime["url"],
        format!("http://{}.sandbox.test", session.to_lowercase())
    );

    assert_eq!(
        bed.output_of(&runtime, "echo \"$GREETING\""),
        "hello from the request\n"
    );
    let (code, body) = bed.run_command(&runtime, "not-the-key", "true");
    assert_eq!(code, 401, "a wrong key: {body:#}");

    // The agent is where the service logged it: the pod's address and AGENT_SERVER_PORT.
    let pod = bed
        .fake
        .object("pods", &format!("runtime-{}", runtime["runtime_id"].as_str().unwrap()))
        .unwrap();
    let agent_at = format!("http://{}:60000", pod["status"]["podIP"].as_str().unwrap());
    assert!(bed.service.log().contains(&agent_at), "no log of {agent_at}");

    let id = runtime["runtime_id"].as_str().unwrap();
    assert_eq!(bed.service.post("/pause", &json!({"runtime_id": id})).code, 200);
    assert!(bed.fake.wait_for(BOOT, |view| view.objects("pods").is_empty()));
    assert_eq!(
        bed.fake.node().unwrap().running_containers(),
        0,
        "the agent was stopped"
    );
    assert_eq!(bed.service.post("/resume", &json!({"runtime_id": id})).code, 200);
    let resumed = bed.wait_running(&session);
    assert_eq!(resumed["session_api_key"], runtime["session_api_key"]);
    assert_eq!(
        bed.output_of(&resumed, "echo \"$GREETING\""),
        "hello from the request\n"
    );
}

#[test]
fn the_sdk_agent_server_cold_start_pause_and_resume() {
    cold_start_pause_and_resume(VERSIONS[0]);
}

#[test]
fn the_app_server_agent_server_cold_start_pause_and_resume() {
    cold_start_pause_and_resume(VERSIONS[1]);
}

/// An agent killed behind the service's back (its process, then its pod) comes back and
/// answers the same key again.
#[test]
fn a_killed_agent_comes_back() {
    let Some(bed) = bed(&[VERSIONS[0]]) else { return };
    let started = bed.service.post(
        "/start",
        &json!({"session_id": "phoenix", "image": AgentBed::image(VERSIONS[0])}),
    );
    assert_eq!(started.code, 201, "{:#}", started.body);
    let runtime = bed.wait_running("phoenix");
    let pod = format!("runtime-{}", runtime["runtime_id"].as_str().unwrap());
    let node = bed.fake.node().unwrap();

    // The OOM killer's way: the container restarts in place and the restart is reported.
    assert!(node.signal_container(&pod, libc::SIGKILL));
    let restarted = bed
        .service
        .wait_for_session("phoenix", "restarted", |r| r["restart_count"] == 1);
    assert_eq!(restarted["restart_reasons"], json!(["Error"]), "{restarted:#}");
    let runtime = bed.wait_running("phoenix");
    assert_eq!(bed.output_of(&runtime, "echo again"), "again\n");

    // An operator's `kubectl delete pod`: the service makes a new pod with the same key.
    let before = bed.fake.object("pods", &pod).unwrap()["metadata"]["uid"].clone();
    assert!(bed.fake.delete_by_operator("pods", &pod));
    assert!(bed.fake.wait_for(BOOT, |view| {
        view.object("pods", &pod)
            .is_some_and(|p| p["metadata"]["uid"] != before)
    }));
    let replaced = bed.wait_running("phoenix");
    assert_eq!(replaced["session_api_key"], runtime["session_api_key"]);
    assert_eq!(bed.output_of(&replaced, "echo back"), "back\n");
}

/// Idle pausing from the agent's own clock: a sandbox left alone is paused after its limit and
/// resumes with its key; one kept busy (a command every few seconds) stays running past it.
#[test]
fn an_idle_sandbox_is_paused_and_a_busy_one_is_not() {
    let limit = Duration::from_secs(20);
    let Some(bed) = bed_with(
        &[VERSIONS[0]],
        &[("IDLE_PAUSE_AFTER", "20s"), ("IDLE_CHECK_INTERVAL", "1s")],
    ) else {
        return;
    };
    for session in ["idle", "busy"] {
        let started = bed.service.post(
            "/start",
            &json!({"session_id": session, "image": AgentBed::image(VERSIONS[0])}),
        );
        assert_eq!(started.code, 201, "{:#}", started.body);
    }
    let idle = bed.wait_running("idle");
    let busy = bed.wait_running("busy");
    let busy_since = Instant::now();
    // The agent was told the limit, and reports it.
    assert_eq!(bed.output_of(&busy, "echo $OH_RUNTIME_IDLE_TIMEOUT_SECONDS"), "20\n");

    let deadline = Instant::now() + BOOT;
    loop {
        assert_eq!(bed.output_of(&busy, "true"), "");
        if bed.service.get("/sessions/idle").body["status"] == "paused" {
            break;
        }
        assert!(Instant::now() < deadline, "the idle sandbox was never paused");
        std::thread::sleep(Duration::from_secs(3));
    }
    // Keep the busy one busy past its limit, counted from its last resume.
    while busy_since.elapsed() < limit + Duration::from_secs(5) {
        assert_eq!(bed.output_of(&busy, "true"), "");
        std::thread::sleep(Duration::from_secs(3));
    }
    assert_eq!(bed.service.get("/sessions/busy").body["status"], "running");

    let listed = bed.service.get("/list").body;
    let sessions: Vec<&str> = listed["runtimes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(sessions, ["busy"]);
    let all = bed.service.get("/list?include_paused=true").body;
    assert_eq!(all["runtimes"].as_array().unwrap().len(), 2);
    assert!(bed.fake.objects("events").iter().any(|e| e["reason"] == "IdlePaused"
        && e["involvedObject"]["name"] == format!("runtime-{}", idle["runtime_id"].as_str().unwrap()).as_str()));

    let id = idle["runtime_id"].as_str().unwrap();
    assert_eq!(bed.service.post("/resume", &json!({"runtime_id": id})).code, 200);
    let resumed = bed.wait_running("idle");
    assert_eq!(resumed["session_api_key"], idle["session_api_key"]);
    assert_eq!(bed.output_of(&resumed, "echo back"), "back\n");
}

/// An agent started with its own `OH_RUNTIME_IDLE_TIMEOUT_SECONDS` (the request's) is held to
/// it, not to the service's default.
#[test]
fn an_agent_with_its_own_idle_limit_is_held_to_it() {
    let Some(bed) = bed_with(
        &[VERSIONS[1]],
        &[("IDLE_PAUSE_AFTER", "1h"), ("IDLE_CHECK_INTERVAL", "1s")],
    ) else {
        return;
    };
    let started = bed.service.post(
        "/start",
        &json!({"session_id": "own-limit", "image": AgentBed::image(VERSIONS[1]),
                "environment": {"OH_RUNTIME_IDLE_TIMEOUT_SECONDS": "10"}}),
    );
    assert_eq!(started.code, 201, "{:#}", started.body);
    let running = bed.wait_running("own-limit");
    let became_running = Instant::now();
    let paused = bed
        .service
        .wait_for_session("own-limit", "paused", |r| r["status"] == "paused");
    assert!(
        became_running.elapsed() < Duration::from_secs(20),
        "paused by the agent's limit of 10 s, not the hour"
    );
    assert_eq!(paused["session_api_key"], running["session_api_key"]);
}
