//! Crash-safe state (API.md §6, §7): the cluster is the store. The service is killed at every
//! Kubernetes write of every operation, restarted, and must converge; runtimes survive
//! restarts; watches recover; changes made behind its back are followed; orphans are swept.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use support::schema::{assert_valid, example};
use support::{FakeKube, Fault, FaultRule, Service};

const WAIT: Duration = Duration::from_secs(20);
/// A crash test's service: a workspace volume (so its PVC has crash points too) and a quick sweep.
const CONFIG: &[(&str, &str)] = &[("WORKSPACE_STORAGE_SIZE", "1Gi"), ("ORPHAN_SWEEP_INTERVAL", "1s")];
const KINDS: [&str; 6] = [
    "secrets",
    "pods",
    "services",
    "ingresses",
    "persistentvolumeclaims",
    "networkpolicies",
];

fn name_of(runtime: &Value) -> String {
    format!("runtime-{}", runtime["runtime_id"].as_str().unwrap())
}

/// Waits until every labelled object in the fake belongs to a runtime whose anchor exists.
fn assert_no_orphans(fake: &FakeKube) {
    let settled = fake.wait_for(WAIT, |cluster| {
        let anchors: BTreeSet<String> = cluster
            .objects("secrets")
            .iter()
            .filter_map(|s| s["metadata"]["labels"]["runtime-id"].as_str().map(str::to_string))
            .collect();
        KINDS.iter().all(|kind| {
            cluster.objects(kind).iter().all(|o| {
                o["metadata"]["labels"]["runtime-id"]
                    .as_str()
                    .is_none_or(|id| anchors.contains(id))
            })
        })
    });
    assert!(
        settled,
        "labelled objects without an anchor remain: {:?}",
        fake.object_names()
    );
}

/// Every object of a runtime exists (the pod only when it should run).
fn assert_complete(fake: &FakeKube, name: &str, with_pod: bool) {
    let complete = fake.wait_for(WAIT, |cluster| {
        [
            "secrets",
            "services",
            "ingresses",
            "persistentvolumeclaims",
            "networkpolicies",
        ]
        .iter()
        .all(|k| cluster.object(k, name).is_some())
            && cluster.object("pods", name).is_some() == with_pod
    });
    assert!(complete, "{name} is not complete: {:?}", fake.object_names());
}

#[derive(Clone, Copy, Debug)]
enum Operation {
    Start,
    Pause,
    Resume,
    Stop,
}

/// One Kubernetes write of an operation, after which the service dies.
struct CrashPoint {
    name: &'static str,
    operation: Operation,
    method: &'static str,
    path: &'static str,
}

const fn point(name: &'static str, operation: Operation, method: &'static str, path: &'static str) -> CrashPoint {
    CrashPoint {
        name,
        operation,
        method,
        path,
    }
}

/// Kills the service right after the API server committed the write of `point`, restarts it,
/// lets the client repeat its call once, and returns the runtime's session as the client sees it.
fn crash_at(point: &CrashPoint) {
    let fake = FakeKube::start();
    let service = Service::start(&fake, CONFIG);
    let session = "crashy";
    let body = json!({"session_id": session, "image": "agent:7", "command": "serve --port 60000",
        "environment": {"LLM_API_KEY": "sk-crash"}});
    let mut runtime = Value::Null;
    if !matches!(point.operation, Operation::Start) {
        runtime = service.post("/start", &body).body;
        service.wait_for_status(session, "running");
    }
    if matches!(point.operation, Operation::Resume) {
        service.post("/pause", &json!({"runtime_id": runtime["runtime_id"]}));
        assert!(fake.wait_for(WAIT, |c| c.objects("pods").is_empty()));
    }
    let (path, call) = match point.operation {
        Operation::Start => ("/start", body.clone()),
        Operation::Pause => ("/pause", json!({"runtime_id": runtime["runtime_id"]})),
        Operation::Resume => ("/resume", json!({"runtime_id": runtime["runtime_id"]})),
        Operation::Stop => ("/stop", json!({"runtime_id": runtime["runtime_id"]})),
    };
    fake.add_fault(FaultRule::new(Fault::Hang).on(point.method, point.path).after_commit());
    std::thread::scope(|scope| {
        let caller = scope.spawn(|| service.try_post(path, &call));
        let hung = fake.wait_for_request(WAIT, |r| r.code == 0);
        assert!(hung, "{}: the write was never made", point.name);
        service.kill();
        fake.release_hung();
        assert_eq!(caller.join().unwrap(), None, "{}: the client got no answer", point.name);
    });
    service.restart();

    // The client repeats its call once.
    let repeated = service.post(path, &call);
    match point.operation {
        Operation::Start | Operation::Resume => {
            assert_eq!(repeated.code, 200, "{}: {:#}", point.name, repeated.body);
            let running = service.wait_for_status(session, "running");
            if let Operation::Resume = point.operation {
                assert_eq!(running["session_api_key"], runtime["session_api_key"], "{}", point.name);
            }
            assert_complete(&fake, &name_of(&running), true);
        }
        Operation::Pause => {
            assert_eq!(
                (repeated.code, repeated.body["status"].as_str()),
                (200, Some("paused")),
                "{}",
                point.name
            );
            assert_complete(&fake, &name_of(&runtime), false);
        }
        Operation::Stop => {
            assert_eq!(
                repeated.code, 404,
                "{}: the runtime is gone: {:#}",
                point.name, repeated.body
            );
            assert_eq!(service.get(&format!("/sessions/{session}")).code, 404);
            let name = name_of(&runtime);
            assert!(
                fake.wait_for(WAIT, |c| KINDS.iter().all(|k| c.object(k, &name).is_none())),
                "{}: left {:?}",
                point.name,
                fake.object_names()
            );
        }
    }
    assert_no_orphans(&fake);
    assert!(fake.schema_violations().is_empty());
}

#[test]
fn a_crash_after_any_write_of_start_converges() {
    for point in [
        point(
            "start: after creating the anchor Secret",
            Operation::Start,
            "POST",
            "/secrets",
        ),
        point(
            "start: after creating the workspace PVC",
            Operation::Start,
            "POST",
            "/persistentvolumeclaims",
        ),
        point(
            "start: after creating the NetworkPolicy",
            Operation::Start,
            "POST",
            "/networkpolicies",
        ),
        point("start: after creating the Pod", Operation::Start, "POST", "/pods"),
        point(
            "start: after creating the Service",
            Operation::Start,
            "POST",
            "/services",
        ),
        point(
            "start: after creating the Ingress",
            Operation::Start,
            "POST",
            "/ingresses",
        ),
    ] {
        crash_at(&point);
    }
}

#[test]
fn a_crash_after_any_write_of_pause_or_resume_converges() {
    for point in [
        point(
            "pause: after recording the desired state",
            Operation::Pause,
            "PATCH",
            "/secrets/",
        ),
        point("pause: after deleting the Pod", Operation::Pause, "DELETE", "/pods/"),
        point(
            "resume: after recording the desired state",
            Operation::Resume,
            "PATCH",
            "/secrets/",
        ),
        point("resume: after creating the Pod", Operation::Resume, "POST", "/pods"),
    ] {
        crash_at(&point);
    }
}

#[test]
fn a_crash_after_any_write_of_stop_converges() {
    for point in [
        point(
            "stop: after deleting the anchor Secret",
            Operation::Stop,
            "DELETE",
            "/secrets/",
        ),
        point("stop: after deleting the Pod", Operation::Stop, "DELETE", "/pods/"),
        point(
            "stop: after deleting the workspace PVC",
            Operation::Stop,
            "DELETE",
            "/persistentvolumeclaims/",
        ),
        point(
            "stop: after deleting the NetworkPolicy",
            Operation::Stop,
            "DELETE",
            "/networkpolicies/",
        ),
        point(
            "stop: after deleting the Service",
            Operation::Stop,
            "DELETE",
            "/services/",
        ),
        point(
            "stop: after deleting the Ingress",
            Operation::Stop,
            "DELETE",
            "/ingresses/",
        ),
    ] {
        crash_at(&point);
    }
}

#[test]
fn runtimes_survive_a_restart_running_and_paused() {
    let fake = FakeKube::start();
    let service = Service::start(&fake, &[]);
    let mut before = Vec::new();
    for (session, env) in [("one", "a"), ("two", "b"), ("three", "c")] {
        let body = json!({"session_id": session, "image": format!("agent:{env}"), "command": ["/bin/agent", "--port", "60000"],
            "environment": {"SECRET_VALUE": format!("value-{env}")}});
        service.post("/start", &body);
    }
    for session in ["one", "two", "three"] {
        service.wait_for_status(session, "running");
    }
    let paused_id = service.get("/sessions/two").body["runtime_id"].clone();
    let paused_name = format!("runtime-{}", paused_id.as_str().unwrap());
    let original_pod = fake.object("pods", &paused_name).unwrap();
    service.post("/pause", &json!({"runtime_id": paused_id}));
    assert!(fake.wait_for(WAIT, |c| c.object("pods", &paused_name).is_none()));
    for session in ["one", "two", "three"] {
        before.push(service.get(&format!("/sessions/{session}")).body);
    }
    let pod_uids = |fake: &FakeKube| -> BTreeSet<String> {
        fake.objects("pods")
            .iter()
            .map(|p| p["metadata"]["uid"].as_str().unwrap().to_string())
            .collect()
    };
    let uids_before = pod_uids(&fake);
    let pods_created = fake.count("POST", "/pods");

    service.restart();
    for runtime in &before {
        let after = service
            .get(&format!("/sessions/{}", runtime["session_id"].as_str().unwrap()))
            .body;
        for field in ["runtime_id", "session_api_key", "status", "created_at", "image", "url"] {
            assert_eq!(after[field], runtime[field], "{field} of {}", runtime["session_id"]);
        }
    }
    assert_eq!(
        service.get("/list?include_paused=true").body["runtimes"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(pod_uids(&fake), uids_before, "running pods are not recreated");
    assert_eq!(fake.count("POST", "/pods"), pods_created);

    let resumed = service.post("/resume", &json!({"runtime_id": paused_id}));
    assert_eq!(resumed.body["session_api_key"], before[1]["session_api_key"]);
    service.wait_for_status("two", "running");
    let recreated = fake.object("pods", &paused_name).unwrap();
    assert_eq!(
        recreated["spec"]["containers"], original_pod["spec"]["containers"],
        "the original image, command and environment"
    );
}

#[test]
fn an_anchor_deleted_behind_the_services_back_removes_the_runtime() {
    let fake = FakeKube::start();
    let service = Service::start(&fake, &[]);
    let runtime = service.post("/start", &json!({"session_id": "doomed"})).body;
    let kept = service.post("/start", &json!({"session_id": "kept"})).body;
    service.wait_for_status("doomed", "running");
    assert!(fake.delete_by_operator("secrets", &name_of(&runtime)));
    let gone = std::time::Instant::now();
    while service.get("/sessions/doomed").code != 404 {
        assert!(gone.elapsed() < WAIT, "the runtime is still served");
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(
        service
            .get(&format!("/runtime/{}", runtime["runtime_id"].as_str().unwrap()))
            .code,
        404
    );
    let name = name_of(&runtime);
    assert!(
        fake.wait_for(WAIT, |c| KINDS.iter().all(|k| c.object(k, &name).is_none())),
        "{:?}",
        fake.object_names()
    );
    assert_eq!(service.get("/sessions/kept").body["runtime_id"], kept["runtime_id"]);
}

#[test]
fn fifty_concurrent_starts_across_ten_sessions_make_ten_runtimes() {
    let fake = FakeKube::start();
    fake.set_latency(Duration::from_millis(5));
    let service = Service::start(&fake, &[]);
    let answers: Vec<(String, u16, String)> = std::thread::scope(|scope| {
        let calls: Vec<_> = (0..50)
            .map(|i| {
                let service = &service;
                scope.spawn(move || {
                    let session = format!("session-{}", i % 10);
                    let answer = service.post("/start", &json!({"session_id": session}));
                    (
                        session,
                        answer.code,
                        answer.body["runtime_id"].as_str().unwrap_or_default().to_string(),
                    )
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    assert_eq!(
        answers.iter().filter(|(_, code, _)| *code == 201).count(),
        10,
        "{answers:?}"
    );
    assert!(
        answers.iter().all(|(_, code, _)| *code == 200 || *code == 201),
        "{answers:?}"
    );
    for session in 0..10 {
        let ids: BTreeSet<&str> = answers
            .iter()
            .filter(|(s, _, _)| *s == format!("session-{session}"))
            .map(|(_, _, id)| id.as_str())
            .collect();
        assert_eq!(ids.len(), 1, "session-{session}: {ids:?}");
    }
    assert_eq!(fake.objects("secrets").len(), 10);
    assert_eq!(fake.objects("pods").len(), 10);
}

#[test]
fn a_watch_cut_mid_stream_loses_no_update() {
    let fake = FakeKube::start();
    let service = Service::start(&fake, &[]);
    let runtime = service.post("/start", &json!({"session_id": "cut"})).body;
    service.wait_for_status("cut", "running");
    let watches = fake.watch_count("/pods");
    fake.break_watches();
    assert!(fake.set_pod_status(&name_of(&runtime), example("podstatus-crashloopbackoff.json")));
    let seen = service.wait_for_status("cut", "error");
    assert_eq!(seen["pod_status"], "crashloopbackoff");
    assert!(fake.watch_count("/pods") > watches, "the watch was resumed");
}

/// The kubelet reports a pod that is ready (or unschedulable) once and then leaves it alone.
/// A report the watch delivers while `/start` still creates the pod's Service must not be
/// overwritten by the older answer to the pod's create.
#[test]
fn a_pod_that_settles_while_its_start_is_in_flight_is_seen_as_it_is() {
    let fake = FakeKube::start();
    let service = Service::start(&fake, &[]);
    fake.add_fault(FaultRule::new(Fault::Hang).on("POST", "/services").after_commit());
    std::thread::scope(|scope| {
        let start = scope.spawn(|| service.post("/start", &json!({"session_id": "quick"})));
        let delivered = fake.wait_for(WAIT, |cluster| {
            cluster.objects("pods").iter().any(|pod| {
                let ready = pod["status"]["conditions"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
                let version = pod["metadata"]["resourceVersion"].as_str().and_then(|v| v.parse().ok());
                ready && version.is_some_and(|v| cluster.watch_sent("pods", v))
            })
        });
        assert!(delivered, "the pod became ready and the pod watch sent it");
        fake.release_hung();
        let answer = start.join().unwrap();
        assert_eq!(answer.code, 201, "{:#}", answer.body);
    });
    let running = service.wait_for_status("quick", "running");
    assert_eq!(running["pod_status"], "ready");
}

#[test]
fn a_gone_resource_version_is_listed_again_without_losing_an_update() {
    let fake = FakeKube::start();
    let service = Service::start(&fake, &[]);
    let runtime = service.post("/start", &json!({"session_id": "gone"})).body;
    let other = service.post("/start", &json!({"session_id": "other"})).body;
    service.wait_for_status("gone", "running");
    let (pod_lists, anchor_lists) = (fake.list_count("/pods"), fake.list_count("/secrets"));

    // While no watch runs, history is compacted and the cluster changes.
    // The change before the compaction is beyond the service's watch: only a new list shows it.
    fake.hold_watches(true);
    assert!(fake.set_pod_status(&name_of(&runtime), example("podstatus-crashloopbackoff.json")));
    fake.compact();
    assert!(fake.delete_by_operator("secrets", &name_of(&other)));
    fake.hold_watches(false);

    service.wait_for_status("gone", "error");
    let deadline = std::time::Instant::now() + WAIT;
    while service.get("/sessions/other").code != 404 {
        assert!(
            std::time::Instant::now() < deadline,
            "the deleted anchor was never noticed"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(
        fake.list_count("/pods") > pod_lists,
        "the pods were listed again after the 410"
    );
    assert!(
        fake.list_count("/secrets") > anchor_lists,
        "the anchors were listed again after the 410"
    );
}

#[test]
fn orphans_are_swept_at_startup_and_periodically_but_never_a_start_in_flight() {
    let fake = FakeKube::start();
    let orphan = |name: &str| {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": {
            "app.kubernetes.io/managed-by": "openhands-k8s-runtime", "runtime-id": name.trim_start_matches("runtime-")}},
            "spec": {"ports": [{"name": "agent", "port": 60000}]}})
    };
    fake.insert("services", &orphan("runtime-0000000000000000000000000000dead"));
    let unrelated = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "someone-elses"}, "spec": {"ports": [{"port": 80}]}});
    fake.insert("services", &unrelated);
    let service = Service::start(&fake, &[("ORPHAN_SWEEP_INTERVAL", "1s")]);
    assert!(
        fake.object("services", "runtime-0000000000000000000000000000dead")
            .is_none(),
        "swept before ready"
    );

    fake.insert("services", &orphan("runtime-0000000000000000000000000000beef"));
    assert!(fake.wait_for(WAIT, |c| {
        c.object("services", "runtime-0000000000000000000000000000beef")
            .is_none()
    }));
    assert!(
        fake.object("services", "someone-elses").is_some(),
        "only the service's own objects are swept"
    );

    // A start whose Service creation hangs is in flight through several sweeps.
    fake.add_fault(FaultRule::new(Fault::Hang).on("POST", "/services").after_commit());
    std::thread::scope(|scope| {
        let start = scope.spawn(|| service.post("/start", &json!({"session_id": "slow"})));
        assert!(fake.wait_for_request(WAIT, |r| r.code == 0));
        let lists = fake.list_count("/secrets");
        let deadline = std::time::Instant::now() + WAIT;
        while fake.list_count("/secrets") < lists + 2 {
            assert!(std::time::Instant::now() < deadline, "two sweeps ran");
            std::thread::sleep(Duration::from_millis(25));
        }
        assert_eq!(
            fake.objects("pods").len(),
            1,
            "the pod of the start in flight was not swept"
        );
        fake.release_hung();
        let answer = start.join().unwrap();
        assert_eq!(answer.code, 201, "{:#}", answer.body);
        assert_complete_without_pvc(&fake, &name_of(&answer.body));
    });
}

fn assert_complete_without_pvc(fake: &FakeKube, name: &str) {
    for kind in ["secrets", "pods", "services", "ingresses"] {
        assert!(fake.object(kind, name).is_some(), "{kind} {name} is missing");
    }
}

#[test]
fn the_workspace_volume_outlives_pods_but_not_the_runtime() {
    let fake = FakeKube::start();
    let service = Service::start(
        &fake,
        &[
            ("WORKSPACE_STORAGE_SIZE", "5Gi"),
            ("WORKSPACE_STORAGE_CLASS", "local-path"),
            ("WORKSPACE_MOUNT_PATH", "/data"),
        ],
    );
    let runtime = service.post("/start", &json!({"session_id": "disk"})).body;
    let name = name_of(&runtime);
    let claim = fake.object("persistentvolumeclaims", &name).unwrap();
    assert_valid("persistentvolumeclaim-v1.json", "PersistentVolumeClaim", "v1", &claim);
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "5Gi");
    assert_eq!(claim["spec"]["storageClassName"], "local-path");
    assert_eq!(claim["metadata"]["ownerReferences"][0]["name"], name);
    let mounted = |pod: &Value| {
        let volume = pod["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["persistentVolumeClaim"]["claimName"] == name.as_str())
            .cloned();
        let volume = volume.expect("the claim is a volume of the pod");
        let mounts = pod["spec"]["containers"][0]["volumeMounts"].as_array().unwrap();
        mounts
            .iter()
            .any(|m| m["name"] == volume["name"] && m["mountPath"] == "/data")
    };
    assert!(mounted(&fake.object("pods", &name).unwrap()));
    service.wait_for_status("disk", "running");

    service.post("/pause", &json!({"runtime_id": runtime["runtime_id"]}));
    assert!(fake.wait_for(WAIT, |c| c.object("pods", &name).is_none()));
    service.post("/resume", &json!({"runtime_id": runtime["runtime_id"]}));
    service.wait_for_status("disk", "running");
    assert!(fake.delete_by_operator("pods", &name));
    let replaced = fake.wait_for_object("pods", &name, WAIT, |p| {
        p["metadata"]["deletionTimestamp"].is_null() && mounted(p)
    });
    assert!(replaced.is_some(), "the replacement pod mounts the same claim");
    let kept = fake.object("persistentvolumeclaims", &name).unwrap();
    assert_eq!(
        kept["metadata"]["uid"], claim["metadata"]["uid"],
        "one claim through pause, resume and replacement"
    );

    service.post("/stop", &json!({"runtime_id": runtime["runtime_id"]}));
    assert!(fake.wait_for(WAIT, |c| c.objects("persistentvolumeclaims").is_empty()));
}

#[test]
fn nothing_is_served_before_the_runtimes_are_loaded() {
    let fake = FakeKube::start();
    fake.add_fault(FaultRule::new(Fault::Hang).on("GET", "/secrets"));
    let service = Service::start_unready(&fake, &[]);
    assert!(
        fake.wait_for_request(WAIT, |r| r.code == 0),
        "recovery lists the anchors"
    );
    let health = service.call_with_key("GET", "/health", None, None);
    assert_eq!(health.code, 200);
    let readiness = service.call_with_key("GET", "/readiness", None, None);
    assert_eq!(
        (readiness.code, readiness.body["error"].as_str()),
        (503, Some("not_ready"))
    );
    for (method, path) in [("GET", "/sessions/x"), ("GET", "/list"), ("POST", "/start")] {
        let answer = service.call(
            method,
            path,
            (method == "POST").then(|| json!({"session_id": "x"})).as_ref(),
        );
        assert_eq!(
            (answer.code, answer.body["error"].as_str()),
            (503, Some("not_ready")),
            "{method} {path}"
        );
        assert!(answer.header("Retry-After").is_some());
    }
    fake.release_hung();
    service.wait_ready();
    assert_eq!(service.post("/start", &json!({"session_id": "x"})).code, 201);
}

#[test]
fn an_operator_can_pause_and_resume_through_the_anchor() {
    let fake = FakeKube::start();
    let service = Service::start(&fake, &[]);
    let runtime = service.post("/start", &json!({"session_id": "ops"})).body;
    let name = name_of(&runtime);
    service.wait_for_status("ops", "running");
    let annotate = |state: &str| json!({"metadata": {"annotations": {"openhands.dev/desired-state": state}}});
    fake.merge_patch("secrets", &name, &annotate("paused"));
    service.wait_for_status("ops", "paused");
    assert!(fake.wait_for(WAIT, |c| c.object("pods", &name).is_none()));
    fake.merge_patch("secrets", &name, &annotate("running"));
    let running = service.wait_for_status("ops", "running");
    assert_eq!(running["session_api_key"], runtime["session_api_key"]);
}
