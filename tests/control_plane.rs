//! The service against the real Kubernetes control plane: kube-apiserver with etcd and
//! kube-controller-manager, built from their Go modules (tests/control-plane/). The real server
//! validates and defaults every object, enforces deploy.yaml's Role, garbage-collects, expires
//! watches and admits pods; what it does is right, and where the fake differs the fake is
//! fixed. There is no kubelet: tests write pod status as one would.
//!
//! Skips with a one-line reason where the control plane is not built; CI builds it and sets
//! `REQUIRE_CONTROL_PLANE=1`.

mod support;

use std::collections::BTreeSet;
use std::sync::MutexGuard;
use std::time::Duration;

use serde_json::{Value, json};
use support::Service;
use support::agent_stand_in::AgentStandIn;
use support::control_plane::{ControlPlane, control_plane, running_status};

const KINDS: [(&str, &str); 6] = [
    ("/api/v1", "secrets"),
    ("/api/v1", "pods"),
    ("/api/v1", "services"),
    ("/apis/networking.k8s.io/v1", "ingresses"),
    ("/apis/networking.k8s.io/v1", "networkpolicies"),
    ("/api/v1", "persistentvolumeclaims"),
];

/// deploy.yaml's documents, in the namespace given (as shipped for `openhands`), created one by
/// one as `kubectl apply` would; returns a token of its ServiceAccount from the TokenRequest API.
fn install(cp: &ControlPlane, namespace: &str) -> String {
    for mut document in support::deploy::documents() {
        let kind = document["kind"].as_str().unwrap_or_default().to_string();
        if kind == "Namespace" {
            document["metadata"]["name"] = json!(namespace);
        } else {
            document["metadata"]["namespace"] = json!(namespace);
        }
        if kind == "RoleBinding" {
            document["subjects"][0]["namespace"] = json!(namespace);
        }
        let collection = match kind.as_str() {
            "Namespace" => "/api/v1/namespaces".to_string(),
            "ServiceAccount" | "Secret" | "Service" => {
                format!("/api/v1/namespaces/{namespace}/{}s", kind.to_lowercase())
            }
            "Role" | "RoleBinding" => format!(
                "/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/{}s",
                kind.to_lowercase()
            ),
            "Deployment" => format!("/apis/apps/v1/namespaces/{namespace}/deployments"),
            other => panic!("deploy.yaml has a {other} this test does not know"),
        };
        cp.create(&collection, &document);
    }
    cp.wait_for("the default service account", || {
        cp.get(&format!("/api/v1/namespaces/{namespace}/serviceaccounts/default"))
            .code
            == 200
    });
    cp.token_for(namespace, "openhands-k8s-runtime", None)
}

/// The service in `namespace`, reaching the API server with `token`.
fn start_service(cp: &ControlPlane, namespace: &str, token: &str, extra: &[(&str, &str)]) -> Service {
    let dir = support::temp_dir(&format!("service-{namespace}"));
    let mut env = cp.service_env(&dir, namespace, token);
    env.extend(
        [
            ("API_KEY", support::API_KEY),
            ("BASE_DOMAIN", support::BASE_DOMAIN),
            ("RUST_LOG", "debug"),
            ("WORKER_THREADS", "8"),
            ("ORPHAN_SWEEP_INTERVAL", "2s"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    Service::launch(&dir, env)
}

/// A test's turn on the control plane, with deploy.yaml installed in its namespace and the
/// service running there on the ServiceAccount's token.
fn installed_service(
    ns: &str,
    extra: &[(&str, &str)],
) -> Option<(&'static ControlPlane, MutexGuard<'static, ()>, Service)> {
    let cp = control_plane()?;
    let turn = cp.turn();
    let token = install(cp, ns);
    let service = start_service(cp, ns, &token, extra);
    Some((cp, turn, service))
}

fn pod_path(namespace: &str, runtime: &Value) -> String {
    format!("/api/v1/namespaces/{namespace}/pods/{}", name(runtime))
}

fn name(runtime: &Value) -> String {
    format!("runtime-{}", runtime["runtime_id"].as_str().expect("a runtime id"))
}

/// Writes a Ready status on the runtime's current pod, as the kubelet would.
fn make_ready(cp: &ControlPlane, namespace: &str, runtime: &Value) {
    cp.wait_for("the runtime's pod", || {
        cp.get(&pod_path(namespace, runtime)).code == 200
    });
    cp.set_pod_status(namespace, &name(runtime), running_status(true));
}

/// The names of the labelled objects of each kind in `namespace`.
fn labelled(cp: &ControlPlane, namespace: &str, selector: &str) -> BTreeSet<String> {
    KINDS
        .iter()
        .flat_map(|(group, kind)| {
            cp.items(&format!(
                "{group}/namespaces/{namespace}/{kind}?labelSelector={selector}"
            ))
            .into_iter()
            .map(move |o| format!("{kind}/{}", o["metadata"]["name"].as_str().unwrap_or_default()))
        })
        .collect()
}

fn assert_never_forbidden(service: &Service) {
    assert_not_forbidden(&service.log());
}

fn assert_not_forbidden(log: &str) {
    assert!(
        !log.contains("Kubernetes API forbidden"),
        "the Role as shipped refused a call:\n{log}"
    );
}

#[test]
fn deploy_yaml_as_shipped_is_accepted_and_its_role_serves_a_whole_lifecycle() {
    let ns = "openhands";
    let Some((cp, _turn, service)) = installed_service(ns, &[("WORKSPACE_STORAGE_SIZE", "1Gi")]) else {
        return;
    };

    let started = service.post(
        "/start",
        &json!({"session_id": "Life-1", "image": "ghcr.io/openhands/agent-server:1.58.2-python"}),
    );
    assert_eq!(started.code, 201, "{:#}\n{}", started.body, service.log());
    let runtime = started.body;
    assert_eq!(runtime["status"], "starting");
    // Accepted, and defaulted by the real server (no schema file involved).
    let pod = cp.get(&pod_path(ns, &runtime)).body;
    assert_eq!(pod["spec"]["dnsPolicy"], "ClusterFirst", "{pod:#}");
    assert_eq!(pod["spec"]["terminationGracePeriodSeconds"], 30);
    assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "Secret");
    let svc = cp
        .get(&format!("/api/v1/namespaces/{ns}/services/{}", name(&runtime)))
        .body;
    assert!(
        svc["spec"]["clusterIP"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("10.96.")),
        "{svc:#}"
    );
    assert_eq!(
        labelled(
            cp,
            ns,
            &format!("runtime-id={}", runtime["runtime_id"].as_str().unwrap())
        )
        .len(),
        6,
        "anchor, pod, service, ingress, network policy and volume claim"
    );

    make_ready(cp, ns, &runtime);
    service.wait_for_status("Life-1", "running");

    let id = runtime["runtime_id"].clone();
    let paused = service.post("/pause", &json!({"runtime_id": id}));
    assert_eq!((paused.code, paused.body["status"].as_str()), (200, Some("paused")));
    cp.wait_for("the paused runtime's pod to go", || {
        cp.get(&pod_path(ns, &runtime)).code == 404
    });

    let resumed = service.post("/resume", &json!({"runtime_id": id}));
    assert_eq!(resumed.code, 200, "{:#}", resumed.body);
    assert_eq!(resumed.body["session_api_key"], runtime["session_api_key"]);
    make_ready(cp, ns, &runtime);
    service.wait_for_status("Life-1", "running");

    // A pod deleted behind the service's back is recreated, and the real API server takes the
    // Event that records it, on the anchor.
    let before = cp.get(&pod_path(ns, &runtime)).body["metadata"]["uid"].clone();
    assert_eq!(cp.delete(&pod_path(ns, &runtime)).code, 200);
    cp.wait_for("the recreated pod", || {
        let pod = cp.get(&pod_path(ns, &runtime));
        pod.code == 200 && pod.body["metadata"]["uid"] != before && pod.body["metadata"]["deletionTimestamp"].is_null()
    });
    cp.wait_for("the PodRecreated event", || {
        cp.items(&format!("/api/v1/namespaces/{ns}/events"))
            .iter()
            .any(|event| {
                event["reason"] == "PodRecreated" && event["involvedObject"]["name"] == name(&runtime).as_str()
            })
    });
    make_ready(cp, ns, &runtime);
    service.wait_for_status("Life-1", "running");

    // A crash loop reads `error`; a client's /start recreates the pod.
    let first_uid = cp.get(&pod_path(ns, &runtime)).body["metadata"]["uid"].clone();
    let mut crashing = running_status(false);
    crashing["containerStatuses"][0]["restartCount"] = json!(3);
    crashing["containerStatuses"][0]["state"] = json!({"waiting": {"reason": "CrashLoopBackOff",
        "message": "back-off 40s restarting failed container=agent"}});
    crashing["containerStatuses"][0]["lastState"] = json!({"terminated": {"exitCode": 1, "reason": "Error",
        "startedAt": "2026-01-01T00:00:00Z", "finishedAt": "2026-01-01T00:00:05Z"}});
    cp.set_pod_status(ns, &name(&runtime), crashing);
    let failed = service.wait_for_status("Life-1", "error");
    assert!(
        failed["status_detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("CrashLoopBackOff")),
        "{failed:#}"
    );
    let again = service.post("/start", &json!({"session_id": "Life-1"}));
    assert_eq!(again.code, 200, "{:#}", again.body);
    cp.wait_for("a new pod", || {
        let pod = cp.get(&pod_path(ns, &runtime));
        pod.code == 200 && pod.body["metadata"]["uid"] != first_uid
    });
    make_ready(cp, ns, &runtime);
    service.wait_for_status("Life-1", "running");

    let stopped = service.post("/stop", &json!({"runtime_id": id}));
    assert_eq!((stopped.code, stopped.body["status"].as_str()), (200, Some("stopped")));
    cp.wait_for("every object of the stopped runtime to go", || {
        labelled(cp, ns, "app.kubernetes.io/managed-by=openhands-k8s-runtime").is_empty()
    });
    assert_never_forbidden(&service);
}

#[test]
fn deleting_an_anchor_makes_the_garbage_collector_remove_everything_it_owns() {
    let ns = "gc";
    let Some((cp, _turn, service)) = installed_service(ns, &[("WORKSPACE_STORAGE_SIZE", "1Gi")]) else {
        return;
    };
    let runtime = service.post("/start", &json!({"session_id": "collected"})).body;
    let selector = format!("runtime-id={}", runtime["runtime_id"].as_str().expect("started"));
    assert_eq!(labelled(cp, ns, &selector).len(), 6);

    let deleted = cp.delete(&format!("/api/v1/namespaces/{ns}/secrets/{}", name(&runtime)));
    assert_eq!(deleted.code, 200, "{:#}", deleted.body);
    cp.wait_for("the garbage collector to remove the runtime's objects", || {
        labelled(cp, ns, &selector).is_empty()
    });
    cp.wait_for("the service to forget the runtime", || {
        service.get("/sessions/collected").code == 404
    });
    assert_never_forbidden(&service);
}

#[test]
fn a_service_killed_in_the_middle_of_starts_converges_and_leaves_no_orphan() {
    let ns = "crash";
    let Some((cp, _turn, service)) = installed_service(ns, &[("WORKSPACE_STORAGE_SIZE", "1Gi")]) else {
        return;
    };
    for (round, delay_ms) in [0u64, 2, 5, 10, 20, 40, 80].into_iter().enumerate() {
        let session = format!("crash-{round}");
        std::thread::scope(|scope| {
            let start = scope.spawn(|| service.try_post("/start", &json!({"session_id": session})));
            std::thread::sleep(Duration::from_millis(delay_ms));
            service.kill();
            let _ = start.join();
        });
        service.restart();
    }
    // Every runtime that survived is whole, and nothing is left without its anchor.
    cp.wait_for("every anchor's runtime to be whole and every orphan swept", || {
        let all = labelled(cp, ns, "app.kubernetes.io/managed-by=openhands-k8s-runtime");
        let anchors: BTreeSet<&str> = all.iter().filter_map(|o| o.strip_prefix("secrets/")).collect();
        let owners: BTreeSet<&str> = all.iter().filter_map(|o| o.split_once('/').map(|(_, n)| n)).collect();
        owners == anchors && all.len() == anchors.len() * 6
    });
    let listed = service.get("/list").body;
    let runtimes = listed["runtimes"].as_array().expect("runtimes");
    let anchors = labelled(cp, ns, "app.kubernetes.io/managed-by=openhands-k8s-runtime")
        .into_iter()
        .filter(|o| o.starts_with("secrets/"))
        .count();
    assert_eq!(runtimes.len(), anchors, "{listed:#}");
    assert_never_forbidden(&service);
}

#[test]
fn watches_expired_by_the_api_server_are_listed_again_and_bookmarks_are_taken() {
    let ns = "watch";
    let Some((cp, _turn, service)) = installed_service(ns, &[]) else {
        return;
    };
    let runtime = service.post("/start", &json!({"session_id": "watched"})).body;
    make_ready(cp, ns, &runtime);
    service.wait_for_status("watched", "running");

    // Changes the service does not watch move etcd on; the restarted API server's watch cache
    // then starts after the service's last resourceVersion.
    for i in 0..20 {
        cp.create(
            &format!("/api/v1/namespaces/{ns}/configmaps"),
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("filler-{i}")}}),
        );
    }
    // A starting API server refuses calls (403) until its RBAC caches are filled: the service
    // rides that out; before the restart, nothing may be refused.
    assert_not_forbidden(&service.log());
    cp.restart_apiserver();
    cp.wait_for("both watches to start over from a fresh list", || {
        let log = service.log();
        log.contains("the pods watch must start over") && log.contains("the secrets watch must start over")
    });
    assert_eq!(
        service.get("/sessions/watched").body["status"],
        "running",
        "nothing lost"
    );

    // Both watches follow the cluster again: an operator pauses through the anchor, and the
    // kubelet's report of the resumed pod arrives.
    let anchor = format!("/api/v1/namespaces/{ns}/secrets/{}", name(&runtime));
    cp.merge_patch(
        &anchor,
        &json!({"metadata": {"annotations": {"openhands.dev/desired-state": "paused"}}}),
    );
    service.wait_for_status("watched", "paused");
    let id = runtime["runtime_id"].clone();
    assert_eq!(service.post("/resume", &json!({"runtime_id": id})).code, 200);
    make_ready(cp, ns, &runtime);
    service.wait_for_status("watched", "running");

    // The API server sends a bookmark to each watch about once a minute.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while !service.log().contains("(bookmark)") {
        assert!(
            std::time::Instant::now() < deadline,
            "no bookmark in 90 s:\n{}",
            service.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(service.get("/sessions/watched").body["status"], "running");
}

#[test]
fn a_rotated_token_keeps_the_service_working_after_the_old_one_is_revoked() {
    let Some(cp) = control_plane() else { return };
    let _turn = cp.turn();
    let ns = "rotation";
    install(cp, ns);
    let binding = |n: &str| {
        cp.create(
            &format!("/api/v1/namespaces/{ns}/secrets"),
            &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": n}}),
        )
    };
    let first = cp.token_for(ns, "openhands-k8s-runtime", Some(&binding("token-binding-1")));
    let service = start_service(cp, ns, &first, &[]);
    assert_eq!(service.post("/start", &json!({"session_id": "before"})).code, 201);

    let second = cp.token_for(ns, "openhands-k8s-runtime", Some(&binding("token-binding-2")));
    let token_file = service_token_file(&service);
    std::fs::write(&token_file, &second).expect("rotate the token");
    assert_eq!(
        cp.delete(&format!("/api/v1/namespaces/{ns}/secrets/token-binding-1"))
            .code,
        200
    );

    let after = service.post("/start", &json!({"session_id": "after"}));
    assert_eq!(after.code, 201, "{:#}\n{}", after.body, service.log());
    let before = service.get("/sessions/before").body;
    let stopped = service.post("/stop", &json!({"runtime_id": before["runtime_id"]}));
    assert_eq!(stopped.code, 200, "{:#}", stopped.body);
}

fn service_token_file(service: &Service) -> std::path::PathBuf {
    service.env("KUBE_TOKEN_FILE").expect("a token file").into()
}

#[test]
fn every_sandbox_pod_passes_baseline_pod_security_and_restricted_refuses_them() {
    let Some(cp) = control_plane() else { return };
    let _turn = cp.turn();
    let ns = "baseline";
    let token = install(cp, ns);
    cp.merge_patch(
        &format!("/api/v1/namespaces/{ns}"),
        &json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "baseline"}}}),
    );
    let service = start_service(
        cp,
        ns,
        &token,
        &[
            ("WORKSPACE_STORAGE_SIZE", "1Gi"),
            ("CA_CERT_SECRET_NAME", "corporate-ca"),
        ],
    );
    let bodies = [
        json!({"session_id": "plain"}),
        // The V1 app server's request, and the SDK's.
        json!({"session_id": "V1AppServer0123456789a", "command": ["/usr/local/bin/openhands-agent-server", "--port", "60000"],
            "working_dir": "/workspace", "run_as_user": 10001, "run_as_group": 10001, "fs_group": 10001,
            "environment": {"LLM_API_KEY": "sk-test"}}),
        json!({"session_id": "agent-server-0f8fad5b-d9cb-469f-a165-70867728950e",
            "command": "/usr/local/bin/openhands-agent-server --port 60000", "working_dir": "/",
            "image_pull_policy": "IfNotPresent"}),
    ];
    for body in &bodies {
        let started = service.post("/start", body);
        assert_eq!(started.code, 201, "{body}: {:#}", started.body);
        assert_eq!(cp.get(&pod_path(ns, &started.body)).code, 200, "{body}: admitted");
    }

    // The same pods in a namespace that enforces `restricted` are refused, and the start leaves
    // nothing behind.
    let restricted = "restricted";
    let token = install(cp, restricted);
    cp.merge_patch(
        &format!("/api/v1/namespaces/{restricted}"),
        &json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}),
    );
    let strict = start_service(cp, restricted, &token, &[]);
    let refused = strict.post("/start", &bodies[1]);
    assert_eq!(refused.code, 502, "{:#}", refused.body);
    let detail = refused.body["detail"].as_str().unwrap_or_default();
    for rule in [
        "allowPrivilegeEscalation",
        "unrestricted capabilities",
        "runAsNonRoot",
        "seccompProfile",
    ] {
        assert!(detail.contains(rule), "{rule} not in {detail}");
    }
    cp.wait_for("the refused start to leave nothing behind", || {
        labelled(cp, restricted, "app.kubernetes.io/managed-by=openhands-k8s-runtime").is_empty()
    });
    assert_never_forbidden(&service);
}

/// A warm pod minted and claimed against the real API server, on the Role as shipped: the
/// claim's guarded anchor patch, the labels taken off and put on, the policy turned into the
/// runtime's, and the Service and Ingress created; the pool mints the next one.
#[test]
fn a_warm_pod_is_minted_and_claimed_on_the_real_api_server() {
    let agents = AgentStandIn::start();
    let port = agents.port.to_string();
    let pools = r#"[{"name": "any", "size": 1, "request": {}}]"#;
    let ns = "warm";
    let Some((cp, _turn, service)) = installed_service(ns, &[("WARM_POOLS", pools), ("AGENT_SERVER_PORT", &port)])
    else {
        return;
    };
    let warm_pods = || {
        cp.items(&format!(
            "/api/v1/namespaces/{ns}/pods?labelSelector=openhands.dev/warm-pool%3Dany"
        ))
    };
    cp.wait_for("a warm pod", || warm_pods().len() == 1);
    let pod = warm_pods()[0]["metadata"]["name"].as_str().unwrap().to_string();
    let mut status = running_status(true);
    status["podIP"] = json!("127.0.0.1");
    cp.set_pod_status(ns, &pod, status);
    service.wait_warm_pool("any", 1, Duration::from_secs(30));

    let claimed = service.post("/start", &json!({"session_id": "Warm-1"}));
    assert_eq!(
        (claimed.code, claimed.body["status"].as_str()),
        (201, Some("running")),
        "{:#}",
        claimed.body
    );
    assert_eq!(name(&claimed.body), pod, "the warm runtime was claimed");
    let init = agents
        .calls()
        .into_iter()
        .find(|c| c.method == "POST" && c.path == "/api/init")
        .expect("an init");
    assert_eq!(init.init_key.as_deref(), claimed.body["session_api_key"].as_str());
    assert_eq!(init.body["session_api_keys"], json!([claimed.body["session_api_key"]]));

    let object = |kind: &str| cp.get(&format!("{}/namespaces/{ns}/{kind}/{pod}", group_of(kind))).body;
    let anchor = object("secrets");
    assert!(anchor["metadata"]["labels"].get("openhands.dev/warm-pool").is_none());
    assert_eq!(anchor["metadata"]["annotations"]["openhands.dev/claimed-from"], "any");
    assert_eq!(anchor["metadata"]["annotations"]["openhands.dev/session-id"], "Warm-1");
    for kind in ["pods", "networkpolicies", "services", "ingresses"] {
        let labels = &object(kind)["metadata"]["labels"];
        assert_eq!(labels["session-id"], "Warm-1", "{kind}");
        assert!(labels.get("openhands.dev/warm-pool").is_none(), "{kind}");
    }
    assert_eq!(
        object("networkpolicies")["spec"]["policyTypes"],
        json!(["Ingress", "Egress"])
    );
    // The runtime is an ordinary one, and the pool has a new warm pod.
    assert_eq!(service.get("/list").body["runtimes"].as_array().unwrap().len(), 1);
    cp.wait_for("the next warm pod", || {
        warm_pods().iter().any(|p| p["metadata"]["name"] != pod.as_str())
    });
    assert_never_forbidden(&service);
}

fn group_of(kind: &str) -> &'static str {
    KINDS
        .iter()
        .find(|(_, k)| *k == kind)
        .map_or("/api/v1", |(group, _)| group)
}
