//! `deploy.yaml`: every document valid against the strict schemas, a hardened Deployment, and a
//! Role that grants exactly what the service calls: nothing missing, nothing extra.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use support::agent_stand_in::AgentStandIn;
use support::deploy::{self, parse_documents, permission_of, role_permissions};
use support::schema::assert_valid;
use support::{FakeKube, Fault, FaultRule, Service};

fn schema_of(document: &Value) -> (&'static str, &'static str) {
    match document["kind"].as_str().unwrap_or_default() {
        "Namespace" => ("namespace-v1.json", "v1"),
        "ServiceAccount" => ("serviceaccount-v1.json", "v1"),
        "Role" => ("role-rbac-v1.json", "rbac.authorization.k8s.io/v1"),
        "RoleBinding" => ("rolebinding-rbac-v1.json", "rbac.authorization.k8s.io/v1"),
        "Secret" => ("secret-v1.json", "v1"),
        "Deployment" => ("deployment-apps-v1.json", "apps/v1"),
        "Service" => ("service-v1.json", "v1"),
        "Ingress" => ("ingress-networking-v1.json", "networking.k8s.io/v1"),
        other => panic!("deploy.yaml holds an unexpected {other}"),
    }
}

#[test]
fn every_document_validates() {
    let documents = deploy::documents();
    let kinds: Vec<&str> = documents.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "Namespace",
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "Secret",
            "Deployment",
            "Service"
        ]
    );
    for document in &documents {
        let (schema, api_version) = schema_of(document);
        assert_valid(schema, document["kind"].as_str().unwrap(), api_version, document);
        if document["kind"] != "Namespace" {
            assert_eq!(document["metadata"]["namespace"], "openhands", "{}", document["kind"]);
        }
    }

    // The commented Ingress is valid once uncommented.
    let text = std::fs::read_to_string(deploy::path()).unwrap();
    let commented: String = text
        .lines()
        .skip_while(|line| !line.starts_with("# ---"))
        .skip(1)
        .map(|line| format!("{}\n", line.strip_prefix("# ").unwrap_or(line.trim_start_matches('#'))))
        .collect();
    let ingress = parse_documents(&commented);
    assert_eq!(ingress.len(), 1);
    assert_valid(
        "ingress-networking-v1.json",
        "Ingress",
        "networking.k8s.io/v1",
        &ingress[0],
    );
    assert_eq!(
        ingress[0]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"],
        "openhands-k8s-runtime"
    );
}

#[test]
fn the_deployment_is_one_hardened_replica() {
    let documents = deploy::documents();
    let find = |kind: &str| documents.iter().find(|d| d["kind"] == kind).unwrap().clone();
    let deployment = find("Deployment");
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 1);
    assert_eq!(spec["strategy"]["type"], "Recreate");
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], find("ServiceAccount")["metadata"]["name"]);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    for field in ["requests", "limits"] {
        assert!(
            container["resources"][field]["cpu"].is_string() && container["resources"][field]["memory"].is_string()
        );
    }
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/liveness");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readiness");
    let key = &container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "API_KEY")
        .unwrap()["valueFrom"]["secretKeyRef"];
    let secret = find("Secret");
    assert_eq!(key["name"], secret["metadata"]["name"]);
    assert!(secret["stringData"][key["key"].as_str().unwrap()].is_string());
    // The sandboxes' NetworkPolicy lets in pods with this label.
    let labels = &spec["template"]["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/name"], "openhands-k8s-runtime");
    assert_eq!(find("Service")["spec"]["selector"], spec["selector"]["matchLabels"]);
    let annotations = &find("Service")["metadata"]["annotations"];
    assert_eq!(
        (
            &annotations["prometheus.io/scrape"],
            &annotations["prometheus.io/port"],
            &annotations["prometheus.io/path"]
        ),
        (&json!("true"), &json!("8080"), &json!("/metrics"))
    );
    let binding = find("RoleBinding");
    assert_eq!(binding["roleRef"]["name"], find("Role")["metadata"]["name"]);
    assert_eq!(
        binding["subjects"][0]["name"],
        find("ServiceAccount")["metadata"]["name"]
    );
}

/// Runs every kind of call the service makes: start (with a workspace volume and a network
/// policy), a create whose answer is lost for each kind (read back), a warm pod minted and
/// claimed, pause, resume, stop, a restart (recovery), watches, the orphan sweep, and
/// `/image_exists` (pull secrets).
#[test]
fn the_role_grants_exactly_what_the_service_calls() {
    let fake = FakeKube::builder().pod_ip("127.0.0.1").start();
    let agents = AgentStandIn::start();
    let port = agents.port.to_string();
    let service = Service::start(
        &fake,
        &[
            ("WORKSPACE_STORAGE_SIZE", "1Gi"),
            ("ORPHAN_SWEEP_INTERVAL", "1s"),
            ("IMAGE_PULL_SECRETS", "regcred"),
            ("INSECURE_REGISTRIES", "127.0.0.1:9"),
            ("AGENT_SERVER_PORT", &port),
            ("WARM_POOLS", r#"[{"name": "any", "size": 1, "request": {}}]"#),
        ],
    );
    service.wait_warm_pool("any", 1, Duration::from_secs(10));
    let claimed = service.post("/start", &json!({"session_id": "warm"})).body;
    assert_eq!(claimed["status"], "running", "claimed: {claimed:#}");
    service.wait_warm_pool("any", 1, Duration::from_secs(10));
    for kind in [
        "/secrets",
        "/persistentvolumeclaims",
        "/networkpolicies",
        "/pods",
        "/services",
        "/ingresses",
    ] {
        fake.add_fault(
            FaultRule::new(Fault::ServerTimeout { retry_after_secs: 0 })
                .on("POST", kind)
                .after_commit(),
        );
    }
    let runtime = service.post("/start", &json!({"session_id": "rbac"})).body;
    service.wait_for_status("rbac", "running");
    service.post("/pause", &json!({"runtime_id": runtime["runtime_id"]}));
    service.post("/resume", &json!({"runtime_id": runtime["runtime_id"]}));
    service.wait_for_status("rbac", "running");
    service.restart();
    // A pod deleted behind the service's back is recreated, and that is recorded as an Event.
    let pod = format!("runtime-{}", runtime["runtime_id"].as_str().unwrap());
    assert!(fake.delete_by_operator("pods", &pod));
    assert!(fake.wait_for(Duration::from_secs(10), |view| !view.objects("events").is_empty()));
    let sweeps = fake.list_count("/secrets");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fake.list_count("/secrets") < sweeps + 1 {
        assert!(std::time::Instant::now() < deadline, "a sweep ran");
        std::thread::sleep(Duration::from_millis(25));
    }
    service.post("/stop", &json!({"runtime_id": runtime["runtime_id"]}));
    // Reads the pull secret; the registry itself is not there.
    assert_eq!(service.get("/image_exists?image=127.0.0.1:9/team/agent:1").code, 502);

    let called: BTreeSet<_> = fake.requests().iter().filter_map(permission_of).collect();
    let granted = role_permissions();
    let missing: Vec<_> = called.difference(&granted).collect();
    let extra: Vec<_> = granted.difference(&called).collect();
    assert!(missing.is_empty(), "called but not granted: {missing:?}");
    assert!(extra.is_empty(), "granted but never called: {extra:?}");
}
