//! The Kubernetes objects of a runtime (API.md §5), for the `/start` bodies the three real
//! clients send, as the fake API server received them and validated against the schemas.

mod support;

use serde_json::{Value, json};
use support::schema::assert_valid;
use support::{FakeKube, Service};

struct Objects {
    anchor: Value,
    pod: Value,
    service: Value,
    ingress: Value,
}

fn start(fake: &FakeKube, service: &Service, body: Value) -> (Value, Objects) {
    let answer = service.post("/start", &body);
    assert_eq!(answer.code, 201, "{:#}", answer.body);
    let name = format!("runtime-{}", answer.body["runtime_id"].as_str().unwrap());
    let get = |resource: &str| {
        fake.object(resource, &name)
            .unwrap_or_else(|| panic!("no {resource} {name}"))
    };
    let objects = Objects {
        anchor: get("secrets"),
        pod: get("pods"),
        service: get("services"),
        ingress: get("ingresses"),
    };
    assert_valid("secret-v1.json", "Secret", "v1", &objects.anchor);
    assert_valid("pod-v1.json", "Pod", "v1", &objects.pod);
    assert_valid("service-v1.json", "Service", "v1", &objects.service);
    assert_valid(
        "ingress-networking-v1.json",
        "Ingress",
        "networking.k8s.io/v1",
        &objects.ingress,
    );
    assert!(fake.schema_violations().is_empty());
    (answer.body, objects)
}

fn container(pod: &Value) -> &Value {
    &pod["spec"]["containers"][0]
}

fn env_names(pod: &Value) -> Vec<String> {
    container(pod)["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

fn env_entry<'a>(pod: &'a Value, name: &str) -> &'a Value {
    container(pod)["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no {name}"))
}

#[test]
fn the_v1_app_server_body() {
    let fake = FakeKube::start();
    let service = Service::start(&fake, &[("RUNTIME_CLASS_MAP", r#"{"sysbox-runc": ""}"#)]);
    let body = json!({
        "image": "ghcr.io/openhands/agent-server:1.34.0-python",
        "command": ["/usr/local/bin/openhands-agent-server", "--port", "60000"],
        "working_dir": "/workspace",
        "environment": {"OH_CONVERSATIONS_PATH": "/workspace/conversations"},
        "session_id": "4Xk9pQ2mN7vR1tY6wZ3bC8",
        "resource_factor": 1,
        "run_as_user": 10001, "run_as_group": 10001, "fs_group": 10001,
        "runtime_class": "sysbox-runc",
    });
    let (runtime, objects) = start(&fake, &service, body);
    let agent = container(&objects.pod);
    assert_eq!(agent["name"], "agent");
    assert_eq!(
        agent["command"],
        json!(["/usr/local/bin/openhands-agent-server", "--port", "60000"]),
        "exec form, not args"
    );
    assert!(agent.get("args").is_none());
    assert_eq!(agent["workingDir"], "/workspace");
    assert_eq!(agent["imagePullPolicy"], "IfNotPresent");
    assert_eq!(
        objects.pod["spec"]["securityContext"],
        json!({"runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001})
    );
    assert!(
        objects.pod["spec"].get("runtimeClassName").is_none(),
        "mapped to none by RUNTIME_CLASS_MAP"
    );
    assert_eq!(
        agent["resources"],
        json!({"requests": {"cpu": "1000m", "memory": "2048Mi"}, "limits": {"cpu": "2000m", "memory": "4096Mi"}})
    );
    assert_eq!(
        agent["startupProbe"],
        json!({"httpGet": {"path": "/alive", "port": 60000}, "periodSeconds": 1, "failureThreshold": 300})
    );
    assert_eq!(
        agent["readinessProbe"],
        json!({"httpGet": {"path": "/alive", "port": 60000}, "periodSeconds": 5, "failureThreshold": 3})
    );
    let ports: Vec<(&str, u64)> = agent["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["containerPort"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        ports,
        [
            ("agent", 60000),
            ("vscode", 60001),
            ("worker1", 12000),
            ("worker2", 12001)
        ]
    );
    let spec = &objects.pod["spec"];
    assert_eq!(
        (
            spec["enableServiceLinks"].as_bool(),
            spec["automountServiceAccountToken"].as_bool()
        ),
        (Some(false), Some(false))
    );
    assert_eq!(spec["restartPolicy"], "Always");
    assert_eq!(runtime["url"], "https://4xk9pq2mn7vr1ty6wz3bc8.sandbox.test");
}

#[test]
fn the_sdk_remote_workspace_body() {
    let fake = FakeKube::start();
    let service = Service::start(&fake, &[]);
    let session = "agent-server-0b9f8e1c-3f6a-4b7d-9c2e-5a1d8f3e6b4c";
    assert_eq!(session.len(), 49);
    let body = json!({
        "image": "ghcr.io/openhands/agent-server:latest-python",
        "command": "/usr/local/bin/openhands-agent-server --port 60000",
        "working_dir": "/",
        "environment": {},
        "session_id": session,
        "resource_factor": 1,
        "runtime_class": "sysbox-runc",
        "image_pull_policy": "Always",
    });
    let (_, objects) = start(&fake, &service, body);
    let agent = container(&objects.pod);
    assert_eq!(
        agent["command"],
        json!(["/bin/bash", "-c", "/usr/local/bin/openhands-agent-server --port 60000"])
    );
    assert_eq!(agent["workingDir"], "/");
    assert_eq!(agent["imagePullPolicy"], "Always");
    assert_eq!(
        objects.pod["spec"]["runtimeClassName"], "sysbox-runc",
        "passed through without a map entry"
    );
    let hosts: Vec<&str> = objects.ingress["spec"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts[2], format!("work-1-{session}.sandbox.test"));
    assert!(hosts.iter().all(|h| h.split('.').next().unwrap().len() <= 63));
}

#[test]
fn the_v0_runtime_body_and_the_image_entrypoint() {
    let fake = FakeKube::start();
    let service = Service::start(&fake, &[("RUNTIME_CLASS", "gvisor")]);
    let body = json!({
        "image": "registry.internal/openhands/runtime:0.59",
        "command": ["/openhands/micromamba/bin/micromamba", "run", "-n", "openhands", "poetry", "run", "python", "-u", "-m", "openhands.runtime.action_execution_server", "60000"],
        "working_dir": "/openhands/code/",
        "environment": {"DEBUG": "false"},
        "session_id": "8c1f0e2d9b3a47c6a5d4e3f2b1a09876",
    });
    let (_, objects) = start(&fake, &service, body);
    let agent = container(&objects.pod);
    assert_eq!(agent["command"].as_array().unwrap().len(), 11);
    assert_eq!(agent["workingDir"], "/openhands/code/");
    assert_eq!(
        objects.pod["spec"]["runtimeClassName"], "gvisor",
        "RUNTIME_CLASS when the request names none"
    );

    for (i, command) in [json!(null), json!(""), json!([])].into_iter().enumerate() {
        let session = format!("entry{i}");
        let (_, objects) = start(&fake, &service, json!({"session_id": session, "command": command}));
        let agent = container(&objects.pod);
        assert!(agent.get("command").is_none(), "{command}: the image's entrypoint runs");
        assert_eq!(agent["args"], json!(["--port", "60000"]), "{command}");
        assert_eq!(agent["image"], "ghcr.io/openhands/agent-server:latest-python");
    }
}

#[test]
fn environment_order_overrides_and_secrets() {
    let fake = FakeKube::start();
    let service = Service::start(
        &fake,
        &[
            (
                "SANDBOX_ENV",
                r#"{"LITELLM_LOCAL_MODEL_COST_MAP": "True", "HTTPS_PROXY": "http://proxy:3128"}"#,
            ),
            ("APP_SERVER_URL", "http://openhands-app.openhands.svc:3000"),
            ("APP_SERVER_PUBLIC_URL", "https://openhands.example.com"),
        ],
    );
    let body = json!({"session_id": "env", "environment": {
        "OH_RUNTIME_ID": "spoofed", "SESSION_API_KEY": "spoofed", "LLM_API_KEY": "sk-secret",
        "OH_ALLOW_CORS_ORIGINS_0": "https://mine.example", "OH_WEBHOOKS_0_BASE_URL": "https://public.example/api/v1/webhooks",
        "LITELLM_LOCAL_MODEL_COST_MAP": "False", "ZED": "last"}});
    let (runtime, objects) = start(&fake, &service, body);
    let pod = &objects.pod;
    assert_eq!(
        env_names(pod),
        [
            "OH_SESSION_API_KEYS_0",
            "SESSION_API_KEY",
            "OH_RUNTIME_ID",
            "OH_VSCODE_PORT",
            "WORKER_1",
            "WORKER_2",
            "OH_RUNTIME_IDLE_TIMEOUT_SECONDS",
            "HTTPS_PROXY",
            "LITELLM_LOCAL_MODEL_COST_MAP",
            "LLM_API_KEY",
            "OH_ALLOW_CORS_ORIGINS_0",
            "ZED",
            "OH_WEBHOOKS_0_BASE_URL",
        ]
    );
    let name = format!("runtime-{}", runtime["runtime_id"].as_str().unwrap());
    for key_variable in ["OH_SESSION_API_KEYS_0", "SESSION_API_KEY"] {
        assert_eq!(
            env_entry(pod, key_variable)["valueFrom"]["secretKeyRef"],
            json!({"name": name, "key": "session_api_key"})
        );
    }
    assert_eq!(env_entry(pod, "OH_RUNTIME_ID")["value"], runtime["runtime_id"]);
    assert_eq!(
        env_entry(pod, "OH_WEBHOOKS_0_BASE_URL")["value"],
        "http://openhands-app.openhands.svc:3000/api/v1/webhooks"
    );
    assert_eq!(env_entry(pod, "HTTPS_PROXY")["value"], "http://proxy:3128");
    // The agent is told the idle limit (IDLE_PAUSE_AFTER, 30 minutes by default).
    assert_eq!(env_entry(pod, "OH_RUNTIME_IDLE_TIMEOUT_SECONDS")["value"], "1800");
    for from_request in [
        "LITELLM_LOCAL_MODEL_COST_MAP",
        "LLM_API_KEY",
        "OH_ALLOW_CORS_ORIGINS_0",
        "ZED",
    ] {
        let entry = env_entry(pod, from_request);
        assert!(entry.get("value").is_none(), "{from_request} must not be plain text");
        assert_eq!(entry["valueFrom"]["secretKeyRef"]["name"], name);
    }
    let pod_text = pod.to_string();
    for secret in ["sk-secret", "spoofed", runtime["session_api_key"].as_str().unwrap()] {
        assert!(!pod_text.contains(secret), "the pod spec shows {secret}");
    }
    // The anchor holds what the pod refers to.
    use base64::Engine;
    let data = &objects.anchor["data"];
    let decode = |key: &str| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(data[key].as_str().unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(decode("session_api_key"), runtime["session_api_key"].as_str().unwrap());
    let llm_key = env_entry(pod, "LLM_API_KEY")["valueFrom"]["secretKeyRef"]["key"]
        .as_str()
        .unwrap();
    assert_eq!(decode(llm_key), "sk-secret");

    // Without APP_SERVER_URL the request's webhook address is used, and unset variables are
    // absent; the request's own idle limit is the agent's.
    let plain = Service::start(&fake, &[("IDLE_PAUSE_AFTER", "10m")]);
    let (_, objects) = start(
        &fake,
        &plain,
        json!({"session_id": "env2", "environment": {"OH_WEBHOOKS_0_BASE_URL": "https://public.example",
            "OH_RUNTIME_IDLE_TIMEOUT_SECONDS": "7200"}}),
    );
    assert_eq!(
        env_names(&objects.pod),
        [
            "OH_SESSION_API_KEYS_0",
            "SESSION_API_KEY",
            "OH_RUNTIME_ID",
            "OH_VSCODE_PORT",
            "WORKER_1",
            "WORKER_2",
            "OH_RUNTIME_IDLE_TIMEOUT_SECONDS",
            "OH_WEBHOOKS_0_BASE_URL"
        ]
    );
    assert!(
        env_entry(&objects.pod, "OH_RUNTIME_IDLE_TIMEOUT_SECONDS")
            .get("valueFrom")
            .is_some(),
        "the request's value, from the anchor"
    );
    // With idle pausing off, the agent is given no limit.
    let unlimited = Service::start(&fake, &[("IDLE_PAUSE_AFTER", "0")]);
    let (_, unlimited_objects) = start(&fake, &unlimited, json!({"session_id": "env3"}));
    assert!(!env_names(&unlimited_objects.pod).contains(&"OH_RUNTIME_IDLE_TIMEOUT_SECONDS".to_string()));
    assert!(
        env_entry(&objects.pod, "OH_WEBHOOKS_0_BASE_URL")
            .get("valueFrom")
            .is_some()
    );
}

#[test]
fn service_ingress_labels_owners_and_the_ca_mount() {
    let fake = FakeKube::start();
    let service = Service::start(
        &fake,
        &[
            (
                "SANDBOX_INGRESS_ANNOTATIONS",
                r#"{"nginx.ingress.kubernetes.io/whitelist-source-range": "10.0.0.0/8,192.168.0.0/16"}"#,
            ),
            ("INGRESS_TLS_SECRET", "wildcard-sandbox-tls"),
            ("INGRESS_CLASS", "traefik"),
            ("URL_SCHEME", "http"),
            ("CA_CERT_SECRET_NAME", "corporate-ca"),
            ("IMAGE_PULL_SECRETS", "regcred, mirror-cred"),
        ],
    );
    let (runtime, objects) = start(&fake, &service, json!({"session_id": "Objects", "resource_factor": 2}));
    let id = runtime["runtime_id"].as_str().unwrap();
    let name = format!("runtime-{id}");
    assert_eq!(runtime["url"], "http://objects.sandbox.test");

    let uid = &objects.anchor["metadata"]["uid"];
    for object in [&objects.pod, &objects.service, &objects.ingress, &objects.anchor] {
        let labels = &object["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/managed-by"], "openhands-k8s-runtime");
        assert_eq!(labels["app"], "openhands-runtime");
        assert_eq!(labels["runtime-id"], id);
        assert_eq!(labels["session-id"], "Objects");
        assert_eq!(object["metadata"]["annotations"]["openhands.dev/session-id"], "Objects");
        assert_eq!(object["metadata"]["name"], name);
    }
    for owned in [&objects.pod, &objects.service, &objects.ingress] {
        let owner = &owned["metadata"]["ownerReferences"][0];
        assert_eq!(
            (owner["kind"].as_str(), owner["name"].as_str(), &owner["uid"]),
            (Some("Secret"), Some(name.as_str()), uid)
        );
    }
    assert_eq!(
        objects.anchor["metadata"]["annotations"]["openhands.dev/desired-state"],
        "running"
    );

    assert_eq!(objects.service["spec"]["selector"], json!({"runtime-id": id}));
    let service_ports: Vec<&str> = objects.service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(service_ports, ["agent", "vscode", "worker1", "worker2"]);

    let ingress = &objects.ingress;
    assert_eq!(ingress["spec"]["ingressClassName"], "traefik");
    let rules: Vec<(String, String)> = ingress["spec"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let path = &r["http"]["paths"][0];
            assert_eq!(
                (path["path"].as_str(), path["pathType"].as_str()),
                (Some("/"), Some("Prefix"))
            );
            assert_eq!(path["backend"]["service"]["name"], name);
            (
                r["host"].as_str().unwrap().to_string(),
                path["backend"]["service"]["port"]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("", "agent"),
        ("vscode-", "vscode"),
        ("work-1-", "worker1"),
        ("work-2-", "worker2"),
    ]
    .iter()
    .map(|(prefix, port)| (format!("{prefix}objects.sandbox.test"), port.to_string()))
    .collect();
    assert_eq!(rules, expected);
    let annotations = &ingress["metadata"]["annotations"];
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/whitelist-source-range"],
        "10.0.0.0/8,192.168.0.0/16"
    );
    assert_eq!(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"], "3600");
    assert_eq!(ingress["spec"]["tls"][0]["secretName"], "wildcard-sandbox-tls");
    assert_eq!(ingress["spec"]["tls"][0]["hosts"].as_array().unwrap().len(), 4);

    let spec = &objects.pod["spec"];
    assert_eq!(
        spec["imagePullSecrets"],
        json!([{"name": "regcred"}, {"name": "mirror-cred"}])
    );
    let volume = &spec["volumes"][0];
    let mount = &container(&objects.pod)["volumeMounts"][0];
    assert_eq!(
        volume["name"], mount["name"],
        "the CA volume and its mount share one name"
    );
    assert_eq!(volume["secret"]["secretName"], "corporate-ca");
    assert_eq!(volume["secret"]["items"][0]["key"], "ca.crt");
    assert_eq!(mount["mountPath"], "/usr/local/share/ca-certificates/additional-ca.crt");
    assert_eq!(
        container(&objects.pod)["resources"],
        json!({"requests": {"cpu": "2000m", "memory": "4096Mi"}, "limits": {"cpu": "4000m", "memory": "8192Mi"}})
    );
}

#[test]
fn each_sandbox_is_fenced_by_a_network_policy() {
    let fake = FakeKube::start();
    let service = Service::start(
        &fake,
        &[
            ("INGRESS_CONTROLLER_NAMESPACE", "traefik"),
            ("SANDBOX_EGRESS_NAMESPACES", "openhands-app"),
        ],
    );
    let (runtime, objects) = start(&fake, &service, json!({"session_id": "fenced"}));
    let id = runtime["runtime_id"].as_str().unwrap();
    let name = format!("runtime-{id}");
    let policy = fake.object("networkpolicies", &name).expect("a NetworkPolicy");
    assert_valid(
        "networkpolicy-networking-v1.json",
        "NetworkPolicy",
        "networking.k8s.io/v1",
        &policy,
    );
    assert_eq!(
        policy["metadata"]["ownerReferences"][0]["uid"],
        objects.anchor["metadata"]["uid"]
    );
    let spec = &policy["spec"];
    assert_eq!(spec["podSelector"], json!({"matchLabels": {"runtime-id": id}}));
    assert_eq!(spec["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(
        spec["ingress"],
        json!([{"from": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "traefik"}}},
            {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "openhands-k8s-runtime"}}},
        ]}])
    );
    let egress = spec["egress"].as_array().unwrap();
    let except = egress[0]["to"][0]["ipBlock"]["except"].as_array().unwrap();
    for private in ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"] {
        assert!(except.iter().any(|e| e == private), "{private} is not reachable");
    }
    assert_eq!(egress[0]["to"][0]["ipBlock"]["cidr"], "0.0.0.0/0");
    assert_eq!(
        egress[1]["ports"],
        json!([{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}])
    );
    assert_eq!(
        egress[2]["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "openhands-app"
    );
    // The policy comes before the pod, so the pod never runs unfenced.
    let posts: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.path.rsplit('/').next().unwrap().to_string())
        .collect();
    let position = |kind: &str| posts.iter().position(|p| p == kind).unwrap();
    assert!(position("networkpolicies") < position("pods"), "{posts:?}");

    service.post("/stop", &json!({"runtime_id": id}));
    assert!(fake.wait_for(std::time::Duration::from_secs(10), |c| {
        c.objects("networkpolicies").is_empty()
    }));

    let open = Service::start(&fake, &[("SANDBOX_NETWORK_POLICY", "false")]);
    start(&fake, &open, json!({"session_id": "open"}));
    assert!(fake.objects("networkpolicies").is_empty());
}
