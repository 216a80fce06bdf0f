//! What the service knows of the cluster: the runtimes (from their anchor Secrets) and their
//! pods (from the pod watch), joined by runtime id. A cache: the cluster stays the truth.
//!
//! One mutex guards it, held only for map operations, never across a Kubernetes call. Work on
//! one session (and so on its runtime) is serialised by `lock_session`, which blocks callers
//! for that session only: different runtimes proceed in parallel.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Instant, SystemTime};

use crate::config::Config;
use crate::pod_status::{PodObservation, PodRecord, PodStatus};
use crate::runtime::{DesiredState, Runtime, RuntimeView};

#[derive(Default)]
pub struct Store {
    inner: Mutex<Inner>,
    session_released: Condvar,
}

#[derive(Default)]
struct Inner {
    /// Runtime id -> what is known of it.
    entries: HashMap<String, Entry>,
    /// Lowercased session id -> runtime id: session ids equal up to case share one host name.
    sessions: HashMap<String, String>,
    /// Lowercased session ids with an operation in flight.
    busy_sessions: HashSet<String>,
    /// Runtimes whose `/start` is creating objects: the orphan sweep leaves them alone.
    starting: HashSet<String>,
    ready: bool,
}

/// One runtime id's runtime (from its anchor) and pod (from the pod watch). Either may be
/// known alone: the watch can report the pod of a start still in flight, and the pod of a
/// stopped runtime until it is gone. Both are shared, so that readers take them out of the
/// lock and build their answers without holding it.
#[derive(Default)]
struct Entry {
    runtime: Option<Arc<Runtime>>,
    pod: Option<Arc<PodRecord>>,
    /// The runtime's JSON as the last `/list` encoded it; see `EncodedView`.
    encoded: Option<Arc<EncodedView>>,
}

impl Entry {
    fn is_empty(&self) -> bool {
        self.runtime.is_none() && self.pod.is_none()
    }

    fn snapshot(&self) -> Option<Snapshot> {
        Some(Snapshot {
            runtime: self.runtime.clone()?,
            pod: self.pod.clone(),
            encoded: self.encoded.clone().filter(|encoded| encoded.is_current(self)),
        })
    }

    /// The answer to a create is the pod's first version. The pod watch may already have
    /// reported a newer one, and the kubelet may not change the pod again for a long time
    /// (an unschedulable or a ready pod), so that report is kept.
    fn record_created_pod(&mut self, record: PodRecord) {
        if self.pod.as_ref().is_some_and(|known| known.uid == record.uid) {
            return;
        }
        self.pod = Some(Arc::new(PodRecord {
            changed_at: Some(Instant::now()),
            ..record
        }));
    }
}

/// A runtime and its pod as the store knew them at one moment, read without its lock.
#[derive(Clone)]
pub struct Snapshot {
    pub runtime: Arc<Runtime>,
    pub pod: Option<Arc<PodRecord>>,
    /// Its JSON, if a `/list` encoded this very runtime and pod before.
    pub encoded: Option<Arc<EncodedView>>,
}

/// A runtime's JSON as `/list` sends it, with the runtime and pod it was encoded from. Most
/// runtimes do not change between two lists, and encoding thousands of views is most of a
/// list's work, so the JSON is kept in the store. It is current while the store holds these
/// very two: any change puts a new runtime or pod in place (holding them here makes
/// `Arc::make_mut` copy rather than change them in place).
pub struct EncodedView {
    runtime: Arc<Runtime>,
    pod: Option<Arc<PodRecord>>,
    pub json: Box<[u8]>,
}

impl EncodedView {
    /// `None` for a view that changes with time alone (an image pull failing within its grace).
    pub fn of(snapshot: &Snapshot, json: &[u8]) -> Option<EncodedView> {
        let timeless = snapshot
            .pod
            .as_ref()
            .is_none_or(|pod| !pod.observation.depends_on_time());
        timeless.then(|| EncodedView {
            runtime: snapshot.runtime.clone(),
            pod: snapshot.pod.clone(),
            json: json.into(),
        })
    }

    fn is_current(&self, entry: &Entry) -> bool {
        let same_pod = match (&self.pod, &entry.pod) {
            (Some(mine), Some(now)) => Arc::ptr_eq(mine, now),
            (None, None) => true,
            _ => false,
        };
        same_pod
            && entry
                .runtime
                .as_ref()
                .is_some_and(|now| Arc::ptr_eq(&self.runtime, now))
    }
}

impl Snapshot {
    /// The runtime object clients see, as of `now`.
    pub fn view(&self, config: &Config, now: SystemTime) -> RuntimeView {
        self.runtime.view(self.pod.as_deref(), config, now)
    }
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
    /// Drops the entry of `runtime_id` once nothing is known of it.
    fn forget_if_empty(&mut self, runtime_id: &str) {
        if self.entries.get(runtime_id).is_some_and(Entry::is_empty) {
            self.entries.remove(runtime_id);
        }
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
        inner.entries.get(runtime_id).is_some_and(|e| e.runtime.is_some()) || inner.starting.contains(runtime_id)
    }

    pub fn runtime(&self, runtime_id: &str) -> Option<Arc<Runtime>> {
        self.lock().entries.get(runtime_id)?.runtime.clone()
    }

    /// The runtime of a session, found regardless of case (the caller checks the exact id).
    pub fn runtime_of_session(&self, session_id: &str) -> Option<Arc<Runtime>> {
        let inner = self.lock();
        let runtime_id = inner.sessions.get(&session_key(session_id))?;
        inner.entries.get(runtime_id)?.runtime.clone()
    }

    /// Adds a runtime with the pod its start created (`None`: it has none yet). The pod watch
    /// may have reported that pod already: see `pod_created`.
    pub fn insert(&self, runtime: Runtime, created_pod: Option<PodRecord>) {
        let mut inner = self.lock();
        inner
            .sessions
            .insert(session_key(&runtime.session_id), runtime.id.clone());
        let entry = inner.entries.entry(runtime.id.clone()).or_default();
        if let Some(record) = created_pod {
            entry.record_created_pod(record);
        }
        entry.runtime = Some(Arc::new(runtime));
    }

    /// Forgets a runtime; its pod is known until the watch reports it gone.
    pub fn remove(&self, runtime_id: &str) -> Option<Arc<Runtime>> {
        let mut inner = self.lock();
        let runtime = inner.entries.get_mut(runtime_id)?.runtime.take()?;
        inner.sessions.remove(&session_key(&runtime.session_id));
        inner.forget_if_empty(runtime_id);
        Some(runtime)
    }

    /// Records a desired state the service has just written on the anchor.
    pub fn set_desired(&self, runtime_id: &str, desired: DesiredState) {
        if let Some(runtime) = self.lock().entries.get_mut(runtime_id).and_then(|e| e.runtime.as_mut()) {
            let runtime = Arc::make_mut(runtime);
            runtime.desired = desired;
            runtime.changed_at = Instant::now();
        }
    }

    /// Records a desired state the anchor watch reports (set by the service or an operator).
    pub fn observe_desired(&self, runtime_id: &str, desired: DesiredState) {
        if let Some(runtime) = self.lock().entries.get_mut(runtime_id).and_then(|e| e.runtime.as_mut()) {
            if runtime.desired != desired {
                Arc::make_mut(runtime).desired = desired;
            }
        }
    }

    /// One runtime and its pod.
    pub fn find(&self, runtime_id: &str) -> Option<Snapshot> {
        self.lock().entries.get(runtime_id)?.snapshot()
    }

    /// Every runtime and its pod, oldest runtime first.
    pub fn all(&self) -> Vec<Snapshot> {
        let mut all: Vec<(SystemTime, Snapshot)> = self
            .lock()
            .entries
            .values()
            .filter_map(|entry| Some((entry.runtime.as_ref()?.created_at, entry.snapshot()?)))
            .collect();
        // The creation time sits beside each snapshot: sorting thousands compares it without
        // following a pointer; the id (behind one) only settles ties.
        all.sort_unstable_by(|(a_at, a), (b_at, b)| a_at.cmp(b_at).then_with(|| a.runtime.id.cmp(&b.runtime.id)));
        all.into_iter().map(|(_, snapshot)| snapshot).collect()
    }

    /// Keeps views `/list` has just encoded for the next one, unless their runtime changed since.
    pub fn keep_encoded(&self, views: Vec<EncodedView>) {
        let mut inner = self.lock();
        for view in views {
            if let Some(entry) = inner.entries.get_mut(&view.runtime.id) {
                if view.is_current(entry) {
                    entry.encoded = Some(Arc::new(view));
                }
            }
        }
    }

    /// The runtime of each session id and its pod, in order; `None` for an unknown one.
    pub fn of_sessions(&self, session_ids: &[&str]) -> Vec<Option<Snapshot>> {
        let inner = self.lock();
        session_ids
            .iter()
            .map(|session_id| {
                let runtime_id = inner.sessions.get(&session_key(session_id))?;
                let snapshot = inner.entries.get(runtime_id)?.snapshot()?;
                (snapshot.runtime.session_id == *session_id).then_some(snapshot)
            })
            .collect()
    }

    /// Runtimes for which `diverges` holds.
    pub fn select(&self, mut diverges: impl FnMut(&Runtime, Option<&PodRecord>) -> bool) -> Vec<Arc<Runtime>> {
        let inner = self.lock();
        inner
            .entries
            .values()
            .filter_map(|entry| {
                let runtime = entry.runtime.as_ref()?;
                diverges(runtime, entry.pod.as_deref()).then(|| runtime.clone())
            })
            .collect()
    }

    /// Records a pod the service has just created (see `Entry::record_created_pod`).
    pub fn pod_created(&self, runtime_id: &str, record: PodRecord) {
        let mut inner = self.lock();
        inner
            .entries
            .entry(runtime_id.to_string())
            .or_default()
            .record_created_pod(record);
    }

    /// Records that the service has just deleted the runtime's pod: until the watch reports it
    /// gone, it terminates and its name is taken. A pod already reported gone stays gone.
    pub fn pod_deleted(&self, runtime_id: &str) {
        if let Some(record) = self.lock().entries.get_mut(runtime_id).and_then(|e| e.pod.as_mut()) {
            let record = Arc::make_mut(record);
            record.terminating = true;
            record.observation = PodObservation::new(PodStatus::NotFound);
            record.changed_at = Some(Instant::now());
        }
    }

    /// Applies a pod watch event. Events of an older pod of the runtime (the one a resume or a
    /// repair replaced) are stale and ignored; a newly added pod always counts.
    pub fn pod_event(&self, runtime_id: &str, event: PodEvent) {
        let mut inner = self.lock();
        let entry = inner.entries.entry(runtime_id.to_string()).or_default();
        let is_current = |uid: &str| entry.pod.as_ref().is_none_or(|current| current.uid == uid);
        match event {
            PodEvent::Seen { added, record } if added || is_current(&record.uid) => {
                entry.pod = Some(Arc::new(record));
            }
            PodEvent::Gone { uid } if is_current(&uid) => entry.pod = None,
            _ => {}
        }
        inner.forget_if_empty(runtime_id);
    }

    /// Replaces the pods with a list that began at `listed_at`, except where the service
    /// itself changed a pod since: the list cannot know of that.
    pub fn replace_pods(&self, listed_at: Instant, mut listed: HashMap<String, PodRecord>) {
        let mut inner = self.lock();
        for (runtime_id, entry) in &mut inner.entries {
            let changed_since = entry
                .pod
                .as_ref()
                .is_some_and(|pod| pod.changed_at.is_some_and(|at| at >= listed_at));
            let listed = listed.remove(runtime_id);
            if !changed_since {
                entry.pod = listed.map(Arc::new);
            }
        }
        for (runtime_id, record) in listed {
            inner.entries.entry(runtime_id).or_default().pod = Some(Arc::new(record));
        }
        inner.entries.retain(|_, entry| !entry.is_empty());
    }

    /// Brings the runtimes in line with a list of anchors (id -> desired state) that began at
    /// `listed_at`: runtimes whose anchor is gone are forgotten, unless the service changed
    /// them after the list began.
    pub fn replace_anchors(&self, listed_at: Instant, anchors: &HashMap<String, DesiredState>) -> Vec<String> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let mut forgotten = Vec::new();
        for (runtime_id, entry) in &mut inner.entries {
            let Some(runtime) = entry.runtime.as_mut().filter(|r| r.changed_at < listed_at) else {
                continue;
            };
            match anchors.get(runtime_id) {
                Some(desired) if runtime.desired != *desired => Arc::make_mut(runtime).desired = *desired,
                Some(_) => {}
                None => {
                    inner.sessions.remove(&session_key(&runtime.session_id));
                    entry.runtime = None;
                    forgotten.push(runtime_id.clone());
                }
            }
        }
        inner.entries.retain(|_, entry| !entry.is_empty());
        forgotten
    }

    pub fn set_ready(&self) {
        self.lock().ready = true;
    }

    pub fn is_ready(&self) -> bool {
        self.lock().ready
    }
}
