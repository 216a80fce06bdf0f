//! Runtimes through their lives (API.md §4, §6): every status row, pause and resume, errors and
//! recovery, stop, rollback, and logs that keep secrets.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::schema::example;
use support::{FakeKube, Fault, FaultRule, PodFate, Service};

const WAIT: Duration = Duration::from_secs(20);

fn start(service: &Service, session: &str, image: &str) -> Value {
    let answer = service.post("/start", &json!({"session_id": session, "image": image}));
    assert_eq!(answer.code, 201, "{:#}", answer.body);
    answer.body
}

fn pod_name(runtime: &Value) -> String {
    format!("runtime-{}", runtime["runtime_id"].as_str().unwrap())
}

fn detail(runtime: &Value) -> &str {
    runtime["status_detail"]
        .as_str()
        .unwrap_or_else(|| panic!("no status_detail in {runtime:#}"))
}

#[test]
fn image_pull_failures_read_starting_then_error_after_the_grace() {
    let fake = FakeKube::start();
    fake.kubelet_rule("no-such-image", PodFate::ImagePullBackOff);
    let service = Service::start(&fake, &[("IMAGE_PULL_GRACE", "2s")]);
    start(&service, "pull", "registry.test/no-such-image:1");
    let pulling = service.wait_for_session("pull", "pulling", |r| {
        r["status_detail"].as_str().is_some_and(|d| d.contains("ImagePull"))
    });
    assert_eq!(
        (pulling["status"].as_str(), pulling["pod_status"].as_str()),
        (Some("starting"), Some("pending"))
    );
    let failed = service.wait_for_status("pull", "error");
    assert_eq!(failed["pod_status"], "failed");
    let detail = detail(&failed);
    assert!(
        detail.starts_with("ImagePullBackOff: ") || detail.starts_with("ErrImagePull: "),
        "{detail}"
    );
    assert!(detail.contains("registry.test/no-such-image:1"), "{detail}");
}

#[test]
fn crash_loops_unschedulable_and_failed_pods_say_why() {
    let fake = FakeKube::start();
    fake.kubelet_rule("crashing", PodFate::crash_loop());
    fake.kubelet_rule("too-big", PodFate::unschedulable());
    fake.kubelet_rule(
        "oom",
        PodFate::Fails {
            reason: "OOMKilled".into(),
            exit_code: 137,
        },
    );
    fake.kubelet_rule("slow", PodFate::NeverReady);
    let service = Service::start(&fake, &[]);
    for (session, image) in [
        ("crash", "crashing:1"),
        ("big", "too-big:1"),
        ("oom", "oom:1"),
        ("slow", "slow:1"),
    ] {
        start(&service, session, image);
    }

    let crashing = service.wait_for_session("crash", "crash-looping", |r| r["pod_status"] == "crashloopbackoff");
    assert_eq!(crashing["status"], "error");
    assert!(
        detail(&crashing).starts_with("CrashLoopBackOff: back-off "),
        "{crashing:#}"
    );
    assert!(
        detail(&crashing).ends_with("last termination: Error (exit code 1)"),
        "{crashing:#}"
    );
    assert!(crashing["restart_count"].as_u64() >= Some(1));
    assert_eq!(crashing["restart_reasons"], json!(["Error"]));

    let unschedulable = service.wait_for_session("big", "unschedulable", |r| !r["status_detail"].is_null());
    assert_eq!(
        (unschedulable["status"].as_str(), unschedulable["pod_status"].as_str()),
        (Some("starting"), Some("pending"))
    );
    assert_eq!(
        detail(&unschedulable),
        "Unschedulable: 0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
    );

    let oom = service.wait_for_status("oom", "error");
    assert_eq!(
        (oom["pod_status"].as_str(), detail(&oom)),
        (Some("failed"), "OOMKilled (exit code 137)")
    );

    let slow = service.wait_for_session("slow", "running but not ready", |r| r["pod_status"] == "running");
    assert_eq!(slow["status"], "starting", "running means the agent server answers");
    assert_eq!(
        detail(&slow),
        "ContainersNotReady: containers with unready status: [agent]"
    );
}

#[test]
fn the_shared_pod_status_examples_map_to_the_status_table() {
    let fake = FakeKube::start();
    let service = Service::start(&fake, &[]);
    let runtime = start(&service, "scripted", "registry.example.test/team/app:1.4.2");
    let pod = pod_name(&runtime);
    assert!(fake.wait_for_object("pods", &pod, WAIT, |_| true).is_some());
    let rows = [
        ("podstatus-running-not-ready.json", "starting", "running"),
        ("podstatus-crashloopbackoff.json", "error", "crashloopbackoff"),
        ("podstatus-pending-imagepullbackoff.json", "starting", "pending"),
    ];
    for (file, status, pod_status) in rows {
        assert!(fake.set_pod_status(&pod, example(file)));
        let seen = service.wait_for_session("scripted", pod_status, |r| r["pod_status"] == pod_status);
        assert_eq!(seen["status"], status, "{file}");
        assert!(!seen["status_detail"].is_null(), "{file}: {seen:#}");
    }
    let crash = example("podstatus-crashloopbackoff.json");
    fake.set_pod_status(&pod, crash);
    let seen = service.wait_for_session("scripted", "crash", |r| r["pod_status"] == "crashloopbackoff");
    assert_eq!(
        (seen["restart_count"].as_u64(), &seen["restart_reasons"]),
        (Some(5), &json!(["Error"]))
    );

    fake.set_pod_status(&pod, json!({"phase": "Unknown", "reason": "NodeLost", "message": "Node node-1 which was running pod is unresponsive"}));
    let lost = service.wait_for_session("scripted", "unknown", |r| r["pod_status"] == "unknown");
    assert_eq!(lost["status"], "error");
    assert_eq!(
        detail(&lost),
        "NodeLost: Node node-1 which was running pod is unresponsive"
    );

    fake.set_pod_status(
        &pod,
        json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}),
    );
    let ready = service.wait_for_status("scripted", "running");
    assert_eq!(
        (ready["pod_status"].as_str(), &ready["status_detail"]),
        (Some("ready"), &Value::Null)
    );
}

#[test]
fn pause_and_resume_keep_the_original_spec_and_key() {
    let fake = FakeKube::start();
    let service = Service::start(&fake, &[]);
    let body = json!({"session_id": "keep", "image": "agent:2", "command": ["/usr/local/bin/openhands-agent-server", "--port", "60000"],
        "working_dir": "/workspace", "environment": {"LLM_MODEL": "m", "LLM_API_KEY": "sk-1"}, "resource_factor": 2, "run_as_user": 10001});
    let started = service.post("/start", &body).body;
    let name = pod_name(&started);
    let original = fake.wait_for_object("pods", &name, WAIT, |_| true).unwrap();
    service.wait_for_status("keep", "running");

    let paused = service.post("/pause", &json!({"runtime_id": started["runtime_id"]}));
    assert_eq!(paused.code, 200);
    assert_eq!(
        (paused.body["status"].as_str(), paused.body["pod_status"].as_str()),
        (Some("paused"), Some("not found"))
    );
    assert_eq!(paused.body["status_detail"], Value::Null);
    assert!(
        fake.wait_for(WAIT, |c| c.object("pods", &name).is_none()),
        "the pod goes"
    );
    for kept in ["secrets", "services", "ingresses"] {
        assert!(fake.object(kept, &name).is_some(), "{kept} is kept");
    }
    let again = service.post("/pause", &json!({"runtime_id": started["runtime_id"]}));
    assert_eq!((again.code, again.body["status"].as_str()), (200, Some("paused")));
    assert_eq!(service.get("/sessions/keep").body["status"], "paused");

    // The new pod cannot get ready before the answer, however slow the machine.
    fake.freeze_kubelet(true);
    let resumed = service.post("/resume", &json!({"runtime_id": started["runtime_id"]}));
    assert_eq!(resumed.code, 200);
    assert_eq!(resumed.body["status"], "starting");
    fake.freeze_kubelet(false);
    assert_eq!(
        resumed.body["session_api_key"], started["session_api_key"],
        "clients keep the key they have"
    );
    let running = service.wait_for_status("keep", "running");
    assert_eq!(running["session_api_key"], started["session_api_key"]);
    let recreated = fake.object("pods", &name).unwrap();
    assert_ne!(recreated["metadata"]["uid"], original["metadata"]["uid"]);
    assert_eq!(
        recreated["spec"]["containers"], original["spec"]["containers"],
        "the same spec, from the original request"
    );
    assert_eq!(
        recreated["spec"]["securityContext"],
        original["spec"]["securityContext"]
    );

    let no_op = service.post("/resume", &json!({"runtime_id": started["runtime_id"]}));
    assert_eq!((no_op.code, no_op.body["status"].as_str()), (200, Some("running")));
    assert_eq!(fake.count("POST", "/pods"), 2);

    // The SDK and the older runtime call /start again: a paused runtime is resumed by it.
    service.post("/pause", &json!({"runtime_id": started["runtime_id"]}));
    assert!(fake.wait_for(WAIT, |c| c.object("pods", &name).is_none()));
    fake.freeze_kubelet(true);
    let restarted = service.post("/start", &body);
    fake.freeze_kubelet(false);
    assert_eq!(restarted.code, 200);
    assert_eq!(
        (restarted.body["runtime_id"].clone(), restarted.body["status"].as_str()),
        (started["runtime_id"].clone(), Some("starting"))
    );
    service.wait_for_status("keep", "running");
    assert_eq!(
        fake.object("pods", &name).unwrap()["spec"]["containers"],
        original["spec"]["containers"]
    );
}

#[test]
fn resume_right_after_pause_waits_for_the_old_pod() {
    let fake = FakeKube::start();
    let service = Service::start(&fake, &[]);
    let started = start(&service, "quick", "agent:1");
    let name = pod_name(&started);
    service.wait_for_status("quick", "running");
    fake.hold_terminating(true);
    service.post("/pause", &json!({"runtime_id": started["runtime_id"]}));
    let terminating = fake.object("pods", &name).unwrap();
    assert!(terminating["metadata"]["deletionTimestamp"].is_string());

    let resumed = service.post("/resume", &json!({"runtime_id": started["runtime_id"]}));
    assert_eq!(resumed.code, 200, "it answers at once");
    assert_eq!(
        (resumed.body["status"].as_str(), resumed.body["pod_status"].as_str()),
        (Some("starting"), Some("not found"))
    );
    assert_eq!(service.get("/sessions/quick").body["status"], "starting");
    fake.hold_terminating(false);
    let running = service.wait_for_status("quick", "running");
    assert_eq!(running["session_api_key"], started["session_api_key"]);
    let pod = fake.object("pods", &name).unwrap();
    assert_ne!(pod["metadata"]["uid"], terminating["metadata"]["uid"]);
}

#[test]
fn a_runtime_in_error_gets_a_new_pod_when_a_client_asks() {
    let fake = FakeKube::start();
    fake.kubelet_rule("flaky", PodFate::crash_loop());
    let service = Service::start(&fake, &[]);
    let started = start(&service, "retry", "flaky:1");
    let name = pod_name(&started);
    service.wait_for_status("retry", "error");
    let broken = fake.object("pods", &name).unwrap();
    // Not replaced on its own: only when a client asks.
    assert_eq!(fake.count("POST", "/pods"), 1);

    fake.clear_kubelet_rules();
    // A crash loop goes between error and starting: the /start must come while it reads error.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    'frozen_in_error: loop {
        fake.freeze_kubelet(true);
        // Frozen, the pod no longer changes: once the service reads error, it stays so.
        let settled = std::time::Instant::now() + Duration::from_millis(300);
        while std::time::Instant::now() < settled {
            if service.get("/sessions/retry").body["status"] == "error" {
                break 'frozen_in_error;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        fake.freeze_kubelet(false);
        assert!(
            std::time::Instant::now() < deadline,
            "the crash loop never read error again"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let again = service.post("/start", &json!({"session_id": "retry", "image": "flaky:1"}));
    fake.freeze_kubelet(false);
    assert_eq!(again.code, 200);
    assert_eq!(again.body["runtime_id"], started["runtime_id"]);
    assert_eq!(again.body["status"], "starting");
    let running = service.wait_for_status("retry", "running");
    assert_eq!(running["session_api_key"], started["session_api_key"]);
    assert_ne!(
        fake.object("pods", &name).unwrap()["metadata"]["uid"],
        broken["metadata"]["uid"]
    );

    fake.kubelet_rule(
        "flaky",
        PodFate::Fails {
            reason: "Error".into(),
            exit_code: 2,
        },
    );
    let uid = fake.object("pods", &name).unwrap()["metadata"]["uid"].clone();
    fake.set_pod_fate(
        &name,
        PodFate::Fails {
            reason: "Error".into(),
            exit_code: 2,
        },
    );
    service.wait_for_status("retry", "error");
    fake.clear_kubelet_rules();
    fake.freeze_kubelet(true);
    let resumed = service.post("/resume", &json!({"runtime_id": started["runtime_id"]}));
    fake.freeze_kubelet(false);
    assert_eq!(
        (resumed.code, resumed.body["status"].as_str()),
        (200, Some("starting")),
        "{:#}",
        resumed.body
    );
    service.wait_for_status("retry", "running");
    assert_ne!(fake.object("pods", &name).unwrap()["metadata"]["uid"], uid);
}

#[test]
fn a_pod_deleted_behind_our_back_comes_back() {
    let fake = FakeKube::start();
    let service = Service::start(&fake, &[]);
    let started = start(&service, "evicted", "agent:1");
    let name = pod_name(&started);
    service.wait_for_status("evicted", "running");
    let before = fake.object("pods", &name).unwrap();
    assert!(fake.delete_by_operator("pods", &name));
    let starting = service.wait_for_session("evicted", "noticed", |r| r["status"] == "starting");
    assert!(
        ["not found", "pending"].contains(&starting["pod_status"].as_str().unwrap()),
        "{starting:#}"
    );
    service.wait_for_status("evicted", "running");
    let after = fake.object("pods", &name).unwrap();
    assert_ne!(after["metadata"]["uid"], before["metadata"]["uid"]);
    assert_eq!(after["spec"]["containers"], before["spec"]["containers"]);
}

#[test]
fn stop_removes_everything() {
    let fake = FakeKube::start();
    let service = Service::start(&fake, &[]);
    let started = start(&service, "gone", "agent:1");
    start(&service, "stays", "agent:1");
    let stopped = service.post("/stop", &json!({"runtime_id": started["runtime_id"]}));
    assert_eq!(stopped.code, 200);
    assert_eq!(
        (stopped.body["status"].as_str(), stopped.body["pod_status"].as_str()),
        (Some("stopped"), Some("not found"))
    );
    assert_eq!(stopped.body["session_api_key"], started["session_api_key"]);
    let name = pod_name(&started);
    assert!(fake.wait_for(WAIT, |c| {
        ["secrets", "pods", "services", "ingresses"]
            .iter()
            .all(|r| c.object(r, &name).is_none())
    }));
    assert_eq!(fake.objects("secrets").len(), 1, "the other runtime is untouched");
    assert_eq!(
        service
            .post("/stop", &json!({"runtime_id": started["runtime_id"]}))
            .code,
        404
    );
    assert_eq!(service.get("/sessions/gone").code, 404);
    let again = service.post("/start", &json!({"session_id": "gone"}));
    assert_eq!(again.code, 201, "a stopped session can start afresh");
    assert_ne!(again.body["runtime_id"], started["runtime_id"]);
}

#[test]
fn a_failed_start_leaves_nothing_behind() {
    let fake = FakeKube::start();
    let service = Service::start(&fake, &[]);
    // As many failures as the client makes attempts.
    fake.add_fault(FaultRule::new(Fault::InternalError).on("POST", "/ingresses").times(4));
    let failed = service.post("/start", &json!({"session_id": "doomed"}));
    assert_eq!(failed.code, 503, "{:#}", failed.body);
    assert_eq!(failed.body["error"], "kubernetes_unavailable");
    assert!(
        failed.body["detail"]
            .as_str()
            .unwrap()
            .contains("etcdserver: request timed out")
    );
    assert!(fake.wait_for(WAIT, |c| {
        ["secrets", "pods", "services", "ingresses"]
            .iter()
            .all(|r| c.objects(r).is_empty())
    }));
    assert_eq!(service.get("/sessions/doomed").code, 404);
    assert_eq!(fake.count("POST", "/ingresses"), 4);

    fake.deny("create", "ingresses");
    let forbidden = service.post("/start", &json!({"session_id": "doomed"}));
    assert_eq!(
        (forbidden.code, forbidden.body["error"].as_str()),
        (502, Some("kubernetes_error"))
    );
    assert!(
        forbidden.body["detail"]
            .as_str()
            .unwrap()
            .contains("cannot create resource \"ingresses\"")
    );
    assert!(fake.wait_for(WAIT, |c| c.objects("secrets").is_empty()
        && c.objects("pods").is_empty()));
}

#[test]
fn logs_never_show_a_session_key_or_an_environment_value() {
    let fake = FakeKube::start();
    let service = Service::start(&fake, &[("APP_SERVER_URL", "http://openhands-app.openhands.svc:3000")]);
    let secret_value = "sk-live-0123456789-very-secret";
    let body = json!({"session_id": "private", "environment": {"LLM_API_KEY": secret_value, "OH_RUNTIME_ID": "spoofed-value", "OH_WEBHOOKS_0_BASE_URL": "https://public.example"}});
    let started = service.post("/start", &body).body;
    let running = service.wait_for_status("private", "running");
    service.post("/pause", &json!({"runtime_id": started["runtime_id"]}));
    service.post("/resume", &json!({"runtime_id": started["runtime_id"]}));
    service.post("/stop", &json!({"runtime_id": started["runtime_id"]}));
    let log = service.log();
    for secret in [
        secret_value,
        running["session_api_key"].as_str().unwrap(),
        "spoofed-value",
        "https://public.example",
    ] {
        assert!(!log.contains(secret), "the log shows {secret:?}:\n{log}");
    }
    assert!(
        log.contains("OH_RUNTIME_ID") && log.contains("OH_WEBHOOKS_0_BASE_URL"),
        "the ignored names are warned about:\n{log}"
    );
}
