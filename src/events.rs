//! What the service does to a runtime on its own, recorded as Kubernetes Events on the
//! runtime's anchor Secret, so that `kubectl describe secret runtime-{id}` tells an operator
//! what happened and why. The API server expires Events on its own (an hour by default).

use std::time::SystemTime;

use serde_json::{Value, json};

use crate::manifests::object_name;
use crate::random::random_hex;
use crate::runtime::Runtime;
use crate::timestamps::rfc3339;

/// The component that reports the Events.
const COMPONENT: &str = "openhands-k8s-runtime";

/// The service's own actions on runtimes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Its agent had been idle for its limit.
    IdlePause,
    /// It had been `starting` or in `error` for too long.
    StuckPause,
    /// It had been paused for too long.
    DormantStop,
    /// It was running and its pod had vanished.
    PodRecreated,
}

impl Action {
    pub const ALL: [Action; 4] = [
        Action::IdlePause,
        Action::StuckPause,
        Action::DormantStop,
        Action::PodRecreated,
    ];

    /// The Event's `reason`.
    pub fn reason(self) -> &'static str {
        match self {
            Action::IdlePause => "IdlePaused",
            Action::StuckPause => "StuckPaused",
            Action::DormantStop => "DormantStopped",
            Action::PodRecreated => "PodRecreated",
        }
    }

    /// The `action` label of `openhands_runtime_lifecycle_actions_total`.
    pub fn label(self) -> &'static str {
        match self {
            Action::IdlePause => "idle_pause",
            Action::StuckPause => "stuck_pause",
            Action::DormantStop => "dormant_stop",
            Action::PodRecreated => "pod_recreated",
        }
    }

    /// `Warning` where something went wrong, as Kubernetes' own controllers use it.
    fn event_type(self) -> &'static str {
        match self {
            Action::IdlePause | Action::DormantStop => "Normal",
            Action::StuckPause | Action::PodRecreated => "Warning",
        }
    }
}

/// The core/v1 Event of `action` on `runtime`'s anchor in `namespace`.
pub fn event(namespace: &str, runtime: &Runtime, action: Action, message: &str, now: SystemTime) -> Value {
    let anchor = object_name(&runtime.id);
    // Like client-go's recorder: the object's name and a unique suffix.
    let suffix = random_hex(8).unwrap_or_else(|_| {
        format!(
            "{:x}",
            now.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        )
    });
    let at = rfc3339(now);
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{anchor}.{suffix}"), "namespace": namespace},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Secret",
            "name": anchor,
            "namespace": namespace,
            "uid": runtime.anchor_uid,
        },
        "reason": action.reason(),
        "message": message,
        "type": action.event_type(),
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
        "firstTimestamp": at,
        "lastTimestamp": at,
        "count": 1,
    })
}
