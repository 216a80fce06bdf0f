//! What the service knows of the cluster: the runtimes (from their anchor Secrets) and their
//! pods (from the pod watch), joined by runtime id. A cache: the cluster stays the truth.
//!
//! One mutex guards it, held only for map operations, never across a Kubernetes call. Work on
//! one session (and so on its runtime) is serialised by `lock_session`, which blocks callers
//! for that session only: different runtimes proceed in parallel.

use std::collections::{HashMap, HashSet};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crate::pod_status::{PodObservation, PodRecord, PodStatus};
use crate::runtime::{DesiredState, Runtime};

#[derive(Default)]
pub struct Store {
    inner: Mutex<Inner>,
    session_released: Condvar,
}

#[derive(Default)]
struct Inner {
    runtimes: HashMap<String, Runtime>,
    /// Lowercased session id -> runtime id: session ids equal up to case share one host name.
    sessions: HashMap<String, String>,
    /// Runtime id -> its pod. No entry: no pod.
    pods: HashMap<String, PodRecord>,
    /// Lowercased session ids with an operation in flight.
    busy_sessions: HashSet<String>,
    /// Runtimes whose `/start` is creating objects: the orphan sweep leaves them alone.
    starting: HashSet<String>,
    ready: bool,
}

/// A change to a pod, as the pod watch reports it.
pub enum PodEvent {
    /// The pod was created or changed.
    Seen { added: bool, record: PodRecord },
    /// The pod with this uid is gone.
    Gone { uid: String },
}

/// Exclusive right to change one session's runtime; released on drop.
pub struct SessionGuard<'a> {
    store: &'a Store,
    key: String,
}

impl Drop for SessionGuard<'_> {
    fn drop(&mut self) {
        self.store.lock().busy_sessions.remove(&self.key);
        self.store.session_released.notify_all();
    }
}

/// Marks a runtime as being started; unmarked on drop.
pub struct StartGuard<'a> {
    store: &'a Store,
    runtime_id: String,
}

impl Drop for StartGuard<'_> {
    fn drop(&mut self) {
        self.store.lock().starting.remove(&self.runtime_id);
    }
}

impl Inner {
    /// The answer to a create is the pod's first version. The pod watch may already have
    /// reported a newer one, and the kubelet may not change the pod again for a long time
    /// (an unschedulable or a ready pod), so that report is kept.
    fn record_created_pod(&mut self, runtime_id: &str, record: PodRecord) {
        if self.pods.get(runtime_id).is_some_and(|known| known.uid == record.uid) {
            return;
        }
        let record = PodRecord {
            changed_at: Some(Instant::now()),
            ..record
        };
        self.pods.insert(runtime_id.to_string(), record);
    }
}

fn session_key(session_id: &str) -> String {
    session_id.to_lowercase()
}

impl Store {
    pub fn new() -> Store {
        Store::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until no other operation works on this session, then holds it.
    pub fn lock_session(&self, session_id: &str) -> SessionGuard<'_> {
        let key = session_key(session_id);
        let mut inner = self.lock();
        while inner.busy_sessions.contains(&key) {
            inner = self
                .session_released
                .wait(inner)
                .unwrap_or_else(PoisonError::into_inner);
        }
        inner.busy_sessions.insert(key.clone());
        SessionGuard { store: self, key }
    }

    /// Holds the session if nobody else does (background work defers to clients).
    pub fn try_lock_session(&self, session_id: &str) -> Option<SessionGuard<'_>> {
        let key = session_key(session_id);
        if !self.lock().busy_sessions.insert(key.clone()) {
            return None;
        }
        Some(SessionGuard { store: self, key })
    }

    pub fn begin_start(&self, runtime_id: &str) -> StartGuard<'_> {
        self.lock().starting.insert(runtime_id.to_string());
        StartGuard {
            store: self,
            runtime_id: runtime_id.to_string(),
        }
    }

    /// Whether a runtime exists, or is being started.
    pub fn is_known(&self, runtime_id: &str) -> bool {
        let inner = self.lock();
        inner.runtimes.contains_key(runtime_id) || inner.starting.contains(runtime_id)
    }

    pub fn runtime(&self, runtime_id: &str) -> Option<Runtime> {
        self.lock().runtimes.get(runtime_id).cloned()
    }

    /// The runtime of a session, found regardless of case (the caller checks the exact id).
    pub fn runtime_of_session(&self, session_id: &str) -> Option<Runtime> {
        let inner = self.lock();
        let runtime_id = inner.sessions.get(&session_key(session_id))?;
        inner.runtimes.get(runtime_id).cloned()
    }

    /// Adds a runtime with the pod its start created (`None`: it has none yet). The pod watch
    /// may have reported that pod already: see `pod_created`.
    pub fn insert(&self, runtime: Runtime, created_pod: Option<PodRecord>) {
        let mut inner = self.lock();
        if let Some(record) = created_pod {
            inner.record_created_pod(&runtime.id, record);
        }
        inner
            .sessions
            .insert(session_key(&runtime.session_id), runtime.id.clone());
        inner.runtimes.insert(runtime.id.clone(), runtime);
    }

    pub fn remove(&self, runtime_id: &str) -> Option<Runtime> {
        let mut inner = self.lock();
        let runtime = inner.runtimes.remove(runtime_id)?;
        inner.sessions.remove(&session_key(&runtime.session_id));
        Some(runtime)
    }

    /// Records a desired state the service has just written on the anchor.
    pub fn set_desired(&self, runtime_id: &str, desired: DesiredState) {
        if let Some(runtime) = self.lock().runtimes.get_mut(runtime_id) {
            runtime.desired = desired;
            runtime.changed_at = Instant::now();
        }
    }

    /// Records a desired state the anchor watch reports (set by the service or an operator).
    pub fn observe_desired(&self, runtime_id: &str, desired: DesiredState) {
        if let Some(runtime) = self.lock().runtimes.get_mut(runtime_id) {
            runtime.desired = desired;
        }
    }

    /// `read` of one runtime and its pod.
    pub fn find<T>(&self, runtime_id: &str, read: impl FnOnce(&Runtime, Option<&PodRecord>) -> T) -> Option<T> {
        let inner = self.lock();
        let runtime = inner.runtimes.get(runtime_id)?;
        Some(read(runtime, inner.pods.get(runtime_id)))
    }

    /// `read` of every runtime and its pod, oldest runtime first.
    pub fn map_all<T>(&self, mut read: impl FnMut(&Runtime, Option<&PodRecord>) -> T) -> Vec<T> {
        let inner = self.lock();
        let mut runtimes: Vec<&Runtime> = inner.runtimes.values().collect();
        runtimes.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
        runtimes.into_iter().map(|r| read(r, inner.pods.get(&r.id))).collect()
    }

    /// `read` of the runtime of each session id, in order; `None` for an unknown one.
    pub fn map_sessions<T>(
        &self,
        session_ids: &[&str],
        mut read: impl FnMut(&Runtime, Option<&PodRecord>) -> T,
    ) -> Vec<Option<T>> {
        let inner = self.lock();
        session_ids
            .iter()
            .map(|session_id| {
                let runtime_id = inner.sessions.get(&session_key(session_id))?;
                let runtime = inner.runtimes.get(runtime_id).filter(|r| r.session_id == *session_id)?;
                Some(read(runtime, inner.pods.get(runtime_id)))
            })
            .collect()
    }

    /// Runtimes for which `diverges` holds, with their pods.
    pub fn select(&self, mut diverges: impl FnMut(&Runtime, Option<&PodRecord>) -> bool) -> Vec<Runtime> {
        let inner = self.lock();
        inner
            .runtimes
            .values()
            .filter(|r| diverges(r, inner.pods.get(&r.id)))
            .cloned()
            .collect()
    }

    /// Records a pod the service has just created.
    pub fn pod_created(&self, runtime_id: &str, record: PodRecord) {
        self.lock().record_created_pod(runtime_id, record);
    }

    /// Records that the service has just deleted the runtime's pod: until the watch reports it
    /// gone, it terminates and its name is taken. A pod already reported gone stays gone.
    pub fn pod_deleted(&self, runtime_id: &str) {
        if let Some(record) = self.lock().pods.get_mut(runtime_id) {
            record.terminating = true;
            record.observation = PodObservation::new(PodStatus::NotFound);
            record.changed_at = Some(Instant::now());
        }
    }

    /// Applies a pod watch event. Events of an older pod of the runtime (the one a resume or a
    /// repair replaced) are stale and ignored; a newly added pod always counts.
    pub fn pod_event(&self, runtime_id: &str, event: PodEvent) {
        let mut inner = self.lock();
        let current_uid = inner.pods.get(runtime_id).map(|p| p.uid.clone());
        let is_current = |uid: &str| current_uid.as_deref().is_none_or(|current| current == uid);
        match event {
            PodEvent::Seen { added, record } if added || is_current(&record.uid) => {
                inner.pods.insert(runtime_id.to_string(), record);
            }
            PodEvent::Gone { uid } if is_current(&uid) => {
                inner.pods.remove(runtime_id);
            }
            _ => {}
        }
    }

    /// Replaces the pods with a list that began at `listed_at`, except where the service
    /// itself changed a pod since: the list cannot know of that.
    pub fn replace_pods(&self, listed_at: Instant, mut listed: HashMap<String, PodRecord>) {
        let mut inner = self.lock();
        let changed_since: HashMap<String, PodRecord> = inner
            .pods
            .drain()
            .filter(|(_, record)| record.changed_at.is_some_and(|at| at >= listed_at))
            .collect();
        listed.extend(changed_since);
        inner.pods = listed;
    }

    /// Brings the runtimes in line with a list of anchors (id -> desired state) that began at
    /// `listed_at`: runtimes whose anchor is gone are forgotten, unless the service changed
    /// them after the list began.
    pub fn replace_anchors(&self, listed_at: Instant, anchors: &HashMap<String, DesiredState>) -> Vec<String> {
        let mut inner = self.lock();
        let mut forgotten = Vec::new();
        for runtime in inner.runtimes.values_mut() {
            match anchors.get(&runtime.id) {
                Some(desired) if runtime.changed_at < listed_at => runtime.desired = *desired,
                None if runtime.changed_at < listed_at => forgotten.push(runtime.id.clone()),
                _ => {}
            }
        }
        for runtime_id in &forgotten {
            if let Some(runtime) = inner.runtimes.remove(runtime_id) {
                inner.sessions.remove(&session_key(&runtime.session_id));
            }
        }
        forgotten
    }

    pub fn set_ready(&self) {
        self.lock().ready = true;
    }

    pub fn is_ready(&self) -> bool {
        self.lock().ready
    }

    pub fn len(&self) -> usize {
        self.lock().runtimes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
