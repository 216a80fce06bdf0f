//! A runtime: one sandbox of one session, what a client asked for, and how it is doing.

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

use serde::Serialize;

use crate::config::Config;
use crate::names::session_host;
use crate::pod_status::{PodObservation, PodRecord, PodStatus};
use crate::start_request::StartRequest;
use crate::timestamps::rfc3339;

/// What a runtime is asked to be; recorded on its anchor Secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DesiredState {
    Running,
    Paused,
}

impl DesiredState {
    /// The word on the anchor (`openhands.dev/desired-state`).
    pub fn as_str(self) -> &'static str {
        match self {
            DesiredState::Running => "running",
            DesiredState::Paused => "paused",
        }
    }

    /// The state an anchor's word names; `None` for any other word.
    pub fn parse(word: &str) -> Option<DesiredState> {
        [DesiredState::Running, DesiredState::Paused]
            .into_iter()
            .find(|state| state.as_str() == word)
    }
}

/// What a runtime is, for clients (API.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Starting,
    Running,
    Paused,
    Error,
}

/// The `status` field of the runtime object: what the runtime is, or `stopped` in the answer
/// to the `/stop` that removed it (a runtime the store holds is never stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportedStatus {
    Is(Status),
    Stopped,
}

impl ReportedStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportedStatus::Is(Status::Starting) => "starting",
            ReportedStatus::Is(Status::Running) => "running",
            ReportedStatus::Is(Status::Paused) => "paused",
            ReportedStatus::Is(Status::Error) => "error",
            ReportedStatus::Stopped => "stopped",
        }
    }
}

impl Serialize for ReportedStatus {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// What was last asked of a runtime, as its anchor records it. The clocks of idleness,
/// dormancy and stuck starts count from `since`, so they survive a restart of the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desire {
    pub state: DesiredState,
    pub since: SystemTime,
    /// Why the service paused the runtime on its own (a stuck start's last `status_detail`),
    /// shown as `status_detail` while it stays paused.
    pub pause_reason: Option<String>,
}

impl Desire {
    pub fn new(state: DesiredState, since: SystemTime) -> Desire {
        Desire {
            state,
            since,
            pause_reason: None,
        }
    }
}

/// One runtime as the service knows it from its anchor.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub id: String,
    pub session_id: String,
    pub session_api_key: String,
    /// The anchor Secret's uid, which every other object names as its owner.
    pub anchor_uid: String,
    pub request: StartRequest,
    pub desired: Desire,
    pub created_at: SystemTime,
    /// When the service last wrote this runtime: a list that began earlier cannot know of it.
    pub changed_at: Instant,
}

/// What a runtime without a pod reports.
static NO_POD: PodObservation = PodObservation::new(PodStatus::NotFound);

impl Runtime {
    /// Whether a client (or an operator, on the anchor) asked for the runtime to be paused; it
    /// then reads `paused` whatever its pod still does, and `/list` leaves it out.
    pub fn is_paused(&self) -> bool {
        self.desired.state == DesiredState::Paused
    }

    /// `status` from the desired state and `pod_status` (API.md §4).
    fn status(&self, pod_status: PodStatus) -> Status {
        match self.desired.state {
            DesiredState::Paused => Status::Paused,
            DesiredState::Running => match pod_status {
                PodStatus::Ready => Status::Running,
                PodStatus::Failed | PodStatus::CrashLoopBackOff | PodStatus::Unknown => Status::Error,
                PodStatus::Pending | PodStatus::Running | PodStatus::NotFound => Status::Starting,
            },
        }
    }

    /// `status` and `pod_status` with its pod as known at `now`.
    pub fn status_at(&self, pod: Option<&PodRecord>, config: &Config, now: SystemTime) -> (Status, PodStatus) {
        let grace = config.image_pull_grace;
        let pod_status = pod.map_or_else(|| NO_POD.status_at(now, grace), |p| p.status_at(now, grace));
        (self.status(pod_status), pod_status)
    }

    /// The runtime object of API.md §3, with its pod as known at `now`.
    pub fn view(&self, pod: Option<&PodRecord>, config: &Config, now: SystemTime) -> RuntimeView {
        let observation = pod.map_or(&NO_POD, |p| &p.observation);
        let (status, pod_status) = self.status_at(pod, config, now);
        let session = session_host(&self.session_id);
        // Views are built thousands at a time for `/list`: joining slices costs one allocation
        // and none of the formatting machinery.
        let host = |prefix: &str| [&config.url_scheme, "://", prefix, &session, ".", &config.base_domain].concat();
        RuntimeView {
            runtime_id: self.id.clone(),
            session_id: self.session_id.clone(),
            url: host(""),
            session_api_key: self.session_api_key.clone(),
            status: ReportedStatus::Is(status),
            pod_status: if status == Status::Paused {
                PodStatus::NotFound
            } else {
                pod_status
            },
            status_detail: match status {
                Status::Starting | Status::Error => observation.detail.clone(),
                Status::Paused => self.desired.pause_reason.clone(),
                Status::Running => None,
            },
            work_hosts: BTreeMap::from([
                (host("work-1-"), config.ports.worker_1),
                (host("work-2-"), config.ports.worker_2),
            ]),
            restart_count: observation.restart_count,
            restart_reasons: observation.restart_reasons.clone(),
            image: self.request.image.clone(),
            created_at: rfc3339(self.created_at),
        }
    }
}

/// What clients receive for a runtime: every field always present, with its JSON type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuntimeView {
    pub runtime_id: String,
    pub session_id: String,
    pub url: String,
    pub session_api_key: String,
    pub status: ReportedStatus,
    pub pod_status: PodStatus,
    pub status_detail: Option<String>,
    pub work_hosts: BTreeMap<String, u16>,
    pub restart_count: u32,
    pub restart_reasons: Vec<String>,
    pub image: String,
    pub created_at: String,
}
