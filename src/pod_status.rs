//! What a sandbox pod's status says, in the words clients understand (API.md §4).
//!
//! Reasons and messages are Kubernetes' own, verbatim: the app server classifies failures by
//! words such as `ImagePullBackOff` or `Unschedulable`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

use crate::object;
use crate::timestamps::parse_rfc3339;
use crate::warm::objects::boots_dormant;

/// `pod_status` of the runtime object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PodStatus {
    #[serde(rename = "pending")]
    Pending,
    #[serde(rename = "running")]
    Running,
    #[serde(rename = "ready")]
    Ready,
    #[serde(rename = "failed")]
    Failed,
    #[serde(rename = "crashloopbackoff")]
    CrashLoopBackOff,
    #[serde(rename = "not found")]
    NotFound,
    #[serde(rename = "unknown")]
    Unknown,
}

/// What was last seen of a runtime's pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodObservation {
    pub status: PodStatus,
    /// Why the pod is not ready, as the kubelet or scheduler says it.
    pub detail: Option<String>,
    pub restart_count: u32,
    pub restart_reasons: Vec<String>,
    /// Since when its image cannot be pulled: `pending` turns `failed` once that lasts longer
    /// than the grace, whether or not the pod changes again (back-offs grow to minutes).
    pub pull_failing_since: Option<SystemTime>,
}

impl PodObservation {
    pub const fn new(status: PodStatus) -> PodObservation {
        PodObservation {
            status,
            detail: None,
            restart_count: 0,
            restart_reasons: Vec::new(),
            pull_failing_since: None,
        }
    }

    /// `pod_status` at `now` (API.md §4 rule 3: a pull error lasting longer than the grace fails).
    pub fn status_at(&self, now: SystemTime, image_pull_grace: Duration) -> PodStatus {
        match self.pull_failing_since {
            Some(since) if now.duration_since(since).unwrap_or_default() > image_pull_grace => PodStatus::Failed,
            _ => self.status,
        }
    }

    /// Whether `status_at` can change with time alone, the pod unchanged.
    pub fn depends_on_time(&self) -> bool {
        self.pull_failing_since.is_some()
    }
}

/// What the service knows of a runtime's pod (no record: there is no pod).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRecord {
    pub uid: String,
    /// Deleted, its containers still stopping: the name is not free yet.
    pub terminating: bool,
    pub observation: PodObservation,
    /// `status.podIP`, once the pod has one.
    pub ip: Option<String>,
    /// Since when the pod has not been ready without a break (`None` while ready): its Ready
    /// condition's last transition, or its creation before it has that condition. The cluster
    /// keeps this clock, so it survives a restart of the service.
    pub unready_since: Option<SystemTime>,
    /// When the service itself last changed the pod: a list that began earlier is older news.
    pub changed_at: Option<Instant>,
    /// Its agent server, as this container (this uid and restart count) booted it and as the
    /// service has prepared it since.
    pub agent: Agent,
}

/// A sandbox pod's agent server, as far as what the service does to it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agent {
    /// Booted with its session: it serves as soon as its pod is Ready.
    Serving,
    /// Booted dormant (a warm pod's, `OH_DEFERRED_INIT`): its API closed until `POST /api/init`.
    /// `routes_built` once the service had it build its routes, ahead of its first command.
    Dormant { routes_built: bool },
    /// Booted dormant, then given its session by the service.
    Initialized,
}

impl PodRecord {
    /// The record of a pod as the API server returned it (`None` without a uid).
    pub fn of(pod: &Value) -> Option<PodRecord> {
        Some(PodRecord {
            uid: object::uid(pod)?.to_string(),
            terminating: object::is_being_deleted(pod),
            observation: observe(Some(pod)),
            ip: pod["status"]["podIP"].as_str().map(str::to_string),
            unready_since: unready_since(pod),
            changed_at: None,
            agent: if boots_dormant(pod) {
                Agent::Dormant { routes_built: false }
            } else {
                Agent::Serving
            },
        })
    }

    /// `pod_status` at `now`: a pod whose agent waits for `POST /api/init` is not yet ready for
    /// its runtime, however ready its probes say it is.
    pub fn status_at(&self, now: SystemTime, image_pull_grace: Duration) -> PodStatus {
        match self.observation.status_at(now, image_pull_grace) {
            PodStatus::Ready if self.awaits_init() => PodStatus::Running,
            status => status,
        }
    }

    /// Ready, its agent dormant until the service initialises it.
    pub fn awaits_init(&self) -> bool {
        matches!(self.agent, Agent::Dormant { .. }) && self.is_ready_and_staying()
    }

    /// Ready, and not being deleted.
    pub fn is_ready_and_staying(&self) -> bool {
        self.observation.status == PodStatus::Ready && !self.terminating
    }
}

fn unready_since(pod: &Value) -> Option<SystemTime> {
    match condition(&pod["status"], "Ready") {
        Some(ready) if ready["status"] == "True" => None,
        Some(ready) => ready["lastTransitionTime"].as_str().and_then(parse_rfc3339),
        None => pod["metadata"]["creationTimestamp"].as_str().and_then(parse_rfc3339),
    }
}

/// Waiting reasons that no retry by the kubelet will cure.
const FATAL_WAITING: [&str; 3] = ["InvalidImageName", "CreateContainerConfigError", "ErrImageNeverPull"];
/// Waiting reasons that may still cure themselves (a registry hiccup) for a while.
const PULL_WAITING: [&str; 2] = ["ImagePullBackOff", "ErrImagePull"];

/// Derives the observation from a pod (or its absence) by the rules of API.md §4, in order;
/// the image pull grace is applied when it is read (`PodObservation::status_at`).
pub fn observe(pod: Option<&Value>) -> PodObservation {
    // Rule 1: no pod, or one on its way out.
    let Some(pod) = pod.filter(|pod| !object::is_being_deleted(pod)) else {
        return PodObservation::new(PodStatus::NotFound);
    };
    let containers = Containers::of(pod);
    let (status, detail, pull_failing_since) = classify(pod, &containers);
    PodObservation {
        status,
        detail,
        restart_count: containers.restart_count(),
        restart_reasons: containers.restart_reasons(),
        pull_failing_since,
    }
}

/// `pod_status`, why, and since when an image pull fails (rules 2 to 6).
fn classify(pod: &Value, containers: &Containers) -> (PodStatus, Option<String>, Option<SystemTime>) {
    // An evicted pod's containers end as `ContainerStatusUnknown` (exit 137) or whatever they
    // were doing; the kubelet's reason for evicting it is the one that tells what happened.
    if pod["status"]["reason"] == "Evicted" {
        return (PodStatus::Failed, reason_of(&pod["status"]), None);
    }
    if let Some(detail) = containers.waiting_for(&["CrashLoopBackOff"]) {
        return (
            PodStatus::CrashLoopBackOff,
            containers.with_last_termination(Some(detail)),
            None,
        );
    }
    if let Some(detail) = containers.waiting_for(&FATAL_WAITING) {
        return (PodStatus::Failed, Some(detail), None);
    }
    if let Some(detail) = containers.waiting_for(&PULL_WAITING) {
        // Pull errors come before the container ever runs: they last since the pod began.
        let since = pod["metadata"]["creationTimestamp"].as_str().and_then(parse_rfc3339);
        return (PodStatus::Pending, Some(detail), Some(since.unwrap_or(UNIX_EPOCH)));
    }
    let status = &pod["status"];
    let (pod_status, detail) = match status["phase"].as_str().unwrap_or_default() {
        phase @ ("Failed" | "Succeeded") => (PodStatus::Failed, Some(how_it_ended(status, containers, phase))),
        "Pending" => (PodStatus::Pending, why_pending(status, containers)),
        "Running" if condition(status, "Ready").is_some_and(|c| c["status"] == "True") => (PodStatus::Ready, None),
        "Running" => (
            PodStatus::Running,
            containers.with_last_termination(why_not_ready(status)),
        ),
        _ => (PodStatus::Unknown, reason_of(status)),
    };
    (pod_status, detail, None)
}

/// A pod that ended: how its container ended, else the pod's own reason.
fn how_it_ended(status: &Value, containers: &Containers, phase: &str) -> String {
    containers
        .0
        .iter()
        .find_map(|c| describe_termination(&c["state"]["terminated"]))
        .or_else(|| reason_of(status))
        .unwrap_or_else(|| format!("the pod ended in phase {phase}"))
}

/// Unscheduled, or what its container waits for (`ContainerCreating`, ...).
fn why_pending(status: &Value, containers: &Containers) -> Option<String> {
    unschedulable(status).or_else(|| {
        containers.0.iter().find_map(|c| {
            let waiting = &c["state"]["waiting"];
            waiting["reason"]
                .as_str()
                .map(|reason| with_message(reason, waiting["message"].as_str()))
        })
    })
}

/// Why a running pod is not Ready, from its `Ready` condition.
fn why_not_ready(status: &Value) -> Option<String> {
    condition(status, "Ready").and_then(|c| {
        c["reason"]
            .as_str()
            .map(|reason| with_message(reason, c["message"].as_str()))
    })
}

/// The pod's own `reason: message`.
fn reason_of(status: &Value) -> Option<String> {
    status["reason"]
        .as_str()
        .map(|reason| with_message(reason, status["message"].as_str()))
}

/// A pod's container statuses.
struct Containers<'a>(Vec<&'a Value>);

impl<'a> Containers<'a> {
    fn of(pod: &'a Value) -> Containers<'a> {
        Containers(
            pod["status"]["containerStatuses"]
                .as_array()
                .map(|c| c.iter().collect())
                .unwrap_or_default(),
        )
    }

    fn restart_count(&self) -> u32 {
        self.0
            .iter()
            .filter_map(|c| c["restartCount"].as_u64())
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
            .fold(0u32, u32::saturating_add)
    }

    fn restart_reasons(&self) -> Vec<String> {
        self.0
            .iter()
            .filter_map(|c| c["lastState"]["terminated"]["reason"].as_str())
            .map(str::to_string)
            .collect()
    }

    /// `reason: message` of the first container waiting for one of `reasons`.
    fn waiting_for(&self, reasons: &[&str]) -> Option<String> {
        self.0.iter().find_map(|c| {
            let waiting = &c["state"]["waiting"];
            let reason = waiting["reason"].as_str()?;
            reasons
                .contains(&reason)
                .then(|| with_message(reason, waiting["message"].as_str()))
        })
    }

    /// A container that has restarted says why it last ended: while it runs again between two
    /// back-offs, that is the only reason to be seen.
    fn with_last_termination(&self, detail: Option<String>) -> Option<String> {
        let last = self
            .0
            .iter()
            .find_map(|c| describe_termination(&c["lastState"]["terminated"]));
        match (detail, last) {
            (Some(detail), Some(last)) => Some(format!("{detail}; last termination: {last}")),
            (None, Some(last)) => Some(format!("last termination: {last}")),
            (detail, None) => detail,
        }
    }
}

fn condition<'a>(status: &'a Value, kind: &str) -> Option<&'a Value> {
    status["conditions"].as_array()?.iter().find(|c| c["type"] == kind)
}

fn unschedulable(status: &Value) -> Option<String> {
    let scheduled = condition(status, "PodScheduled")?;
    (scheduled["status"] == "False").then(|| {
        with_message(
            scheduled["reason"].as_str().unwrap_or("Unschedulable"),
            scheduled["message"].as_str(),
        )
    })
}

fn with_message(reason: &str, message: Option<&str>) -> String {
    match message.filter(|m| !m.is_empty()) {
        Some(message) => format!("{reason}: {message}"),
        None => reason.to_string(),
    }
}

/// `OOMKilled (exit code 137)` from a `terminated` container state.
fn describe_termination(terminated: &Value) -> Option<String> {
    let reason = terminated["reason"].as_str().unwrap_or("Terminated");
    let exit_code = terminated["exitCode"].as_i64()?;
    Some(format!("{reason} (exit code {exit_code})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const GRACE: Duration = Duration::from_secs(120);

    fn pod(created: &str, status: Value) -> Value {
        json!({"metadata": {"name": "p", "creationTimestamp": created}, "status": status})
    }

    fn now() -> SystemTime {
        parse_rfc3339("2025-03-04T10:16:00Z").unwrap()
    }

    #[test]
    fn no_pod_or_a_terminating_pod_is_not_found() {
        assert_eq!(observe(None).status, PodStatus::NotFound);
        let mut terminating = pod("2025-03-04T10:15:00Z", json!({"phase": "Running"}));
        terminating["metadata"]["deletionTimestamp"] = json!("2025-03-04T10:16:30Z");
        assert_eq!(observe(Some(&terminating)).status, PodStatus::NotFound);
    }

    #[test]
    fn image_pull_errors_are_pending_within_the_grace_then_failed() {
        let status = json!({"phase": "Pending", "containerStatuses": [{"name": "agent", "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"x\""}}}]});
        let young = observe(Some(&pod("2025-03-04T10:15:00Z", status.clone())));
        assert_eq!(young.status_at(now(), GRACE), PodStatus::Pending);
        assert_eq!(
            young.detail.as_deref(),
            Some("ImagePullBackOff: Back-off pulling image \"x\"")
        );
        let old = observe(Some(&pod("2025-03-04T10:00:00Z", status)));
        assert_eq!(old.status_at(now(), GRACE), PodStatus::Failed);
        let later = now() + Duration::from_secs(120);
        assert_eq!(
            young.status_at(later, GRACE),
            PodStatus::Failed,
            "without any new event"
        );
    }

    #[test]
    fn unrecoverable_waiting_reasons_fail_at_once() {
        for reason in FATAL_WAITING {
            let status = json!({"phase": "Pending", "containerStatuses": [{"state": {"waiting": {"reason": reason}}}]});
            let seen = observe(Some(&pod("2025-03-04T10:15:59Z", status)));
            assert_eq!((seen.status, seen.detail.as_deref()), (PodStatus::Failed, Some(reason)));
        }
    }

    #[test]
    fn failed_pods_say_how_their_container_ended() {
        let status = json!({"phase": "Failed", "containerStatuses": [{"restartCount": 0,
            "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]});
        let seen = observe(Some(&pod("2025-03-04T10:15:00Z", status)));
        assert_eq!(
            (seen.status, seen.detail.as_deref()),
            (PodStatus::Failed, Some("OOMKilled (exit code 137)"))
        );
        let evicted =
            json!({"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."});
        let seen = observe(Some(&pod("2025-03-04T10:15:00Z", evicted)));
        assert_eq!(
            seen.detail.as_deref(),
            Some("Evicted: The node was low on resource: memory.")
        );
    }

    #[test]
    fn an_evicted_pod_says_why_whatever_its_containers_say() {
        let evicted = json!({"phase": "Failed", "reason": "Evicted",
            "message": "The node was low on resource: memory. Threshold quantity: 100Mi, available: 83212Ki.",
            "containerStatuses": [{"name": "agent", "restartCount": 0, "ready": false,
                "state": {"terminated": {"exitCode": 137, "reason": "ContainerStatusUnknown",
                    "message": "The container could not be located when the pod was terminated"}}}]});
        let seen = observe(Some(&pod("2025-03-04T10:15:00Z", evicted)));
        assert_eq!(
            (seen.status, seen.detail.as_deref()),
            (
                PodStatus::Failed,
                Some("Evicted: The node was low on resource: memory. Threshold quantity: 100Mi, available: 83212Ki.")
            )
        );
    }

    #[test]
    fn a_restarted_container_running_again_says_how_it_last_ended() {
        let status = json!({"phase": "Running",
            "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady",
                "message": "containers with unready status: [agent]"}],
            "containerStatuses": [{"name": "agent", "restartCount": 3, "ready": false,
                "state": {"running": {"startedAt": "2025-03-04T10:15:50Z"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]});
        let seen = observe(Some(&pod("2025-03-04T10:15:00Z", status)));
        assert_eq!(
            (seen.status, seen.detail.as_deref(), seen.restart_count),
            (
                PodStatus::Running,
                Some(
                    "ContainersNotReady: containers with unready status: [agent]; last termination: Error (exit code 1)"
                ),
                3
            )
        );
    }

    #[test]
    fn unknown_phase_is_unknown() {
        let seen = observe(Some(&pod(
            "2025-03-04T10:15:00Z",
            json!({"phase": "Unknown", "reason": "NodeLost"}),
        )));
        assert_eq!(
            (seen.status, seen.detail.as_deref()),
            (PodStatus::Unknown, Some("NodeLost"))
        );
    }
}
