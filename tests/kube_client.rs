//! The Kubernetes client against the fake API server: every operation, every error kind,
//! retries, token rotation, TLS and pagination.

mod support;

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use openhands_k8s_runtime::testing::kube::{
    Client, Config, Deletion, KubeError, Resource, RetryPolicy, Timeouts, WatchEvent, owner_reference,
};
use serde_json::{Value, json};
use support::{FakeKube, Fault, FaultRule, NAMESPACE, PodFate, TOKEN};

const WAIT: Duration = Duration::from_secs(10);

struct Setup {
    dir: PathBuf,
    config: Config,
}

impl Setup {
    fn new(fake: &FakeKube, name: &str) -> Setup {
        let dir = support::temp_dir(name);
        fs::write(dir.join("token"), TOKEN).unwrap();
        if let Some(ca) = fake.ca_pem() {
            fs::write(dir.join("ca.crt"), ca).unwrap();
        }
        let config = Config {
            api_url: fake.url().to_string(),
            token_file: dir.join("token"),
            ca_file: dir.join("ca.crt"),
            namespace: NAMESPACE.to_string(),
            token_refresh: Duration::from_secs(60),
            timeouts: Timeouts::default(),
            retry: RetryPolicy {
                max_attempts: 4,
                first_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_millis(50),
                max_retry_after: Duration::from_secs(5),
            },
        };
        Setup { dir, config }
    }

    fn client(&self) -> Client {
        Client::new(&self.config).expect("a client")
    }
}

fn labels() -> Value {
    json!({"app.kubernetes.io/managed-by": "openhands-k8s-runtime", "runtime-id": "abc"})
}

fn secret(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "labels": labels()},
        "stringData": {"session_api_key": "k"}})
}

fn pod(name: &str, image: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels()},
        "spec": {"containers": [{"name": "agent", "image": image, "ports": [{"name": "agent", "containerPort": 60000}]}]}})
}

fn service(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "labels": labels()},
        "spec": {"selector": {"runtime-id": "abc"}, "ports": [{"name": "agent", "port": 60000}]}})
}

fn ingress(name: &str) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "labels": labels()},
        "spec": {"ingressClassName": "nginx", "rules": [{"host": "abc.sandbox.example.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": name, "port": {"number": 60000}}}}]}}]}})
}

fn claim(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "labels": labels()},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
}

#[test]
fn every_resource_is_created_read_listed_patched_and_deleted() {
    let fake = FakeKube::start();
    let client = Setup::new(&fake, "crud").client();
    let cases = [
        (Resource::Secrets, secret("runtime-abc")),
        (Resource::Pods, pod("runtime-abc", "ghcr.io/openhands/agent-server:1.0")),
        (Resource::Services, service("runtime-abc")),
        (Resource::Ingresses, ingress("runtime-abc")),
        (Resource::PersistentVolumeClaims, claim("runtime-abc")),
    ];
    for (resource, object) in &cases {
        let created = client.create(*resource, object).unwrap();
        assert_eq!(created["kind"], resource.kind());
        assert_eq!(created["metadata"]["namespace"], NAMESPACE);
        assert!(created["metadata"]["uid"].as_str().is_some_and(|u| u.len() == 36));
        assert!(created["metadata"]["resourceVersion"].is_string());

        let read = client.get(*resource, "runtime-abc").unwrap();
        assert_eq!(read["metadata"]["uid"], created["metadata"]["uid"]);

        let listed = client.list(*resource, "runtime-id=abc").unwrap();
        assert_eq!(listed.items.len(), 1, "{resource:?}");
        assert!(!listed.resource_version.is_empty());
        assert!(client.list(*resource, "runtime-id=other").unwrap().items.is_empty());

        let patched = client
            .merge_patch(
                *resource,
                "runtime-abc",
                &json!({"metadata": {"annotations": {"openhands.dev/paused": "true"}}}),
            )
            .unwrap();
        assert_eq!(patched["metadata"]["annotations"]["openhands.dev/paused"], "true");
        assert_ne!(
            patched["metadata"]["resourceVersion"],
            created["metadata"]["resourceVersion"]
        );
    }
    assert_eq!(
        fake.object("secrets", "runtime-abc").unwrap()["data"]["session_api_key"],
        "aw==",
        "stringData is stored base64-encoded in data"
    );

    for (resource, _) in &cases {
        assert_eq!(client.delete(*resource, "runtime-abc").unwrap(), Deletion::Deleted);
    }
    // The pod terminates gracefully and the claim waits for its pod: both go shortly after.
    assert!(
        fake.wait_for(WAIT, |cluster| cluster.object("pods", "runtime-abc").is_none()
            && cluster.object("persistentvolumeclaims", "runtime-abc").is_none())
    );
    for (resource, _) in &cases {
        assert!(matches!(
            client.get(*resource, "runtime-abc"),
            Err(KubeError::NotFound(_))
        ));
        assert_eq!(client.delete(*resource, "runtime-abc").unwrap(), Deletion::AlreadyGone);
    }
    assert!(fake.object_names().is_empty());
}

#[test]
fn api_errors_carry_the_api_servers_message() {
    let fake = FakeKube::start();
    let client = Setup::new(&fake, "errors").client();

    match client.get(Resource::Pods, "missing") {
        Err(KubeError::NotFound(message)) => assert_eq!(message, "pods \"missing\" not found"),
        other => panic!("{other:?}"),
    }
    match client.create(Resource::Services, &service("1web")) {
        Err(KubeError::Invalid(message)) => assert!(
            message.starts_with("Service \"1web\" is invalid: metadata.name"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    match client.list(Resource::Pods, "app in (a") {
        Err(KubeError::BadRequest(message)) => assert!(message.contains("unable to parse requirement"), "{message}"),
        other => panic!("{other:?}"),
    }

    // A foreign object of the same name is not ours: no adoption.
    let mut foreign = ingress("taken");
    foreign["metadata"]["labels"] = json!({"app": "someone-else"});
    fake.insert("ingresses", &foreign);
    match client.create(Resource::Ingresses, &ingress("taken")) {
        Err(KubeError::AlreadyExists(message)) => {
            assert_eq!(message, "ingresses.networking.k8s.io \"taken\" already exists")
        }
        other => panic!("{other:?}"),
    }

    client.create(Resource::Secrets, &secret("anchor")).unwrap();
    let stale = json!({"metadata": {"resourceVersion": "1", "annotations": {"a": "b"}}});
    match client.merge_patch(Resource::Secrets, "anchor", &stale) {
        Err(KubeError::Conflict(message)) => assert!(message.contains("the object has been modified"), "{message}"),
        other => panic!("{other:?}"),
    }

    fake.deny("create", "pods");
    match client.create(Resource::Pods, &pod("denied", "busybox:1")) {
        Err(KubeError::Forbidden(message)) => assert_eq!(
            message,
            "pods is forbidden: User \"system:serviceaccount:openhands:openhands-runtime\" cannot create resource \"pods\" in API group \"\" in the namespace \"openhands\""
        ),
        other => panic!("{other:?}"),
    }

    fake.accept_tokens(&["another-token"]);
    match client.get(Resource::Secrets, "anchor") {
        Err(KubeError::Unauthorized(message)) => assert_eq!(message, "Unauthorized"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn transient_errors_are_retried_until_they_pass() {
    let fake = FakeKube::start();
    let client = Setup::new(&fake, "transient").client();
    fake.add_fault(FaultRule::new(Fault::InternalError).on("GET", "/secrets"));
    fake.add_fault(FaultRule::new(Fault::ServiceUnavailable).on("GET", "/secrets"));
    fake.add_fault(FaultRule::new(Fault::GatewayTimeout).on("GET", "/secrets"));
    assert!(client.list(Resource::Secrets, "").unwrap().items.is_empty());
    let codes: Vec<u16> = fake.requests().iter().map(|r| r.code).collect();
    assert_eq!(codes, [500, 503, 504, 200]);

    fake.add_fault(FaultRule::new(Fault::InternalError).times(10));
    match client.get(Resource::Pods, "x") {
        Err(KubeError::Server { code: 500, message, .. }) => assert!(message.contains("etcdserver"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.count("GET", "/pods/x"), 4, "four attempts in all, then the error");
}

#[test]
fn throttling_waits_for_retry_after() {
    let fake = FakeKube::start();
    let client = Setup::new(&fake, "throttle").client();
    fake.add_fault(FaultRule::new(Fault::TooManyRequests { retry_after_secs: 1 }).on("POST", "/secrets"));
    let started = Instant::now();
    client.create(Resource::Secrets, &secret("throttled")).unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
    assert_eq!(fake.count("POST", "/secrets"), 2);

    // A wait longer than the caller can afford goes back as an error at once.
    fake.add_fault(FaultRule::new(Fault::TooManyRequests { retry_after_secs: 60 }));
    match client.get(Resource::Secrets, "throttled") {
        Err(KubeError::TooManyRequests { message, retry_after }) => {
            assert_eq!(message, "Too many requests, please try again later.");
            assert_eq!(retry_after, Some(Duration::from_secs(60)));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.count("GET", "/secrets/throttled"), 1);
}

#[test]
fn a_create_whose_answer_was_lost_is_read_back_not_duplicated() {
    let fake = FakeKube::start();
    let client = Setup::new(&fake, "lost-create").client();
    // The pod is stored, then the server answers 500: the outcome is unknown to the client.
    fake.add_fault(
        FaultRule::new(Fault::ServerTimeout { retry_after_secs: 0 })
            .on("POST", "/pods")
            .after_commit(),
    );
    let created = client
        .create(Resource::Pods, &pod("runtime-lost", "busybox:1"))
        .unwrap();
    assert_eq!(created["metadata"]["name"], "runtime-lost");
    assert_eq!(fake.objects("pods").len(), 1);
    let calls: Vec<(String, u16)> = fake.requests().iter().map(|r| (r.method.clone(), r.code)).collect();
    assert_eq!(
        calls,
        [
            ("POST".to_string(), 500),
            ("POST".to_string(), 409),
            ("GET".to_string(), 200)
        ]
    );
}

#[test]
fn a_rotated_token_is_read_again_after_a_401() {
    let fake = FakeKube::start();
    let setup = Setup::new(&fake, "rotate-401");
    let client = setup.client();
    client.list(Resource::Pods, "").unwrap();

    fs::write(setup.dir.join("token"), "rotated-token").unwrap();
    fake.accept_tokens(&["rotated-token"]);
    client.list(Resource::Pods, "").unwrap();
    let seen: Vec<(Option<String>, u16)> = fake.requests().iter().map(|r| (r.token.clone(), r.code)).collect();
    assert_eq!(
        seen,
        [
            (Some(TOKEN.to_string()), 200),
            (Some(TOKEN.to_string()), 401),
            (Some("rotated-token".to_string()), 200)
        ]
    );
}

#[test]
fn the_token_file_is_reread_periodically_and_the_last_good_token_kept() {
    let fake = FakeKube::start();
    let mut setup = Setup::new(&fake, "rotate-periodic");
    setup.config.token_refresh = Duration::ZERO;
    let client = setup.client();
    client.list(Resource::Pods, "").unwrap();

    fs::write(setup.dir.join("token"), "rotated-token").unwrap();
    fake.accept_tokens(&["rotated-token"]);
    client.list(Resource::Pods, "").unwrap();

    // The kubelet swaps the projected file; for a moment there is none.
    fs::remove_file(setup.dir.join("token")).unwrap();
    client.list(Resource::Pods, "").unwrap();

    let seen: Vec<(Option<String>, u16)> = fake.requests().iter().map(|r| (r.token.clone(), r.code)).collect();
    let rotated = Some("rotated-token".to_string());
    assert_eq!(
        seen,
        [(Some(TOKEN.to_string()), 200), (rotated.clone(), 200), (rotated, 200)],
        "no 401 on the way"
    );
}

#[test]
fn without_a_token_file_no_authorization_is_sent() {
    let fake = FakeKube::builder().without_auth().start();
    let mut setup = Setup::new(&fake, "no-token");
    setup.config.token_file = setup.dir.join("absent");
    setup.client().list(Resource::Pods, "").unwrap();
    assert_eq!(fake.requests()[0].token, None);
}

#[test]
fn tls_trusts_the_given_ca_and_nothing_else() {
    let fake = FakeKube::builder().tls().start();
    let setup = Setup::new(&fake, "tls");
    assert!(fake.url().starts_with("https://"));
    setup.client().list(Resource::Pods, "").unwrap();

    let mut wrong = setup.config.clone();
    let other_ca = support::tls::TestPki::generate("some-other-ca").ca_pem;
    wrong.ca_file = setup.dir.join("other-ca.crt");
    fs::write(&wrong.ca_file, other_ca).unwrap();
    wrong.retry.max_attempts = 1;
    match Client::new(&wrong).unwrap().list(Resource::Pods, "") {
        Err(KubeError::Transport(message)) => assert!(message.to_lowercase().contains("certificate"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.requests().len(), 1, "the refused handshake reached no handler");

    let mut missing = setup.config.clone();
    missing.ca_file = setup.dir.join("absent.crt");
    let error = Client::new(&missing).unwrap_err();
    assert_eq!(error.variable, "KUBE_CA_FILE");
}

#[test]
fn a_dead_or_slow_api_server_is_a_transport_error_or_a_timeout() {
    let fake = FakeKube::start();
    let mut setup = Setup::new(&fake, "slow");
    setup.config.retry.max_attempts = 1;
    setup.config.timeouts = Timeouts {
        connect: Duration::from_secs(1),
        call: Duration::from_millis(300),
    };
    fake.set_latency(Duration::from_secs(2));
    assert!(matches!(
        setup.client().get(Resource::Pods, "x"),
        Err(KubeError::Timeout(_))
    ));

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    setup.config.api_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    assert!(matches!(
        setup.client().get(Resource::Pods, "x"),
        Err(KubeError::Transport(_))
    ));
}

#[test]
fn lists_follow_continue_tokens_and_survive_expiry() {
    let fake = FakeKube::start();
    fake.skip_self_validation();
    let client = Setup::new(&fake, "pages").client();
    for i in 0..1203 {
        fake.insert("secrets", &secret(&format!("runtime-{i:04}")));
    }
    let all = client.list(Resource::Secrets, "runtime-id=abc").unwrap();
    assert_eq!(all.items.len(), 1203);
    let mut names: Vec<&str> = all
        .items
        .iter()
        .map(|s| s["metadata"]["name"].as_str().unwrap())
        .collect();
    names.dedup();
    assert_eq!(names.len(), 1203, "no object twice");
    let pages: Vec<String> = fake.requests().iter().map(|r| r.query.clone()).collect();
    assert_eq!(pages.len(), 13, "pages of 100");
    assert!(pages.iter().all(|q| q.contains("limit=100")));
    assert_eq!(pages.iter().filter(|q| q.contains("continue=")).count(), 12);

    let page = client.list_page(Resource::Secrets, "", Some(2), None).unwrap();
    assert_eq!(page.items.len(), 2);
    fake.compact();
    match client.list_page(Resource::Secrets, "", Some(2), page.continue_token.as_deref()) {
        Err(KubeError::Expired(message)) => assert!(message.contains("too old"), "{message}"),
        other => panic!("{other:?}"),
    }

    // A continue token that expires mid-list: the client starts over with one full list.
    fake.add_fault(FaultRule::new(Fault::Expired).on("GET", "/secrets").skip(1));
    assert_eq!(client.list(Resource::Secrets, "").unwrap().items.len(), 1203);
}

#[test]
fn label_selectors_match_like_the_api_server() {
    let fake = FakeKube::start();
    let client = Setup::new(&fake, "selectors").client();
    for (name, tier) in [("a", Some("web")), ("b", Some("db")), ("c", None)] {
        let mut object = secret(name);
        if let Some(tier) = tier {
            object["metadata"]["labels"]["tier"] = json!(tier);
        }
        client.create(Resource::Secrets, &object).unwrap();
    }
    let names = |selector: &str| -> Vec<String> {
        client
            .list(Resource::Secrets, selector)
            .unwrap()
            .items
            .iter()
            .map(|s| s["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names("tier=web"), ["a"]);
    assert_eq!(names("tier==db"), ["b"]);
    assert_eq!(names("tier!=web"), ["b", "c"]);
    assert_eq!(names("tier in (web,db)"), ["a", "b"]);
    assert_eq!(names("tier notin (web)"), ["b", "c"]);
    assert_eq!(names("tier"), ["a", "b"]);
    assert_eq!(names("!tier"), ["c"]);
    assert_eq!(names("runtime-id=abc,tier"), ["a", "b"]);
}

#[test]
fn deleting_the_owner_garbage_collects_its_dependents() {
    let fake = FakeKube::start();
    let client = Setup::new(&fake, "gc").client();
    let anchor = client.create(Resource::Secrets, &secret("runtime-gc")).unwrap();
    let owned = |mut object: Value| {
        object["metadata"]["ownerReferences"] = json!([owner_reference(&anchor)]);
        object
    };
    client
        .create(Resource::Pods, &owned(pod("runtime-gc", "busybox:1")))
        .unwrap();
    client
        .create(Resource::Services, &owned(service("runtime-gc")))
        .unwrap();
    client
        .create(Resource::Ingresses, &owned(ingress("runtime-gc")))
        .unwrap();
    client
        .create(Resource::PersistentVolumeClaims, &owned(claim("runtime-gc")))
        .unwrap();

    client.delete(Resource::Secrets, "runtime-gc").unwrap();
    assert!(fake.wait_for(WAIT, |cluster| {
        ["pods", "services", "ingresses", "persistentvolumeclaims", "secrets"]
            .iter()
            .all(|r| cluster.objects(r).is_empty())
    }));
}

#[test]
fn a_deleted_pod_terminates_before_it_is_gone() {
    let fake = FakeKube::start();
    let client = Setup::new(&fake, "terminate").client();
    client.create(Resource::Pods, &pod("runtime-t", "busybox:1")).unwrap();
    assert!(fake.wait_for(WAIT, |c| {
        c.object("pods", "runtime-t")
            .is_some_and(|p| p["status"]["phase"] == "Running")
    }));
    fake.hold_terminating(true);
    client.delete(Resource::Pods, "runtime-t").unwrap();
    let terminating = client.get(Resource::Pods, "runtime-t").unwrap();
    assert!(terminating["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(terminating["metadata"]["deletionGracePeriodSeconds"], 30);
    // A pod of the same name cannot be created while the old one terminates; it is not adopted.
    assert!(matches!(
        client.create(Resource::Pods, &pod("runtime-t", "busybox:1")),
        Err(KubeError::AlreadyExists(_))
    ));
    fake.hold_terminating(false);
    assert!(fake.wait_for(WAIT, |c| c.object("pods", "runtime-t").is_none()));
    client.create(Resource::Pods, &pod("runtime-t", "busybox:1")).unwrap();
}

fn wait_for_pod(fake: &FakeKube, name: &str, what: impl Fn(&Value) -> bool) -> Value {
    fake.wait_for_object("pods", name, WAIT, |pod| what(&pod["status"]))
        .unwrap_or_else(|| {
            panic!(
                "pod {name} never reached the expected status: {:#}",
                fake.object("pods", name).unwrap_or_default()
            )
        })
}

#[test]
fn the_kubelet_moves_pods_through_their_lives() {
    let fake = FakeKube::start();
    let client = Setup::new(&fake, "kubelet").client();
    fake.kubelet_rule("no-such-image", PodFate::ImagePullBackOff);
    fake.kubelet_rule("crashing", PodFate::crash_loop());
    fake.kubelet_rule("too-big", PodFate::unschedulable());

    client.create(Resource::Pods, &pod("runtime-ok", "agent:1")).unwrap();
    let container = |status: &Value| status["containerStatuses"][0].clone();
    wait_for_pod(&fake, "runtime-ok", |s| {
        container(s)["state"]["waiting"]["reason"] == "ContainerCreating"
    });
    wait_for_pod(&fake, "runtime-ok", |s| {
        s["phase"] == "Running" && container(s)["ready"] == false
    });
    let ready = wait_for_pod(&fake, "runtime-ok", |s| container(s)["ready"] == true);
    let condition = |pod: &Value, kind: &str| {
        pod["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == kind)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(condition(&ready, "Ready"), "True");

    client
        .create(Resource::Pods, &pod("runtime-pull", "registry.test/no-such-image:1"))
        .unwrap();
    wait_for_pod(&fake, "runtime-pull", |s| {
        container(s)["state"]["waiting"]["reason"] == "ErrImagePull"
    });
    let backoff = wait_for_pod(&fake, "runtime-pull", |s| {
        container(s)["state"]["waiting"]["reason"] == "ImagePullBackOff"
    });
    assert_eq!(backoff["status"]["phase"], "Pending");

    client
        .create(Resource::Pods, &pod("runtime-crash", "crashing:1"))
        .unwrap();
    let crashing = wait_for_pod(&fake, "runtime-crash", |s| {
        container(s)["state"]["waiting"]["reason"] == "CrashLoopBackOff"
            && container(s)["restartCount"].as_i64() >= Some(2)
    });
    assert_eq!(crashing["status"]["phase"], "Running");
    assert_eq!(
        container(&crashing["status"])["lastState"]["terminated"]["reason"],
        "Error"
    );

    client.create(Resource::Pods, &pod("runtime-big", "too-big:1")).unwrap();
    let pending = wait_for_pod(&fake, "runtime-big", |s| {
        !s["conditions"].as_array().is_none_or(|c| c.is_empty())
    });
    assert_eq!(pending["status"]["conditions"][0]["reason"], "Unschedulable");
    assert!(pending["spec"]["nodeName"].is_null());
}

#[test]
fn a_watch_streams_changes_in_order_with_bookmarks_while_idle() {
    let fake = FakeKube::start();
    let client = Setup::new(&fake, "watch").client();
    let listed = client.list(Resource::Pods, "runtime-id=abc").unwrap();
    let mut watch = client
        .watch(
            Resource::Pods,
            "runtime-id=abc",
            &listed.resource_version,
            Duration::from_secs(30),
        )
        .unwrap();
    // Idle: the server says so with a bookmark.
    assert!(matches!(watch.next(), Some(Ok(WatchEvent::Bookmark(rv))) if !rv.is_empty()));

    client.create(Resource::Pods, &pod("runtime-w", "agent:1")).unwrap();
    client.create(Resource::Secrets, &secret("not-a-pod")).unwrap();
    let mut seen = Vec::new();
    for event in watch.by_ref() {
        match event.unwrap() {
            WatchEvent::Added(pod) => {
                seen.push(("ADDED", pod["status"]["phase"].as_str().unwrap_or_default().to_string()))
            }
            WatchEvent::Modified(pod) => {
                let ready = pod["status"]["containerStatuses"][0]["ready"] == true;
                seen.push((
                    "MODIFIED",
                    pod["status"]["phase"].as_str().unwrap_or_default().to_string(),
                ));
                if ready {
                    client.delete(Resource::Pods, "runtime-w").unwrap();
                }
            }
            WatchEvent::Deleted(pod) => {
                assert_eq!(pod["metadata"]["name"], "runtime-w");
                seen.push(("DELETED", String::new()));
                break;
            }
            WatchEvent::Bookmark(_) => {}
        }
    }
    assert_eq!(seen.first(), Some(&("ADDED", "Pending".to_string())), "{seen:?}");
    assert!(
        seen.iter()
            .any(|(kind, phase)| *kind == "MODIFIED" && phase == "Running"),
        "{seen:?}"
    );
    assert_eq!(seen.last().map(|(kind, _)| *kind), Some("DELETED"));
}

#[test]
fn a_watch_ends_on_timeout_on_a_drop_and_fails_on_a_cut_or_gone_version() {
    let fake = FakeKube::start();
    let client = Setup::new(&fake, "watch-ends").client();
    let rv = client.list(Resource::Secrets, "").unwrap().resource_version;

    let started = Instant::now();
    let events: Vec<_> = client
        .watch(Resource::Secrets, "", &rv, Duration::from_secs(1))
        .unwrap()
        .collect();
    assert!(
        events.iter().all(|e| matches!(e, Ok(WatchEvent::Bookmark(_)))),
        "{events:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the server ends it at timeoutSeconds"
    );

    let mut watch = client
        .watch(Resource::Secrets, "", &rv, Duration::from_secs(30))
        .unwrap();
    fake.drop_watches();
    assert!(
        watch.all(|e| matches!(e, Ok(WatchEvent::Bookmark(_)))),
        "a dropped stream simply ends"
    );

    let mut watch = client
        .watch(Resource::Secrets, "", &rv, Duration::from_secs(30))
        .unwrap();
    fake.break_watches();
    let last = watch
        .by_ref()
        .filter(|e| !matches!(e, Ok(WatchEvent::Bookmark(_))))
        .last();
    assert!(matches!(last, Some(Err(KubeError::InvalidResponse(_)))), "{last:?}");
    assert!(watch.next().is_none());

    client.create(Resource::Secrets, &secret("after")).unwrap();
    fake.compact();
    let mut watch = client
        .watch(Resource::Secrets, "", &rv, Duration::from_secs(30))
        .unwrap();
    match watch.next() {
        Some(Err(KubeError::Expired(message))) => assert!(message.starts_with("too old resource version"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert!(watch.next().is_none());
}
