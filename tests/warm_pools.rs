//! Warm pools with the real agent server: the real clients' start requests claim pre-booted
//! sandboxes that are indistinguishable from cold ones (key, environment, pause and resume),
//! other requests start cold, the pools refill, and claims survive failures and crashes.

mod support;

use serde_json::{Value, json};
use support::agent_bed::{AgentBed, VERSIONS};
use support::sandboxes::{BOOT, Bed, bed_with};
use support::{Fault, FaultRule};

/// The V1 app server's start request (its remote sandbox service and the default spec), with
/// a per-session credential besides.
fn v1_request(version: &str) -> Value {
    json!({
        "image": AgentBed::image(version),
        "command": ["/usr/local/bin/openhands-agent-server", "--port", "60000"],
        "working_dir": "/workspace/project",
        "environment": {
            "OPENVSCODE_SERVER_ROOT": "/openhands/.openvscode-server", "LOG_JSON": "true",
            "OH_ENABLE_VNC": "0", "OH_CONVERSATIONS_PATH": "/workspace/conversations",
            "OH_BASH_EVENTS_DIR": "/workspace/bash_events", "OH_VSCODE_PORT": "60001",
            "OH_WEBHOOKS_0_BASE_URL": "http://app.example/api/v1/webhooks",
            "OH_ALLOW_CORS_ORIGINS_0": "http://app.example", "WORKER_1": "12000", "WORKER_2": "12001",
        },
        "resource_factor": 1,
        "run_as_user": 10001, "run_as_group": 10001, "fs_group": 10001,
    })
}

/// The SDK's remote workspace start request.
fn sdk_request(version: &str) -> Value {
    json!({
        "image": AgentBed::image(version),
        "command": "/usr/local/bin/openhands-agent-server --port 60000",
        "working_dir": "/",
        "environment": {},
        "resource_factor": 1,
        "runtime_class": "sysbox-runc",
        "image_pull_policy": "IfNotPresent",
    })
}

fn with_session(request: &Value, session: &str, extra_env: Value) -> Value {
    let mut body = request.clone();
    body["session_id"] = json!(session);
    for (name, value) in extra_env.as_object().into_iter().flatten() {
        body["environment"][name] = value.clone();
    }
    body
}

fn pools(pools: &[(&str, usize, &Value)]) -> String {
    let pools: Vec<Value> = pools
        .iter()
        .map(|(name, size, request)| json!({"name": name, "size": size, "request": request}))
        .collect();
    Value::Array(pools).to_string()
}

fn wait_pool(bed: &Bed, pool: &str, ready: usize) {
    bed.service.wait_warm_pool(pool, ready, BOOT);
}

/// A bed whose pool `name` keeps one warm pod booted from `request`, Ready.
fn bed_with_pool(version: &str, name: &str, request: &Value) -> Option<Bed> {
    let pools = pools(&[(name, 1, request)]);
    let bed = bed_with(
        &[version],
        &[("WARM_POOLS", &pools), ("RUNTIME_CLASS_MAP", r#"{"sysbox-runc": ""}"#)],
    )?;
    wait_pool(&bed, name, 1);
    Some(bed)
}

/// The ids of the warm (unclaimed) runtimes of `pool`, from their anchors.
fn warm_ids(bed: &Bed, pool: &str) -> Vec<String> {
    let mut ids: Vec<String> = bed
        .fake
        .objects("secrets")
        .iter()
        .filter(|s| s["metadata"]["labels"]["openhands.dev/warm-pool"] == pool)
        .filter_map(|s| s["metadata"]["labels"]["runtime-id"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

/// A request of a real client claims a warm pod: `running` in the answer itself, the key works
/// and no other, the request's environment reaches commands, and pause and resume keep the key.
fn a_real_client_claims_a_warm_sandbox(version: &str, client: &str) {
    let request = if client == "v1" {
        v1_request(version)
    } else {
        sdk_request(version)
    };
    let Some(bed) = bed_with_pool(version, client, &request) else {
        return;
    };
    let warm = warm_ids(&bed, client);
    let session = format!("{client}-{}", version.replace('.', "-"));
    let body = with_session(&request, &session, json!({"GITHUB_TOKEN": "for this session only"}));
    let started = bed.service.post("/start", &body);
    assert_eq!(started.code, 201, "{:#}", started.body);
    let runtime = started.body;
    assert_eq!(
        (runtime["status"].as_str(), runtime["pod_status"].as_str()),
        (Some("running"), Some("ready"))
    );
    assert_eq!(runtime["runtime_id"], warm[0], "the warm runtime was claimed");
    let metrics = bed.service.text("/metrics");
    assert!(
        metrics.contains("openhands_runtime_starts_total{kind=\"warm\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("openhands_runtime_ready_seconds_count{kind=\"warm\"} 1\n"),
        "{metrics}"
    );

    assert_eq!(
        bed.output_of(&runtime, "echo \"$GITHUB_TOKEN\""),
        "for this session only\n"
    );
    if client == "v1" {
        assert_eq!(
            bed.output_of(&runtime, "echo \"$LOG_JSON $OH_CONVERSATIONS_PATH\""),
            "true /workspace/conversations\n"
        );
    }
    let (code, body) = bed.run_command(&runtime, "not-the-key", "true");
    assert_eq!(code, 401, "a wrong key: {body:#}");
    // VSCode's token is the key the pod booted with, which is the key handed out. (1.58.2 gives
    // the URL only while openvscode-server runs, which the test bed does not have.)
    let key = runtime["session_api_key"].as_str().unwrap();
    let (code, vscode) = bed.get_from_agent(&runtime, key, "/api/vscode/url");
    assert_eq!(code, 200, "{vscode:#}");
    if version == VERSIONS[1] {
        let url = vscode["url"].as_str().unwrap_or_default();
        assert!(url.contains(&format!("tkn={key}")), "{vscode:#}");
    }
    // The anchor now is the session's runtime's; the pool mints another.
    let anchor = bed.fake.object("secrets", &format!("runtime-{}", warm[0])).unwrap();
    assert!(anchor["metadata"]["labels"].get("openhands.dev/warm-pool").is_none());
    assert_eq!(anchor["metadata"]["annotations"]["openhands.dev/session-id"], session);
    wait_pool(&bed, client, 1);
    assert_ne!(warm_ids(&bed, client), warm, "a new warm runtime");
    assert_eq!(
        bed.service.get("/list").body["runtimes"].as_array().unwrap().len(),
        1,
        "warm runtimes are no one's"
    );

    let id = runtime["runtime_id"].as_str().unwrap();
    assert_eq!(bed.service.post("/pause", &json!({"runtime_id": id})).code, 200);
    assert_eq!(bed.service.post("/resume", &json!({"runtime_id": id})).code, 200);
    let resumed = bed.wait_running(&session);
    assert_eq!(resumed["session_api_key"], runtime["session_api_key"]);
    assert_eq!(
        bed.output_of(&resumed, "echo \"$GITHUB_TOKEN\""),
        "for this session only\n"
    );
}

#[test]
fn the_v1_app_server_claims_a_warm_sandbox_of_agent_1_34() {
    a_real_client_claims_a_warm_sandbox(VERSIONS[1], "v1");
}

#[test]
fn the_sdk_claims_a_warm_sandbox_of_agent_1_58() {
    a_real_client_claims_a_warm_sandbox(VERSIONS[0], "sdk");
}

/// The agent of a claimed warm pod posts to the webhook URL of the request (delivered at
/// init, not at boot) with the session's key, as a cold one would.
#[test]
fn a_claimed_sandbox_posts_to_the_request_s_webhook() {
    let version = VERSIONS[1];
    let request = v1_request(version);
    let mut pool_request = request.clone();
    pool_request["environment"]
        .as_object_mut()
        .unwrap()
        .remove("OH_WEBHOOKS_0_BASE_URL");
    let Some(bed) = bed_with_pool(version, "v1", &pool_request) else {
        return;
    };
    // The app server: every address of 127.0.0.0/8 reaches it (the agent's loopback calls go
    // out from its pod's address).
    let app_server = tiny_http::Server::http("0.0.0.0:0").unwrap();
    let port = app_server.server_addr().to_ip().unwrap().port();
    let webhooks = format!("http://127.0.0.1:{port}/api/v1/webhooks");
    let body = with_session(&request, "hooked", json!({"OH_WEBHOOKS_0_BASE_URL": webhooks}));
    let runtime = bed.service.post("/start", &body).body;
    assert_eq!(runtime["status"], "running", "{runtime:#}");
    let key = runtime["session_api_key"].as_str().unwrap();
    let conversation = json!({
        "agent": {"kind": "Agent", "llm": {"model": "gpt-4o-mini", "api_key": "not-used", "usage_id": "agent"}, "tools": []},
        "workspace": {"working_dir": "/tmp"},
    });
    let (code, answer) = bed.post_to_agent(&runtime, key, "/api/conversations", &conversation);
    assert!(matches!(code, 200 | 201), "{code}: {answer:#}");
    let posted = app_server.recv_timeout(BOOT).unwrap().expect("a webhook call");
    assert_eq!(
        (posted.method().as_str(), posted.url()),
        ("POST", "/api/v1/webhooks/conversations")
    );
    let sent_key = posted
        .headers()
        .iter()
        .find(|h| h.field.equiv("X-Session-API-Key"))
        .map(|h| h.value.to_string());
    assert_eq!(sent_key.as_deref(), Some(key));
}

/// An exhausted pool starts the request cold, and so does a request that differs in what the
/// agent reads at boot; the pool refills; warm runtimes are never listed.
#[test]
fn exhausted_pools_and_requests_that_do_not_match_start_cold() {
    let version = VERSIONS[0];
    let request = sdk_request(version);
    let Some(bed) = bed_with_pool(version, "sdk", &request) else {
        return;
    };
    let warm = bed.service.post("/start", &with_session(&request, "first", json!({})));
    assert_eq!(warm.body["status"], "running", "{:#}", warm.body);
    // The pool's next pod is still booting: this one starts cold.
    let exhausted = bed.service.post("/start", &with_session(&request, "second", json!({})));
    assert_eq!(
        (exhausted.code, exhausted.body["status"].as_str()),
        (201, Some("starting"))
    );
    let other = bed
        .service
        .post("/start", &with_session(&request, "third", json!({"LOG_JSON": "false"})));
    assert_eq!((other.code, other.body["status"].as_str()), (201, Some("starting")));
    for (session, answer) in [("second", &exhausted), ("third", &other)] {
        let runtime = bed.wait_running(session);
        assert_eq!(runtime["session_api_key"], answer.body["session_api_key"]);
        assert_eq!(
            bed.output_of(&runtime, "echo \"$LOG_JSON\""),
            if session == "third" { "false\n" } else { "\n" }
        );
    }
    assert_eq!(bed.output_of(&warm.body, "echo warm"), "warm\n");
    wait_pool(&bed, "sdk", 1);
    let listed: Vec<String> = bed.service.get("/list").body["runtimes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["session_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(!warm_ids(&bed, "sdk").contains(&warm.body["runtime_id"].as_str().unwrap().to_string()));
}

/// A claimed pod whose container restarts boots dormant again: the runtime reads `starting`
/// until the service has initialised it anew, then the same key and environment work.
#[test]
fn a_claimed_pod_whose_container_restarts_is_initialised_again() {
    let version = VERSIONS[1];
    let request = v1_request(version);
    let Some(bed) = bed_with_pool(version, "v1", &request) else {
        return;
    };
    let body = with_session(&request, "phoenix", json!({"GITHUB_TOKEN": "mine"}));
    let runtime = bed.service.post("/start", &body).body;
    assert_eq!(runtime["status"], "running", "{runtime:#}");
    let pod = format!("runtime-{}", runtime["runtime_id"].as_str().unwrap());
    assert!(bed.fake.node().unwrap().signal_container(&pod, 9));
    let again = bed.wait_for("phoenix", "ran after a restart", |r| {
        r["restart_count"] == 1 && r["status"] == "running"
    });
    assert_eq!(again["session_api_key"], runtime["session_api_key"]);
    assert_eq!(bed.output_of(&again, "echo \"$GITHUB_TOKEN\""), "mine\n");
    assert!(
        bed.service.log().contains("its agent has its session"),
        "initialised by the service"
    );
}

/// A warm pod deleted behind the service's back is replaced by a new warm runtime.
#[test]
fn a_warm_pod_deleted_behind_the_service_s_back_is_replaced() {
    let version = VERSIONS[0];
    let request = sdk_request(version);
    let Some(bed) = bed_with_pool(version, "sdk", &request) else {
        return;
    };
    let before = warm_ids(&bed, "sdk");
    assert!(bed.fake.delete_by_operator("pods", &format!("runtime-{}", before[0])));
    assert!(bed.fake.wait_for(BOOT, |view| {
        view.object("secrets", &format!("runtime-{}", before[0])).is_none()
    }));
    wait_pool(&bed, "sdk", 1);
    let after = warm_ids(&bed, "sdk");
    assert_eq!(after.len(), 1);
    assert_ne!(after, before);
}

/// The service killed (-9) at each step of a claim, then restarted: the runtime ends running
/// with the key the warm runtime had and the request's environment, the warm runtime went to
/// that session only, and nothing is left without an anchor.
#[test]
fn a_claim_interrupted_by_a_crash_at_any_step_ends_running() {
    let version = VERSIONS[0];
    let request = sdk_request(version);
    let Some(bed) = bed_with_pool(version, "sdk", &request) else {
        return;
    };
    // After the anchor was written (the pod not yet labelled); after the agent was
    // initialised (no Service yet); halfway through the objects (no Ingress yet).
    for (step, (method, path)) in [("PATCH", "/pods/"), ("POST", "/services"), ("POST", "/ingresses")]
        .into_iter()
        .enumerate()
    {
        wait_pool(&bed, "sdk", 1);
        let warm = warm_ids(&bed, "sdk");
        let session = format!("crash-{step}");
        let calls_before = bed.fake.count(method, path);
        bed.fake.add_fault(FaultRule::new(Fault::Hang).on(method, path));
        let body = with_session(&request, &session, json!({"GITHUB_TOKEN": session}));
        let service_url = bed.service.url.clone();
        let client = std::thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
            let _ = agent
                .post(format!("{service_url}/start"))
                .header("X-API-Key", support::API_KEY)
                .send(body.to_string());
        });
        let deadline = std::time::Instant::now() + BOOT;
        while bed.fake.count(method, path) == calls_before {
            assert!(
                std::time::Instant::now() < deadline,
                "{session}: the claim never reached {method} {path}"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        bed.service.kill();
        bed.fake.release_hung();
        let _ = client.join();
        bed.service.restart();

        let runtime = bed.wait_running(&session);
        assert_eq!(runtime["runtime_id"], warm[0], "{session}: the claimed warm runtime");
        let anchor = bed.fake.object("secrets", &format!("runtime-{}", warm[0])).unwrap();
        let key = String::from_utf8(base64_decode(anchor["data"]["session_api_key"].as_str().unwrap())).unwrap();
        assert_eq!(runtime["session_api_key"], key, "{session}: the warm runtime's key");
        assert_eq!(
            bed.output_of(&runtime, "echo \"$GITHUB_TOKEN\""),
            format!("{session}\n")
        );
        let (code, _) = bed.run_command(&runtime, "not-the-key", "true");
        assert_eq!(code, 401);
        // Its objects are the session's now, and the pool has a new warm runtime.
        for kind in ["pods", "services", "ingresses"] {
            let object = bed
                .fake
                .object(kind, &format!("runtime-{}", warm[0]))
                .unwrap_or_else(|| panic!("{session}: no {kind}"));
            assert_eq!(
                object["metadata"]["annotations"]["openhands.dev/session-id"], session,
                "{kind}"
            );
            assert!(
                object["metadata"]["labels"].get("openhands.dev/warm-pool").is_none(),
                "{kind}"
            );
        }
        let policy = bed
            .fake
            .object("networkpolicies", &format!("runtime-{}", warm[0]))
            .unwrap();
        assert_eq!(
            policy["spec"]["policyTypes"],
            json!(["Ingress", "Egress"]),
            "the runtime's policy"
        );
        wait_pool(&bed, "sdk", 1);
        assert!(!warm_ids(&bed, "sdk").contains(&warm[0]));
    }
    // Each warm runtime went to one session, and every object has its anchor.
    let sessions: Vec<Value> = bed.service.get("/list").body["runtimes"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 3);
    let anchors: Vec<String> = bed
        .fake
        .objects("secrets")
        .iter()
        .filter_map(|s| s["metadata"]["labels"]["runtime-id"].as_str().map(str::to_string))
        .collect();
    for kind in ["pods", "services", "ingresses", "networkpolicies"] {
        for object in bed.fake.objects(kind) {
            let id = object["metadata"]["labels"]["runtime-id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert!(anchors.contains(&id), "{kind} of {id} has no anchor");
        }
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).expect("base64")
}
