//! The fake API server answers like the real one: its bodies match the fixtures and schemas in
//! `tests/fixtures/`, and the real `kubectl` can drive it.

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use support::schema::{self, assert_valid, example};
use support::{FakeKube, Fault, FaultRule, NAMESPACE, TOKEN};

/// A raw HTTP answer: code, content type, `Retry-After`, body.
struct Answer {
    code: u16,
    content_type: String,
    retry_after: Option<String>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

fn call(fake: &FakeKube, method: &str, path: &str, content_type: &str, body: Option<&Value>) -> Answer {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let request = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", fake.url()))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .header("Content-Type", content_type);
    let mut response = match body {
        Some(body) => agent.run(request.body(body.to_string()).unwrap()),
        None => agent.run(request.body(()).unwrap()),
    }
    .unwrap();
    let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_string());
    let (content_type, retry_after) = (header("Content-Type").unwrap_or_default(), header("Retry-After"));
    Answer {
        code: response.status().as_u16(),
        content_type,
        retry_after,
        body: response.body_mut().read_to_string().unwrap(),
    }
}

fn post(fake: &FakeKube, collection: &str, body: &Value) -> Answer {
    call(fake, "POST", collection, "application/json", Some(body))
}

const PODS: &str = "/api/v1/namespaces/openhands/pods";
const SERVICES: &str = "/api/v1/namespaces/openhands/services";
const INGRESSES: &str = "/apis/networking.k8s.io/v1/namespaces/openhands/ingresses";

fn web_pod() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": "registry.example.test/team/app:1.4.2"}]}})
}

fn web_ingress() -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web"},
        "spec": {"rules": [{"host": "web.example.test", "http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}})
}

#[test]
fn error_bodies_are_the_real_status_objects() {
    let fake = FakeKube::start();
    assert_eq!(post(&fake, PODS, &web_pod()).code, 201);
    let duplicate = post(&fake, PODS, &web_pod());
    assert_eq!(
        (duplicate.code, duplicate.content_type.as_str()),
        (409, "application/json")
    );
    assert_eq!(duplicate.json(), example("status-409.json"));

    assert_eq!(post(&fake, INGRESSES, &web_ingress()).code, 201);
    assert_eq!(
        post(&fake, INGRESSES, &web_ingress()).json(),
        example("status-409-ingress.json")
    );

    let bad_service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "1web"},
        "spec": {"ports": [{"port": 80}]}});
    let invalid = post(&fake, SERVICES, &bad_service);
    assert_eq!(invalid.code, 422);
    assert_eq!(invalid.json(), example("status-422.json"));

    let missing = call(&fake, "GET", &format!("{PODS}/grafana"), "application/json", None);
    assert_eq!(missing.code, 404);
    assert_eq!(
        missing.json(),
        json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \"grafana\" not found","reason":"NotFound","details":{"name":"grafana","kind":"pods"},"code":404})
    );
    for answer in [&duplicate, &invalid, &missing] {
        assert_valid("status-meta-v1.json", "Status", "v1", &answer.json());
    }
}

#[test]
fn throttling_unknown_paths_and_storage_faults_answer_as_the_real_server_does() {
    let fake = FakeKube::start();
    fake.add_fault(FaultRule::new(Fault::TooManyRequests { retry_after_secs: 3 }));
    let throttled = call(&fake, "GET", PODS, "application/json", None);
    assert_eq!(throttled.code, 429);
    assert_eq!(throttled.content_type, "text/plain; charset=utf-8");
    assert_eq!(throttled.retry_after.as_deref(), Some("3"));
    assert_eq!(throttled.body, "Too many requests, please try again later.\n");

    fake.add_fault(FaultRule::new(Fault::ServerTimeout { retry_after_secs: 2 }));
    let timeout = post(&fake, PODS, &web_pod());
    assert_eq!((timeout.code, timeout.retry_after.as_deref()), (500, Some("2")));
    assert_eq!(timeout.json()["reason"], "ServerTimeout");
    assert_eq!(
        timeout.json()["message"],
        "The create operation against pods could not be completed at this time, please try again."
    );
    assert_valid("status-meta-v1.json", "Status", "v1", &timeout.json());
    assert!(fake.objects("pods").is_empty(), "a fault before commit stores nothing");

    let unknown = call(&fake, "GET", "/apis/example.com/v1/widgets", "application/json", None);
    assert_eq!((unknown.code, unknown.body.as_str()), (404, "404 page not found\n"));

    let no_namespace = post(&fake, "/api/v1/namespaces/nowhere/pods", &web_pod());
    assert_eq!(
        (no_namespace.code, no_namespace.json()["message"].as_str()),
        (404, Some("namespaces \"nowhere\" not found"))
    );
}

#[test]
fn delete_answers_differ_by_resource_as_on_the_real_server() {
    let fake = FakeKube::start();
    post(&fake, PODS, &web_pod());
    post(&fake, INGRESSES, &web_ingress());
    let pod = call(
        &fake,
        "DELETE",
        &format!("{PODS}/web-1"),
        "application/json",
        Some(&json!({"propagationPolicy": "Background"})),
    );
    assert_eq!(pod.code, 200);
    assert_eq!(pod.json()["kind"], "Pod");
    let ingress = call(&fake, "DELETE", &format!("{INGRESSES}/web"), "application/json", None);
    assert_eq!(ingress.code, 200);
    let status = ingress.json();
    assert_eq!(
        (status["kind"].as_str(), status["status"].as_str()),
        (Some("Status"), Some("Success"))
    );
    assert_eq!(status["details"]["kind"], "ingresses");
    assert_valid("status-meta-v1.json", "Status", "v1", &status);

    let bad = call(
        &fake,
        "DELETE",
        &format!("{PODS}/web-1?propagationPolicy=Sometimes"),
        "application/json",
        None,
    );
    assert_eq!(bad.code, 422);
    assert_eq!(bad.json()["details"]["kind"], "DeleteOptions");
}

#[test]
fn lists_validate_and_carry_no_kind_on_items() {
    let fake = FakeKube::start();
    post(&fake, PODS, &web_pod());
    let list = call(
        &fake,
        "GET",
        &format!("{PODS}?labelSelector=app%3Dweb&limit=500"),
        "application/json",
        None,
    )
    .json();
    assert_valid("podlist-v1.json", "PodList", "v1", &list);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(list["items"][0].get("kind").is_none() && list["items"][0].get("apiVersion").is_none());
    assert!(list["metadata"]["resourceVersion"].is_string());
}

#[test]
fn discovery_documents_validate() {
    let fake = FakeKube::start();
    for (path, schema_file) in [
        ("/api", "apiversions-meta-v1.json"),
        ("/apis", "apigrouplist-meta-v1.json"),
        ("/api/v1", "apiresourcelist-meta-v1.json"),
        ("/apis/networking.k8s.io/v1", "apiresourcelist-meta-v1.json"),
    ] {
        let document = call(&fake, "GET", path, "application/json", None).json();
        let problems = schema::errors(schema_file, &document);
        assert!(problems.is_empty(), "{path}: {problems:?}");
    }
}

#[test]
fn objects_breaking_the_schema_are_refused_and_recorded() {
    let fake = FakeKube::start();
    let mut pod = web_pod();
    pod["spec"]["containers"][0]["imagee"] = json!("typo");
    let answer = post(&fake, PODS, &pod);
    assert_eq!(answer.code, 400);
    assert!(
        answer.json()["message"]
            .as_str()
            .unwrap()
            .contains("'imagee' was unexpected"),
        "{}",
        answer.body
    );
    let mut kindless = web_pod();
    kindless.as_object_mut().unwrap().remove("kind");
    assert_eq!(post(&fake, PODS, &kindless).code, 400);
    assert_eq!(fake.schema_violations().len(), 2);
    fake.clear_schema_violations();
}

#[test]
fn example_pod_statuses_are_accepted_as_scripted_statuses() {
    let fake = FakeKube::start();
    post(&fake, PODS, &web_pod());
    for file in [
        "podstatus-pending-imagepullbackoff.json",
        "podstatus-running-not-ready.json",
        "podstatus-crashloopbackoff.json",
    ] {
        let status = example(file);
        assert!(schema::errors("podstatus-v1.json", &status).is_empty());
        assert!(fake.set_pod_status("web-1", status.clone()));
        assert_eq!(
            call(&fake, "GET", &format!("{PODS}/web-1"), "", None).json()["status"],
            status
        );
    }
}

// ---- kubectl, a real client ----

fn kubectl() -> Option<&'static str> {
    let found = Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIPPED: kubectl is not installed; the fake's fidelity to a real client is not checked here");
    }
    found.then_some("kubectl")
}

struct Kubectl<'a> {
    binary: &'a str,
    home: std::path::PathBuf,
    server: String,
    ca: std::path::PathBuf,
}

impl<'a> Kubectl<'a> {
    /// kubectl pointed at a TLS fake, with a fresh HOME; also returns that directory.
    fn against(binary: &'a str, fake: &FakeKube, name: &str) -> (Kubectl<'a>, std::path::PathBuf) {
        let dir = support::temp_dir(name);
        std::fs::write(dir.join("ca.crt"), fake.ca_pem().unwrap()).unwrap();
        let kubectl = Kubectl {
            binary,
            home: dir.clone(),
            server: fake.url().to_string(),
            ca: dir.join("ca.crt"),
        };
        (kubectl, dir)
    }

    fn run(&self, token: &str, args: &[&str]) -> (bool, String, String) {
        let output = Command::new(self.binary)
            .env("HOME", &self.home)
            .env("KUBECONFIG", "/dev/null")
            .args(["--server", &self.server, "--token", token])
            .arg(format!("--certificate-authority={}", self.ca.display()))
            .args(["--namespace", NAMESPACE, "--request-timeout=20s"])
            .args(args)
            .output()
            .expect("run kubectl");
        let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
        (output.status.success(), text(&output.stdout), text(&output.stderr))
    }
}

fn write_json(path: &Path, value: &Value) {
    std::fs::write(path, value.to_string()).unwrap();
}

#[test]
fn kubectl_drives_the_fake_like_a_real_api_server() {
    let Some(binary) = kubectl() else { return };
    let fake = FakeKube::builder().tls().start();
    let (kubectl, dir) = Kubectl::against(binary, &fake, "kubectl");

    let (ok, out, err) = kubectl.run(TOKEN, &["version", "-o", "json"]);
    assert!(ok, "{err}");
    let version: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(version["serverVersion"]["gitVersion"], "v1.32.2");

    write_json(&dir.join("pod.json"), &web_pod());
    let pod_file = dir.join("pod.json").display().to_string();
    let (ok, out, err) = kubectl.run(TOKEN, &["create", "-f", &pod_file, "--validate=false", "-o", "json"]);
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(created["metadata"]["namespace"], NAMESPACE);
    assert!(created["metadata"]["uid"].is_string());

    let (ok, _, err) = kubectl.run(TOKEN, &["create", "-f", &pod_file, "--validate=false"]);
    assert!(!ok);
    assert_eq!(
        err,
        format!("Error from server (AlreadyExists): error when creating \"{pod_file}\": pods \"web-1\" already exists")
    );

    let (ok, out, err) = kubectl.run(TOKEN, &["get", "pods", "-l", "app=web", "-o", "name"]);
    assert!(ok, "{err}");
    assert_eq!(out, "pod/web-1");
    let (ok, out, _) = kubectl.run(TOKEN, &["get", "pods", "-l", "app!=web", "-o", "name"]);
    assert!(ok && out.is_empty(), "{out}");

    let (ok, out, err) = kubectl.run(TOKEN, &["get", "pod", "web-1", "-o", "json"]);
    assert!(ok, "{err}");
    let read: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(read["metadata"]["uid"], created["metadata"]["uid"]);

    let (ok, _, err) = kubectl.run(TOKEN, &["get", "pod", "nope"]);
    assert!(!ok);
    assert_eq!(err, "Error from server (NotFound): pods \"nope\" not found");

    write_json(&dir.join("ingress.json"), &web_ingress());
    let (ok, _, err) = kubectl.run(
        TOKEN,
        &[
            "create",
            "-f",
            &dir.join("ingress.json").display().to_string(),
            "--validate=false",
        ],
    );
    assert!(ok, "{err}");
    let (ok, out, err) = kubectl.run(TOKEN, &["get", "ingresses", "-o", "name"]);
    assert!(ok, "{err}");
    assert_eq!(out, "ingress.networking.k8s.io/web");

    let (ok, out, err) = kubectl.run(TOKEN, &["delete", "pod", "web-1", "--wait=false"]);
    assert!(ok, "{err}");
    assert_eq!(out, "pod \"web-1\" deleted");
    let (ok, out, err) = kubectl.run(TOKEN, &["delete", "ingress", "web"]);
    assert!(ok, "{err}");
    assert_eq!(out, "ingress.networking.k8s.io \"web\" deleted");

    let (ok, _, err) = kubectl.run("expired-token", &["get", "pods"]);
    assert!(!ok);
    assert!(
        err.ends_with("error: You must be logged in to the server (Unauthorized)"),
        "{err}"
    );
}

#[test]
fn kubectl_watches_the_fake() {
    let Some(binary) = kubectl() else { return };
    let fake = FakeKube::builder().tls().start();
    let (kubectl, _) = Kubectl::against(binary, &fake, "kubectl-watch");
    fake.insert("pods", &web_pod());
    // kubectl lists, then watches from the list's resourceVersion until the request timeout.
    let (_, out, err) = kubectl.run(
        TOKEN,
        &[
            "get",
            "pods",
            "--watch",
            "--output-watch-events",
            "-o",
            "json",
            "--request-timeout=2s",
        ],
    );
    let first: Value = serde_json::Deserializer::from_str(&out)
        .into_iter::<Value>()
        .next()
        .unwrap_or_else(|| panic!("no event: {err}"))
        .unwrap();
    assert_eq!(first["type"], "ADDED");
    assert_eq!(first["object"]["metadata"]["name"], "web-1");
    assert!(
        fake.watch_count("/pods") >= 1,
        "kubectl used the watch endpoint: {:?}",
        fake.requests()
    );
}

/// The garbage collector as the real one behaves (k8s-api-semantics.md, garbage collection):
/// Foreground keeps the owner until its dependents are gone, Orphan leaves them without the
/// reference, and an object created naming an owner that no longer exists is collected.
#[test]
fn owners_and_dependents_follow_the_propagation_policy() {
    let fake = FakeKube::start();
    let wait = std::time::Duration::from_secs(5);
    const SECRETS: &str = "/api/v1/namespaces/openhands/secrets";
    let owner = |name: &str| {
        let created = post(
            &fake,
            SECRETS,
            &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}}),
        );
        assert_eq!(created.code, 201, "{}", created.body);
        created.json()
    };
    let dependent = |name: &str, owner: &Value| {
        let reference = json!([{"apiVersion": "v1", "kind": "Secret", "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}]);
        let body = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "ownerReferences": reference},
            "spec": {"ports": [{"port": 80}]}});
        assert_eq!(post(&fake, SERVICES, &body).code, 201);
    };
    let delete = |name: &str, policy: &str| {
        let path = format!("{SECRETS}/{name}?propagationPolicy={policy}");
        assert_eq!(call(&fake, "DELETE", &path, "application/json", None).code, 200);
    };
    let foreground = owner("fg");
    let mut pod = web_pod();
    pod["metadata"]["name"] = json!("fg-pod");
    pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "Secret", "name": "fg",
        "uid": foreground["metadata"]["uid"], "blockOwnerDeletion": true}]);
    assert_eq!(post(&fake, PODS, &pod).code, 201);
    assert!(fake.wait_for(wait, |c| {
        c.object("pods", "fg-pod")
            .is_some_and(|p| p["status"]["phase"] == "Running")
    }));
    // The owner is held by its finalizer while its dependent terminates; then it goes too.
    fake.hold_terminating(true);
    delete("fg", "Foreground");
    assert!(fake.wait_for(wait, |c| {
        c.object("pods", "fg-pod")
            .is_some_and(|p| p["metadata"]["deletionTimestamp"].is_string())
    }));
    let held = fake.object("secrets", "fg").expect("held while its dependents go");
    assert_eq!(held["metadata"]["finalizers"], json!(["foregroundDeletion"]));
    assert!(held["metadata"]["deletionTimestamp"].is_string());
    fake.hold_terminating(false);
    assert!(fake.wait_for(wait, |c| c.object("pods", "fg-pod").is_none()
        && c.object("secrets", "fg").is_none()));

    let orphaning = owner("or");
    dependent("or-a", &orphaning);
    delete("or", "Orphan");
    assert!(fake.wait_for(wait, |c| c.object("secrets", "or").is_none()));
    let left = fake.object("services", "or-a").expect("orphaned, not deleted");
    assert!(
        left["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(|refs| refs.is_empty())
    );

    let background = owner("bg");
    dependent("bg-a", &background);
    delete("bg", "Background");
    assert!(fake.wait_for(wait, |c| c.object("services", "bg-a").is_none()));
    // A dependent of an owner that is already gone is collected as soon as it exists.
    dependent("bg-late", &background);
    assert!(fake.wait_for(wait, |c| c.object("services", "bg-late").is_none()));
}

/// A Ready pod is left alone, as the kubelet leaves it, also when the fake reports another
/// pod address (a benchmark's agent stand-in): no write without a change.
#[test]
fn a_ready_pod_is_not_rewritten_tick_after_tick() {
    let fake = FakeKube::builder().pod_ip("127.0.0.1").start();
    assert_eq!(post(&fake, PODS, &web_pod()).code, 201);
    let ready = |pod: &Value| {
        pod["status"]["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
    };
    let pod = fake
        .wait_for_object("pods", "web-1", std::time::Duration::from_secs(5), |pod| ready(pod))
        .expect("Ready");
    assert_eq!(pod["status"]["podIP"], "127.0.0.1");
    // Ten ticks of the controllers.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let later = fake.object("pods", "web-1").unwrap();
    assert_eq!(later["metadata"]["resourceVersion"], pod["metadata"]["resourceVersion"]);
}
