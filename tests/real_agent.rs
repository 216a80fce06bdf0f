//! Sandboxes whose pods run the real OpenHands agent server (both versions the clients deploy),
//! reached as a client reaches them: the returned URL, through an ingress controller's
//! stand-in, with the returned session key.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::agent_bed::{AgentBed, VERSIONS};
use support::ingress::IngressStandIn;
use support::{FakeKube, Service};

/// A cold boot of the agent server takes 5-20 s here; several may boot at once.
const BOOT: Duration = Duration::from_secs(180);

struct Bed {
    fake: FakeKube,
    ingress: IngressStandIn,
    service: Service,
    http: ureq::Agent,
}

fn bed(versions: &[&str]) -> Option<Bed> {
    bed_with(versions, &[])
}

fn bed_with(versions: &[&str], settings: &[(&str, &str)]) -> Option<Bed> {
    let agents = AgentBed::for_test(versions)?;
    let fake = FakeKube::builder().run_agents(agents).start();
    let ingress = fake.start_ingress(0);
    let mut settings = settings.to_vec();
    settings.push(("URL_SCHEME", "http"));
    let service = Service::start(&fake, &settings);
    let http = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    Some(Bed {
        fake,
        ingress,
        service,
        http,
    })
}

impl Bed {
    fn wait_running(&self, session_id: &str) -> Value {
        let deadline = Instant::now() + BOOT;
        loop {
            let answer = self.service.get(&format!("/sessions/{session_id}"));
            if answer.code == 200 && answer.body["status"] == "running" {
                return answer.body;
            }
            assert!(
                Instant::now() < deadline && answer.body["status"] != "error",
                "{session_id} never ran: {:#}\n{}",
                answer.body,
                self.container_log(session_id)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn container_log(&self, session_id: &str) -> String {
        let answer = self.service.get(&format!("/sessions/{session_id}"));
        let pod = format!("runtime-{}", answer.body["runtime_id"].as_str().unwrap_or_default());
        self.fake
            .node()
            .map(|node| node.container_log(&pod))
            .unwrap_or_default()
    }

    /// `POST {url}/api/bash/execute_bash_command` as a client would, through the ingress.
    fn run_command(&self, runtime: &Value, key: &str, command: &str) -> (u16, Value) {
        let url = runtime["url"].as_str().expect("a url");
        let host = url.trim_start_matches("http://");
        let mut answer = self
            .http
            .post(format!("{}/api/bash/execute_bash_command", self.ingress.url()))
            .header("Host", host)
            .header("X-Session-API-Key", key)
            .header("Content-Type", "application/json")
            .send(json!({"command": command}).to_string())
            .expect("the ingress answers");
        let code = answer.status().as_u16();
        let text = answer.body_mut().read_to_string().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (code, body)
    }

    /// Runs `command` in the sandbox with its session key; its standard output.
    fn output_of(&self, runtime: &Value, command: &str) -> String {
        let key = runtime["session_api_key"].as_str().expect("a session key");
        let (code, body) = self.run_command(runtime, key, command);
        assert_eq!(code, 200, "{command}: {body:#}");
        assert_eq!(body["exit_code"], 0, "{command}: {body:#}");
        body["stdout"].as_str().unwrap_or_default().to_string()
    }
}

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
