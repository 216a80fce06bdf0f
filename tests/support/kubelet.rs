//! A simulated kubelet and scheduler: what a pod's `status` looks like at each step of its life,
//! per the shapes in `tests/fixtures/k8s-api-semantics.md` §6.

use serde_json::{Value, json};

pub const NODE_NAME: &str = "node-1";
const HOST_IP: &str = "192.0.2.17";

/// How a pod's life goes, chosen when it is created (see `FakeKube::kubelet_rule`).
#[derive(Debug, Clone, PartialEq)]
pub enum PodFate {
    /// Pending, ContainerCreating, Running not Ready, then Ready.
    Ready,
    /// Stops at Running but never passes its readiness probe.
    NeverReady,
    /// The image cannot be pulled: ErrImagePull and ImagePullBackOff in turn, phase Pending.
    ImagePullBackOff,
    /// The container starts and exits with `exit_code` (`reason` `Error` or `OOMKilled`),
    /// again and again: CrashLoopBackOff with a growing restart count.
    CrashLoop { reason: String, exit_code: i64 },
    /// The scheduler finds no node: Pending with `PodScheduled=False`.
    Unschedulable { message: String },
    /// The container exits once and the pod ends in phase Failed.
    Fails { reason: String, exit_code: i64 },
    /// The kubelet leaves the pod alone; tests set its status themselves.
    Scripted,
    /// Its container really runs, as a process on this machine (`node.rs`): the node, not
    /// these steps, writes its status and carries out its termination.
    Runs,
}

impl PodFate {
    pub fn crash_loop() -> PodFate {
        PodFate::CrashLoop {
            reason: "Error".to_string(),
            exit_code: 1,
        }
    }

    pub fn unschedulable() -> PodFate {
        PodFate::Unschedulable {
            message: "0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.".to_string(),
        }
    }
}

/// Where one pod is in its life.
#[derive(Debug, Clone)]
pub struct PodProgress {
    pub fate: PodFate,
    pub step: u32,
    pub restarts: i64,
    /// Ticks spent terminating, once a deletion timestamp is set.
    pub terminating_for: u32,
    /// The pod has reached the end of its fate (Ready, Failed, Unschedulable): the kubelet
    /// leaves it alone until its fate is changed.
    pub settled: bool,
}

impl PodProgress {
    pub fn new(fate: PodFate) -> PodProgress {
        PodProgress {
            fate,
            step: 0,
            restarts: 0,
            terminating_for: 0,
            settled: false,
        }
    }
}

/// Moves `pod` one step along its fate and writes its new status. Returns whether it changed.
pub fn advance(pod: &mut Value, progress: &mut PodProgress, now: &str) -> bool {
    if matches!(progress.fate, PodFate::Scripted | PodFate::Runs) {
        return false;
    }
    let before = pod["status"].clone();
    progress.step += 1;
    let step = progress.step;
    let containers = container_specs(pod);
    if let PodFate::Unschedulable { message } = &progress.fate {
        pod["status"] = unschedulable_status(message, now, pod);
        return pod["status"] != before;
    }
    if pod["spec"]["nodeName"].is_null() {
        pod["spec"]["nodeName"] = json!(NODE_NAME);
    }
    let start_time = pod["status"]["startTime"].as_str().unwrap_or(now).to_string();
    let status = match (&progress.fate, step) {
        (_, 1) => pending_status(&containers, "ContainerCreating", None, now),
        (PodFate::ImagePullBackOff, n) => {
            let image = containers.first().map(|(_, image)| image.clone()).unwrap_or_default();
            let (reason, message) = if n % 2 == 0 {
                (
                    "ErrImagePull",
                    format!(
                        "failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": not found"
                    ),
                )
            } else {
                ("ImagePullBackOff", format!("Back-off pulling image \"{image}\""))
            };
            pending_status(&containers, reason, Some(message), now)
        }
        (PodFate::Ready, 2) | (PodFate::NeverReady, _) => running_status(&containers, false, now, 0, None),
        (PodFate::Ready, _) => running_status(&containers, true, now, 0, None),
        (PodFate::CrashLoop { reason, exit_code }, n) => {
            if n == 2 {
                running_status(&containers, false, now, 0, None)
            } else {
                if n % 2 == 1 {
                    progress.restarts += 1;
                }
                let last = terminated(reason, *exit_code, now);
                if n % 2 == 1 {
                    let wait = 10 * (1 << (progress.restarts - 1).clamp(0, 5));
                    let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
                    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or_default();
                    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
                    let waiting = |container: &str| {
                        json!({"waiting": {"reason": "CrashLoopBackOff",
                            "message": format!("back-off {wait}s restarting failed container={container} pod={pod_name}_{namespace}({uid})")}})
                    };
                    crash_status(&containers, waiting, progress.restarts, &last, now)
                } else {
                    running_status(&containers, false, now, progress.restarts, Some(&last))
                }
            }
        }
        (PodFate::Fails { .. }, 2) => running_status(&containers, false, now, 0, None),
        (PodFate::Fails { reason, exit_code }, _) => failed_status(&containers, reason, *exit_code, now),
        (PodFate::Unschedulable { .. } | PodFate::Scripted | PodFate::Runs, _) => return false,
    };
    pod["status"] = status;
    pod["status"]["startTime"] = json!(start_time);
    pod["status"]["qosClass"] = json!(qos_class(pod));
    if !pod["status"]["conditions"].is_array() {
        pod["status"]["conditions"] = json!([]);
    }
    keep_transition_times(&before, &mut pod["status"]);
    pod["status"] != before
}

/// A condition whose status did not change keeps its `lastTransitionTime`, as the kubelet's
/// status manager does: clocks such as "not ready since" are read from it.
pub fn keep_transition_times(before: &Value, after: &mut Value) {
    for condition in after["conditions"].as_array_mut().into_iter().flatten() {
        let earlier = before["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == condition["type"] && c["status"] == condition["status"]);
        if let Some(earlier) = earlier {
            condition["lastTransitionTime"] = earlier["lastTransitionTime"].clone();
        }
    }
}

/// The status of a pod just accepted by the API server.
pub fn initial_status(pod: &Value) -> Value {
    json!({"phase": "Pending", "qosClass": qos_class(pod)})
}

pub fn container_specs(pod: &Value) -> Vec<(String, String)> {
    pod["spec"]["containers"]
        .as_array()
        .map(|containers| {
            containers
                .iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap_or_default().to_string(),
                        c["image"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn condition(kind: &str, ok: bool, reason: Option<&str>, message: Option<String>, now: &str) -> Value {
    let mut c = json!({"type": kind, "status": if ok { "True" } else { "False" }, "lastProbeTime": null, "lastTransitionTime": now});
    if let Some(reason) = reason {
        c["reason"] = json!(reason);
    }
    if let Some(message) = message {
        c["message"] = json!(message);
    }
    c
}

fn scheduled_conditions(containers: &[(String, String)], ready: bool, started: bool, now: &str) -> Value {
    let unready = format!(
        "containers with unready status: [{}]",
        containers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(" ")
    );
    let not_ready = |kind| {
        if ready {
            condition(kind, true, None, None, now)
        } else {
            condition(kind, false, Some("ContainersNotReady"), Some(unready.clone()), now)
        }
    };
    json!([
        condition("PodReadyToStartContainers", started, None, None, now),
        condition("Initialized", true, None, None, now),
        not_ready("Ready"),
        not_ready("ContainersReady"),
        condition("PodScheduled", true, None, None, now),
    ])
}

fn network(status: &mut Value) {
    status["hostIP"] = json!(HOST_IP);
    status["hostIPs"] = json!([{"ip": HOST_IP}]);
    status["podIP"] = json!("198.51.100.23");
    status["podIPs"] = json!([{"ip": "198.51.100.23"}]);
}

fn container_status(name: &str, image: &str, state: Value, ready: bool, restarts: i64, last: Option<&Value>) -> Value {
    let running = state.get("running").is_some();
    let mut s = json!({
        "name": name, "image": image, "imageID": "", "ready": ready, "restartCount": restarts,
        "started": running, "state": state, "lastState": last.cloned().unwrap_or_else(|| json!({})),
    });
    if running || last.is_some() {
        s["imageID"] = json!(format!(
            "{image}@sha256:5b0e3c5f0a0d6a0c2f4e1d9b8a7c6e5d4c3b2a1908f7e6d5c4b3a29180706050"
        ));
        s["containerID"] = json!("containerd://8f14e45fceea167a5a36dedd4bea2543b8f5f0c4d7b3e9a1c2d3e4f5a6b7c8d9");
    }
    s
}

pub fn pending_status(containers: &[(String, String)], reason: &str, message: Option<String>, now: &str) -> Value {
    let statuses: Vec<Value> = containers
        .iter()
        .map(|(name, image)| {
            let mut waiting = json!({"reason": reason});
            if let Some(message) = &message {
                waiting["message"] = json!(message);
            }
            container_status(name, image, json!({"waiting": waiting}), false, 0, None)
        })
        .collect();
    let mut status = json!({"phase": "Pending", "containerStatuses": statuses});
    status["conditions"] = scheduled_conditions(containers, false, reason != "ContainerCreating", now);
    network(&mut status);
    status
}

pub fn running_status(
    containers: &[(String, String)],
    ready: bool,
    now: &str,
    restarts: i64,
    last: Option<&Value>,
) -> Value {
    let statuses: Vec<Value> = containers
        .iter()
        .map(|(name, image)| {
            container_status(
                name,
                image,
                json!({"running": {"startedAt": now}}),
                ready,
                restarts,
                last,
            )
        })
        .collect();
    let mut status = json!({"phase": "Running", "containerStatuses": statuses});
    status["conditions"] = scheduled_conditions(containers, ready, true, now);
    network(&mut status);
    status
}

pub fn crash_status(
    containers: &[(String, String)],
    waiting: impl Fn(&str) -> Value,
    restarts: i64,
    last: &Value,
    now: &str,
) -> Value {
    let statuses: Vec<Value> = containers
        .iter()
        .map(|(name, image)| container_status(name, image, waiting(name), false, restarts, Some(last)))
        .collect();
    let mut status = json!({"phase": "Running", "containerStatuses": statuses});
    status["conditions"] = scheduled_conditions(containers, false, true, now);
    network(&mut status);
    status
}

pub fn terminated(reason: &str, exit_code: i64, now: &str) -> Value {
    json!({"terminated": {"exitCode": exit_code, "reason": reason, "startedAt": now, "finishedAt": now,
        "containerID": "containerd://c4ca4238a0b923820dcc509a6f75849bc81e728d9d4c2f636f067f89cc14862c"}})
}

fn failed_status(containers: &[(String, String)], reason: &str, exit_code: i64, now: &str) -> Value {
    let statuses: Vec<Value> = containers
        .iter()
        .map(|(name, image)| container_status(name, image, terminated(reason, exit_code, now), false, 0, None))
        .collect();
    let mut status = json!({"phase": "Failed", "containerStatuses": statuses});
    let mut conditions = scheduled_conditions(containers, false, false, now);
    conditions[2]["reason"] = json!("PodFailed");
    conditions[3]["reason"] = json!("PodFailed");
    status["conditions"] = conditions;
    network(&mut status);
    status
}

fn unschedulable_status(message: &str, now: &str, pod: &Value) -> Value {
    json!({
        "phase": "Pending",
        "conditions": [condition("PodScheduled", false, Some("Unschedulable"), Some(message.to_string()), now)],
        "qosClass": qos_class(pod),
    })
}

/// BestEffort without requests or limits, Guaranteed when every limit equals its request.
pub fn qos_class(pod: &Value) -> &'static str {
    let containers = pod["spec"]["containers"].as_array().cloned().unwrap_or_default();
    let resources: Vec<&Value> = containers.iter().map(|c| &c["resources"]).collect();
    let empty = |v: &Value| v.as_object().is_none_or(|m| m.is_empty());
    if resources.iter().all(|r| empty(&r["requests"]) && empty(&r["limits"])) {
        return "BestEffort";
    }
    let guaranteed = resources.iter().all(|r| {
        !empty(&r["limits"])
            && ["cpu", "memory"].iter().all(|k| !r["limits"][k].is_null())
            && (empty(&r["requests"]) || r["requests"] == r["limits"])
    });
    if guaranteed { "Guaranteed" } else { "Burstable" }
}
