//! The HTTP contract of API.md §3 as clients see it: every endpoint, every error, the runtime
//! object's fields and types, and startup configuration errors.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::schema::example;
use support::service::{base_env, spawn};
use support::{API_KEY, BASE_DOMAIN, FakeKube, Service};

/// Every field of the runtime object, with its JSON type (API.md §3).
fn assert_runtime_object(runtime: &Value) {
    let fields = runtime.as_object().expect("an object");
    let expected = [
        "runtime_id",
        "session_id",
        "url",
        "session_api_key",
        "status",
        "pod_status",
        "status_detail",
        "work_hosts",
        "restart_count",
        "restart_reasons",
        "image",
        "created_at",
    ];
    let mut names: Vec<&str> = fields.keys().map(String::as_str).collect();
    names.sort_unstable();
    let mut wanted = expected.to_vec();
    wanted.sort_unstable();
    assert_eq!(names, wanted, "{runtime:#}");
    for string in [
        "runtime_id",
        "session_id",
        "url",
        "session_api_key",
        "status",
        "pod_status",
        "image",
        "created_at",
    ] {
        assert!(runtime[string].is_string(), "{string} in {runtime:#}");
    }
    assert!(runtime["status_detail"].is_string() || runtime["status_detail"].is_null());
    assert!(
        runtime["work_hosts"]
            .as_object()
            .is_some_and(|h| h.values().all(Value::is_u64))
    );
    assert!(runtime["restart_count"].is_u64());
    assert!(
        runtime["restart_reasons"]
            .as_array()
            .is_some_and(|r| r.iter().all(Value::is_string))
    );
    let id = runtime["runtime_id"].as_str().unwrap();
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{id}"
    );
    let key = runtime["session_api_key"].as_str().unwrap();
    assert!(
        key.len() == 64 && key.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{key}"
    );
}

fn assert_error(answer: &support::service::Answer, code: u16, error: &str) {
    assert_eq!(answer.code, code, "{:#}", answer.body);
    assert_eq!(answer.body["error"], error, "{:#}", answer.body);
    assert!(
        answer.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{:#}",
        answer.body
    );
    assert_eq!(answer.header("Content-Type"), Some("application/json"));
}

#[test]
fn start_answers_at_once_and_the_runtime_is_readable_right_away() {
    let fake = FakeKube::start();
    let service = Service::start(&fake, &[]);
    let started = service.post(
        "/start",
        &json!({"session_id": "Ab3dE5gH7jK9mN1pQ3sT5v", "image": "ghcr.io/openhands/agent-server:1.0"}),
    );
    assert_eq!(started.code, 201, "{:#}", started.body);
    assert_eq!(started.header("Content-Type"), Some("application/json"));
    let runtime = &started.body;
    assert_runtime_object(runtime);
    assert_eq!(runtime["status"], "starting");
    assert_eq!(runtime["pod_status"], "pending");
    assert_eq!(runtime["session_id"], "Ab3dE5gH7jK9mN1pQ3sT5v");
    assert_eq!(runtime["url"], format!("https://ab3de5gh7jk9mn1pq3st5v.{BASE_DOMAIN}"));
    assert_eq!(
        runtime["work_hosts"],
        json!({
            format!("https://work-1-ab3de5gh7jk9mn1pq3st5v.{BASE_DOMAIN}"): 12000,
            format!("https://work-2-ab3de5gh7jk9mn1pq3st5v.{BASE_DOMAIN}"): 12001,
        })
    );
    assert_eq!(runtime["restart_count"], 0);
    assert_eq!(runtime["restart_reasons"], json!([]));
    assert_eq!(runtime["image"], "ghcr.io/openhands/agent-server:1.0");

    // Clients poll at once and abort on anything but 200.
    let id = runtime["runtime_id"].as_str().unwrap();
    let by_session = service.get("/sessions/Ab3dE5gH7jK9mN1pQ3sT5v");
    assert_eq!(by_session.code, 200);
    assert_eq!(by_session.body["runtime_id"], id);
    let by_id = service.get(&format!("/runtime/{id}"));
    assert_eq!(by_id.code, 200);
    assert_eq!(by_id.body["session_api_key"], runtime["session_api_key"]);

    let running = service.wait_for_status("Ab3dE5gH7jK9mN1pQ3sT5v", "running");
    assert_runtime_object(&running);
    assert_eq!(running["pod_status"], "ready");
    assert_eq!(running["status_detail"], Value::Null);
    assert_eq!(running["created_at"], runtime["created_at"]);
    assert!(fake.schema_violations().is_empty());
}

#[test]
fn open_and_informational_endpoints() {
    let fake = FakeKube::start();
    let service = Service::start(&fake, &[("REGISTRY_PREFIX", "registry.internal:5000/openhands")]);
    for path in ["/health", "/liveness", "/readiness"] {
        let answer = service.call_with_key("GET", path, None, None);
        assert_eq!((answer.code, &answer.body), (200, &json!({"status": "ok"})), "{path}");
    }
    let prefix = service.get("/registry_prefix");
    assert_eq!(
        prefix.body,
        json!({"registry_prefix": "registry.internal:5000/openhands"})
    );
    assert_error(&service.get("/image_exists"), 400, "invalid_request");
}

#[test]
fn every_protected_endpoint_needs_the_api_key() {
    let fake = FakeKube::start();
    let service = Service::start(&fake, &[]);
    let endpoints = [
        ("POST", "/start"),
        ("POST", "/stop"),
        ("POST", "/pause"),
        ("POST", "/resume"),
        ("GET", "/list"),
        ("GET", "/runtime/x"),
        ("GET", "/sessions/x"),
        ("GET", "/sessions/batch?ids=x"),
        ("GET", "/registry_prefix"),
        ("GET", "/image_exists?image=x"),
    ];
    for (method, path) in endpoints {
        let body = (method == "POST").then(|| json!({"session_id": "x", "runtime_id": "x"}));
        for key in [None, Some("wrong"), Some("test-api-ke"), Some("test-api-key-and-more")] {
            let answer = service.call_with_key(method, path, body.as_ref(), key);
            assert_error(&answer, 401, "unauthorized");
        }
    }
    assert!(fake.objects("secrets").is_empty(), "nothing was created");
    assert_eq!(fake.count("POST", "/"), 0);
}

#[test]
fn errors_are_json_with_detail_and_code() {
    let fake = FakeKube::start();
    let service = Service::start(&fake, &[]);
    assert_error(&service.get("/nope"), 404, "not_found");
    let wrong_method = service.get("/start");
    assert_error(&wrong_method, 405, "method_not_allowed");
    assert_eq!(wrong_method.header("Allow"), Some("POST"));
    let wrong_method = service.post("/list", &json!({}));
    assert_eq!((wrong_method.code, wrong_method.header("Allow")), (405, Some("GET")));

    let malformed = service.raw("POST", "/start", Some(b"{\"session_id\": ".to_vec()), Some(API_KEY));
    assert_error(&malformed, 400, "invalid_request");
    assert!(malformed.body["detail"].as_str().unwrap().starts_with("body:"));
    let too_big = service.raw("POST", "/start", Some(vec![b' '; 1024 * 1024 + 1]), Some(API_KEY));
    assert_error(&too_big, 413, "payload_too_large");

    for (body, field) in [
        (json!({}), "session_id"),
        (json!({"session_id": 7}), "session_id"),
        (json!({"session_id": "has_underscore"}), "session_id"),
        (json!({"session_id": "x".repeat(57)}), "session_id"),
        (json!({"session_id": "ok", "environment": {"A": 1}}), "environment"),
        (json!({"session_id": "ok", "resource_factor": 0}), "resource_factor"),
        (json!({"session_id": "ok", "command": {"run": "x"}}), "command"),
        (
            json!({"session_id": "ok", "image_pull_policy": "Sometimes"}),
            "image_pull_policy",
        ),
    ] {
        let answer = service.post("/start", &body);
        assert_error(&answer, 400, "invalid_request");
        let detail = answer.body["detail"].as_str().unwrap();
        assert!(detail.starts_with(&format!("{field}:")), "{detail} should name {field}");
    }
    for endpoint in ["/stop", "/pause", "/resume"] {
        assert_error(
            &service.post(endpoint, &json!({"runtime_id": "0123456789abcdef0123456789abcdef"})),
            404,
            "runtime_not_found",
        );
        assert_error(&service.post(endpoint, &json!({})), 400, "invalid_request");
        assert_error(
            &service.post(endpoint, &json!({"runtime_id": 5})),
            400,
            "invalid_request",
        );
    }
    assert_error(
        &service.get("/runtime/0123456789abcdef0123456789abcdef"),
        404,
        "runtime_not_found",
    );
    assert_error(&service.get("/sessions/nobody"), 404, "session_not_found");
    let many: Vec<String> = (0..1001).map(|i| format!("s{i}")).collect();
    assert_error(
        &service.get(&format!("/sessions/batch?ids={}", many.join(","))),
        400,
        "invalid_request",
    );
    assert!(fake.objects("secrets").is_empty(), "bad requests create nothing");
}

#[test]
fn start_is_idempotent_per_session_and_case_twins_conflict() {
    let fake = FakeKube::start();
    let service = Service::start(&fake, &[]);
    let first = service.post("/start", &json!({"session_id": "Session-1"}));
    assert_eq!(first.code, 201);
    let again = service.post(
        "/start",
        &json!({"session_id": "Session-1", "image": "something-else:2"}),
    );
    assert_eq!(again.code, 200);
    assert_eq!(again.body["runtime_id"], first.body["runtime_id"]);
    assert_eq!(
        again.body["image"], first.body["image"],
        "the existing runtime is returned as it is"
    );
    let twin = service.post("/start", &json!({"session_id": "session-1"}));
    assert_error(&twin, 409, "conflict");
    assert_error(&service.get("/sessions/session-1"), 404, "session_not_found");
    assert_eq!(fake.objects("secrets").len(), 1);
    assert_eq!(fake.count("POST", "/secrets"), 1);
}

#[test]
fn concurrent_starts_of_one_session_create_one_runtime() {
    let fake = FakeKube::start();
    fake.set_latency(Duration::from_millis(30));
    let service = Service::start(&fake, &[]);
    let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                scope.spawn(|| {
                    let answer = service.post("/start", &json!({"session_id": "racing"}));
                    (answer.code, answer.body["runtime_id"].clone())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let created = answers.iter().filter(|(code, _)| *code == 201).count();
    assert_eq!(created, 1, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|(code, id)| (*code == 200 || *code == 201) && *id == answers[0].1),
        "{answers:?}"
    );
    assert_eq!(fake.objects("secrets").len(), 1);
    assert_eq!(fake.objects("pods").len(), 1);
}

/// The OpenHands clients keep a pool of keep-alive connections and may open several at once.
/// Each must be answered while the others stay open (tiny_http 0.12 could strand one of them
/// until another closed; see vendor/tiny_http/PATCHED.md).
#[test]
fn clients_that_connect_at_once_are_all_answered() {
    use std::io::{Read, Write};
    const CLIENTS: usize = 16;
    let fake = FakeKube::start();
    let service = Service::start(&fake, &[]);
    let address = service.url.trim_start_matches("http://").to_string();
    for round in 0..20 {
        let barrier = std::sync::Barrier::new(CLIENTS);
        let answers: Vec<(String, std::net::TcpStream)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..CLIENTS)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        let mut connection = std::net::TcpStream::connect(&address).unwrap();
                        connection.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                        connection
                            .write_all(b"GET /liveness HTTP/1.1\r\nHost: runtime\r\n\r\n")
                            .unwrap();
                        let mut start = [0; 12];
                        // An answer may arrive in pieces; none within the timeout reads as "".
                        let head = match connection.read_exact(&mut start) {
                            Ok(()) => String::from_utf8_lossy(&start).into_owned(),
                            Err(_) => String::new(),
                        };
                        // The connection stays open until every client has its answer.
                        (head, connection)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let unanswered = answers.iter().filter(|(head, _)| head != "HTTP/1.1 200").count();
        assert_eq!(
            unanswered, 0,
            "round {round}: {unanswered} of {CLIENTS} connections got no answer"
        );
    }
}

/// `/list` is encoded while it is sent, a few runtimes at a time: a list many times that size
/// arrives whole, in order, without the paused runtimes unless they are asked for. Each
/// runtime's JSON is kept for the next list, which must still show every change since.
#[test]
fn a_long_list_arrives_whole_and_in_order() {
    let fake = FakeKube::start();
    let service = Service::start(&fake, &[]);
    let ids: Vec<Value> = (0..100)
        .map(|i| service.post("/start", &json!({"session_id": format!("long-{i}")})).body["runtime_id"].clone())
        .collect();
    service.wait_for_status("long-99", "running");
    let first = service.get("/list").body;
    assert_eq!(first["runtimes"].as_array().map(Vec::len), Some(100));
    assert_eq!(first["runtimes"][0]["status"], "running");

    let paused: Vec<&Value> = ids.iter().step_by(7).collect();
    for id in &paused {
        assert_eq!(service.post("/pause", &json!({"runtime_id": id})).code, 200);
    }

    let all = service.get("/list?include_paused=true");
    assert_eq!(all.code, 200);
    let size = all.body.to_string().len();
    assert!(size > 2 * 16 * 1024, "several chunks: {size} bytes");
    let listed: Vec<&Value> = all.body["runtimes"].as_array().unwrap().iter().collect();
    assert_eq!(
        listed.iter().map(|r| &r["runtime_id"]).collect::<Vec<_>>(),
        ids.iter().collect::<Vec<_>>()
    );
    listed.iter().for_each(|r| assert_runtime_object(r));
    assert_eq!(listed[0]["status"], "paused", "listed as running before, paused since");

    let running: Vec<Value> = service.get("/list").body["runtimes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["runtime_id"].clone())
        .collect();
    let expected: Vec<Value> = ids.iter().filter(|id| !paused.contains(id)).cloned().collect();
    assert_eq!(running, expected);

    // A pod that changes after a list is listed as it is now.
    let crashing = format!("runtime-{}", ids[1].as_str().unwrap());
    assert!(fake.set_pod_status(&crashing, example("podstatus-crashloopbackoff.json")));
    service.wait_for_status("long-1", "error");
    let listed = service.get("/list").body;
    assert_eq!(listed["runtimes"][0]["runtime_id"], ids[1]);
    assert_eq!(
        (
            listed["runtimes"][0]["status"].as_str(),
            listed["runtimes"][0]["pod_status"].as_str()
        ),
        (Some("error"), Some("crashloopbackoff"))
    );
}

#[test]
fn list_and_batch_read_from_the_store() {
    let fake = FakeKube::start();
    let service = Service::start(&fake, &[]);
    let mut ids = Vec::new();
    for session in ["first", "second", "third"] {
        ids.push(service.post("/start", &json!({"session_id": session})).body["runtime_id"].clone());
    }
    let reads_before = fake.requests().len();
    let list = service.get("/list");
    assert_eq!(list.code, 200);
    let listed: Vec<Value> = list.body["runtimes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["runtime_id"].clone())
        .collect();
    assert_eq!(listed, ids, "sorted by creation time");
    for runtime in list.body["runtimes"].as_array().unwrap() {
        assert_runtime_object(runtime);
    }

    let paused = service.post("/pause", &json!({"runtime_id": ids[1]}));
    assert_eq!((paused.code, paused.body["status"].as_str()), (200, Some("paused")));
    let listed = service.get("/list").body["runtimes"].as_array().unwrap().len();
    assert_eq!(
        listed, 2,
        "the app server counts every listed runtime against a user's limit"
    );
    let all = service.get("/list?include_paused=true").body["runtimes"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(all, 3);

    let batch = service.get("/sessions/batch?ids=third&ids=nobody,first&ids=second");
    assert_eq!(batch.code, 200);
    let batch = batch.body.as_array().unwrap().clone();
    assert_eq!(batch.len(), 4);
    assert_eq!(batch[0]["runtime_id"], ids[2]);
    assert_eq!(batch[1], Value::Null);
    assert_eq!(batch[2]["runtime_id"], ids[0]);
    assert_eq!(batch[3]["status"], "paused");
    assert_eq!(service.get("/sessions/batch").body, json!([]));

    let api_calls: Vec<String> = fake.requests()[reads_before..]
        .iter()
        .filter(|r| !(r.method == "GET" && r.path.ends_with("/pods")))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        api_calls.len(),
        2,
        "reads never call Kubernetes; only the pause did: {api_calls:?}"
    );
}

#[test]
fn bad_configuration_stops_startup_naming_the_variable() {
    let fake = FakeKube::start();
    let dir = support::temp_dir("config");
    for (variable, value, expected) in [
        ("API_KEY", "", "API_KEY: is required"),
        ("SERVER_PORT", "eighty", "SERVER_PORT"),
        ("SANDBOX_ENV", "not json", "SANDBOX_ENV"),
        ("IMAGE_PULL_GRACE", "soon", "IMAGE_PULL_GRACE"),
        (
            "WARM_POOLS",
            r#"[{"name": "v1", "size": 2, "request": {"resource_factor": 40}}]"#,
            "WARM_POOLS: pool 1: v1: request: resource_factor",
        ),
        ("KUBE_API_URL", "localhost:6443", "KUBE_API_URL"),
        (
            "REGISTRY_CA_FILE",
            "/no/such/ca.crt",
            "REGISTRY_CA_FILE: /no/such/ca.crt: cannot be read",
        ),
    ] {
        let mut env = base_env(&fake, &dir);
        env.retain(|(k, _)| k != variable);
        if !value.is_empty() {
            env.push((variable.to_string(), value.to_string()));
        }
        let log = dir.join(format!("{variable}.log"));
        let status = spawn(&env, &log).wait().unwrap();
        assert!(!status.success(), "{variable}={value} must stop startup");
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains(expected), "{variable}: {text}");
    }
}
