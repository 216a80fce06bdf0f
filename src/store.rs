//! What the service knows of the cluster: the runtimes (from their anchors) and their pods (from
//! the pod watch), joined by runtime id. A cache in the manner of a reflector: the cluster stays
//! the truth, and the store only applies what it says and what the service itself just did.
//!
//! - What the cluster says arrives as events: a watch event is one, and a list is a series of
//!   them (`apply_pod_list`, `apply_anchor_list`), applied by the same rules.
//! - What the service did (`record_*`) is known before the watch reports it, and is stamped
//!   with the time: a list that began earlier cannot know of it and does not undo it.
//! - Readers take `Arc` snapshots out of the lock and build their answers without it.
//!
//! One mutex guards it, held only for map operations, never across a Kubernetes call. Work on one
//! session (and so on its runtime) is serialised by `lock_session`, which blocks callers for that
//! session only: different runtimes proceed in parallel.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Instant, SystemTime};

use crate::config::Config;
use crate::names::session_host;
use crate::pod_status::{Agent, PodObservation, PodRecord, PodStatus};
use crate::runtime::{Desire, DesiredState, Runtime, RuntimeView, Status};
use crate::warm::objects::WarmRuntime;

#[derive(Default)]
pub struct Store {
    inner: Mutex<Inner>,
    session_released: Condvar,
}

#[derive(Default)]
struct Inner {
    /// Runtime id -> what is known of it.
    entries: HashMap<String, Entry>,
    /// Session host form (`names::session_host`) -> runtime id.
    sessions: HashMap<String, String>,
    /// Sessions (host form) with an operation in flight.
    busy_sessions: HashSet<String>,
    /// Runtimes whose `/start` is creating objects: the orphan sweep leaves them alone.
    starting: HashSet<String>,
    ready: bool,
    /// Places taken by starts and resumes still in flight.
    slots_held: usize,
    /// Unclaimed runtimes of the warm pools, by id: no client sees them.
    warm: HashMap<String, Arc<WarmRuntime>>,
    /// Warm runtimes taken for a claim: never warm again, whatever a late event says.
    claimed: HashSet<String>,
}

/// One runtime id's runtime (from its anchor) and pod (from the pod watch). Either may be known
/// alone: the watch can report the pod of a start still in flight, and the pod of a stopped
/// runtime until it is gone.
#[derive(Default)]
struct Entry {
    runtime: Option<Arc<Runtime>>,
    pod: Option<Arc<PodRecord>>,
    /// The service deleted the pod (a pause, a replacement): its going is expected.
    pod_deleted_by_service: bool,
    /// A running runtime's pod went without the service deleting it (an eviction, a drain,
    /// `kubectl delete pod`): the pod convergence creates next is a recreation.
    pod_vanished: bool,
}

impl Entry {
    fn is_empty(&self) -> bool {
        self.runtime.is_none() && self.pod.is_none()
    }

    fn snapshot(&self) -> Option<Snapshot> {
        Some(Snapshot {
            runtime: self.runtime.clone()?,
            pod: self.pod.clone(),
        })
    }

    /// A warm runtime's: its pod Ready, its agent dormant with its routes built.
    fn can_be_claimed(&self) -> bool {
        self.pod
            .as_deref()
            .is_some_and(|pod| pod.agent == Agent::Dormant { routes_built: true } && pod.is_ready_and_staying())
    }

    /// Whether the service changed the runtime at or after `listed_at`: a list that began
    /// before cannot know of that change.
    fn runtime_changed_since(&self, listed_at: Instant) -> bool {
        self.runtime.as_ref().is_some_and(|r| r.changed_at >= listed_at)
    }

    /// The same for its pod.
    fn pod_changed_since(&self, listed_at: Instant) -> bool {
        self.pod
            .as_ref()
            .is_some_and(|pod| pod.changed_at.is_some_and(|at| at >= listed_at))
    }
}

/// A runtime and its pod as the store knew them at one moment, read without its lock.
#[derive(Clone)]
pub struct Snapshot {
    pub runtime: Arc<Runtime>,
    pub pod: Option<Arc<PodRecord>>,
}

impl Snapshot {
    /// What the runtime is, as of `now`.
    pub fn status(&self, config: &Config, now: SystemTime) -> Status {
        self.runtime.status_at(self.pod.as_deref(), config, now).0
    }

    /// The runtime object clients see, as of `now`.
    pub fn view(&self, config: &Config, now: SystemTime) -> RuntimeView {
        self.runtime.view(self.pod.as_deref(), config, now)
    }
}

/// What the cluster says of a runtime's pod.
#[derive(Debug)]
pub enum PodEvent {
    /// The pod was created (`added`) or changed.
    Seen { added: bool, record: PodRecord },
    /// The pod with this uid is gone.
    Gone { uid: String },
}

/// What the cluster says of a runtime's anchor.
#[derive(Debug)]
pub enum AnchorEvent {
    /// It records this desired state (set by the service or by an operator).
    Desired(Desire),
    /// It is gone, or being deleted: so is the runtime.
    Gone,
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

/// A place among the runtimes not paused (`MAX_RUNNING_RUNTIMES`), held from the check to the
/// start or resume it allows, which fills it; given back on drop if it was not filled.
pub struct Slot<'a> {
    store: &'a Store,
    filled: bool,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if !self.filled {
            self.store.lock().slots_held -= 1;
        }
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
    /// Events of an older pod of the runtime (the one a resume or a repair replaced) are stale
    /// and ignored; a newly added pod always counts. Returns the pod when this made it ready.
    fn apply_pod(&mut self, runtime_id: &str, event: PodEvent) -> Option<Arc<PodRecord>> {
        let entry = self.entries.entry(runtime_id.to_string()).or_default();
        let is_current = |uid: &str| entry.pod.as_ref().is_none_or(|current| current.uid == uid);
        let ready = |pod: &PodRecord| pod.observation.status == PodStatus::Ready;
        let mut became_ready = None;
        match event {
            PodEvent::Seen { added, record } if added || is_current(&record.uid) => {
                let was_ready = entry
                    .pod
                    .as_deref()
                    .is_some_and(|pod| pod.uid == record.uid && ready(pod));
                // A container that has not restarted keeps the agent as the service prepared it.
                let same_container = |known: &PodRecord| {
                    known.uid == record.uid && known.observation.restart_count == record.observation.restart_count
                };
                let agent = match entry.pod.as_deref() {
                    Some(known) if same_container(known) && record.agent != Agent::Serving => known.agent,
                    _ => record.agent,
                };
                let record = Arc::new(PodRecord { agent, ..record });
                if !was_ready && ready(&record) {
                    became_ready = Some(record.clone());
                }
                entry.pod = Some(record);
            }
            PodEvent::Gone { uid } if is_current(&uid) => {
                let running = entry
                    .runtime
                    .as_ref()
                    .is_some_and(|runtime| runtime.desired.state == DesiredState::Running);
                if entry.pod.is_some() && running && !entry.pod_deleted_by_service {
                    entry.pod_vanished = true;
                }
                entry.pod_deleted_by_service = false;
                entry.pod = None;
            }
            _ => {}
        }
        self.forget_if_empty(runtime_id);
        became_ready
    }

    /// True when this forgot the runtime.
    fn apply_anchor(&mut self, runtime_id: &str, event: AnchorEvent) -> bool {
        let Some(entry) = self.entries.get_mut(runtime_id) else {
            return false;
        };
        let Some(runtime) = entry.runtime.as_mut() else {
            return false;
        };
        match event {
            AnchorEvent::Desired(desired) => {
                if runtime.desired != desired {
                    Arc::make_mut(runtime).desired = desired;
                }
                false
            }
            AnchorEvent::Gone => {
                self.sessions.remove(&session_host(&runtime.session_id));
                entry.runtime = None;
                self.forget_if_empty(runtime_id);
                true
            }
        }
    }

    fn insert_runtime(&mut self, runtime: Runtime) {
        self.sessions
            .insert(session_host(&runtime.session_id), runtime.id.clone());
        let entry = self.entries.entry(runtime.id.clone()).or_default();
        entry.runtime = Some(Arc::new(runtime));
    }

    /// Replaces the pods with a list that began at `listed_at`, as the events it amounts to:
    /// every listed pod is seen anew, and a known pod the list lacks is gone. Entries the
    /// service changed since the list began are left as they are.
    fn apply_pod_list(&mut self, listed_at: Instant, mut listed: HashMap<String, PodRecord>) {
        let mut events = Vec::new();
        for (runtime_id, entry) in &self.entries {
            let listed = listed.remove(runtime_id);
            if entry.pod_changed_since(listed_at) {
                continue;
            }
            match (listed, &entry.pod) {
                (Some(record), _) => events.push((runtime_id.clone(), PodEvent::Seen { added: true, record })),
                (None, Some(pod)) => events.push((runtime_id.clone(), PodEvent::Gone { uid: pod.uid.clone() })),
                (None, None) => {}
            }
        }
        events.extend(
            listed
                .into_iter()
                .map(|(runtime_id, record)| (runtime_id, PodEvent::Seen { added: true, record })),
        );
        for (runtime_id, event) in events {
            self.apply_pod(&runtime_id, event);
        }
    }

    /// The answer to a create is the pod's first version. The pod watch may already have
    /// reported a newer one, and the kubelet may not change the pod again for a long time (an
    /// unschedulable or a ready pod), so that report is kept.
    fn record_pod_created(&mut self, runtime_id: &str, record: PodRecord) {
        let entry = self.entries.entry(runtime_id.to_string()).or_default();
        if entry.pod.as_ref().is_some_and(|known| known.uid == record.uid) {
            return;
        }
        entry.pod = Some(Arc::new(PodRecord {
            changed_at: Some(Instant::now()),
            ..record
        }));
    }

    /// Drops the entry of `runtime_id` once nothing is known of it.
    fn forget_if_empty(&mut self, runtime_id: &str) {
        if self.entries.get(runtime_id).is_some_and(Entry::is_empty) {
            self.entries.remove(runtime_id);
        }
    }
}

impl Store {
    pub fn new() -> Store {
        Store::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    // ---- serialising work on a session ----

    /// Waits until no other operation works on this session, then holds it.
    pub fn lock_session(&self, session_id: &str) -> SessionGuard<'_> {
        let key = session_host(session_id);
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
        let key = session_host(session_id);
        if !self.lock().busy_sessions.insert(key.clone()) {
            return None;
        }
        Some(SessionGuard { store: self, key })
    }

    /// Marks a runtime whose objects `/start` is creating, until the guard drops.
    pub fn begin_start(&self, runtime_id: &str) -> StartGuard<'_> {
        self.lock().starting.insert(runtime_id.to_string());
        StartGuard {
            store: self,
            runtime_id: runtime_id.to_string(),
        }
    }

    // ---- readers ----

    /// Whether every runtime has been loaded from the cluster.
    pub fn is_ready(&self) -> bool {
        self.lock().ready
    }

    /// Whether a runtime exists, or is being started.
    pub fn is_known(&self, runtime_id: &str) -> bool {
        let inner = self.lock();
        inner.entries.get(runtime_id).is_some_and(|e| e.runtime.is_some())
            || inner.starting.contains(runtime_id)
            || inner.warm.contains_key(runtime_id)
    }

    pub fn runtime(&self, runtime_id: &str) -> Option<Arc<Runtime>> {
        self.lock().entries.get(runtime_id)?.runtime.clone()
    }

    /// The runtime of a session, found regardless of case (the caller checks the exact id).
    pub fn runtime_of_session(&self, session_id: &str) -> Option<Arc<Runtime>> {
        let inner = self.lock();
        let runtime_id = inner.sessions.get(&session_host(session_id))?;
        inner.entries.get(runtime_id)?.runtime.clone()
    }

    /// The runtimes for which `select` holds, given each one's pod.
    pub fn runtimes_where(&self, mut select: impl FnMut(&Runtime, Option<&PodRecord>) -> bool) -> Vec<Arc<Runtime>> {
        let inner = self.lock();
        inner
            .entries
            .values()
            .filter_map(|entry| {
                let runtime = entry.runtime.as_ref()?;
                select(runtime, entry.pod.as_deref()).then(|| runtime.clone())
            })
            .collect()
    }

    /// One runtime and its pod.
    pub fn snapshot(&self, runtime_id: &str) -> Option<Snapshot> {
        self.lock().entries.get(runtime_id)?.snapshot()
    }

    /// Every runtime and its pod, oldest runtime first.
    pub fn snapshots(&self) -> Vec<Snapshot> {
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

    /// The runtime of each session id and its pod, in order; `None` for an unknown one (and for
    /// one that differs from its session's id in case).
    pub fn snapshots_of_sessions(&self, session_ids: &[&str]) -> Vec<Option<Snapshot>> {
        let inner = self.lock();
        session_ids
            .iter()
            .map(|session_id| {
                let runtime_id = inner.sessions.get(&session_host(session_id))?;
                let snapshot = inner.entries.get(runtime_id)?.snapshot()?;
                (snapshot.runtime.session_id == *session_id).then_some(snapshot)
            })
            .collect()
    }

    // ---- what the cluster says ----

    /// Loads what recovery listed, every runtime and the pods of a list that began at
    /// `listed_at`; then the store is ready.
    pub fn load(&self, runtimes: Vec<Runtime>, listed_at: Instant, pods: HashMap<String, PodRecord>) {
        let mut inner = self.lock();
        for runtime in runtimes {
            inner.insert_runtime(runtime);
        }
        inner.apply_pod_list(listed_at, pods);
        inner.ready = true;
    }

    /// Applies a pod watch event; returns the pod when this made it ready.
    pub fn apply_pod(&self, runtime_id: &str, event: PodEvent) -> Option<Arc<PodRecord>> {
        self.lock().apply_pod(runtime_id, event)
    }

    /// Applies a list of pods (runtime id -> pod) that began at `listed_at`.
    pub fn apply_pod_list(&self, listed_at: Instant, listed: HashMap<String, PodRecord>) {
        self.lock().apply_pod_list(listed_at, listed);
    }

    /// Applies an anchor watch event; true when the runtime is forgotten by it.
    pub fn apply_anchor(&self, runtime_id: &str, event: AnchorEvent) -> bool {
        self.lock().apply_anchor(runtime_id, event)
    }

    /// Applies a list of anchors (runtime id -> desired state) that began at `listed_at`: a
    /// runtime whose anchor the list lacks is gone, unless the service changed it after the list
    /// began. Returns the runtimes forgotten.
    pub fn apply_anchor_list(&self, listed_at: Instant, anchors: &HashMap<String, Desire>) -> Vec<String> {
        let mut inner = self.lock();
        let events: Vec<(String, AnchorEvent)> = inner
            .entries
            .iter()
            .filter(|(_, entry)| entry.runtime.is_some() && !entry.runtime_changed_since(listed_at))
            .map(|(runtime_id, _)| {
                let event = anchors
                    .get(runtime_id)
                    .map_or(AnchorEvent::Gone, |desired| AnchorEvent::Desired(desired.clone()));
                (runtime_id.clone(), event)
            })
            .collect();
        events
            .into_iter()
            .filter_map(|(runtime_id, event)| inner.apply_anchor(&runtime_id, event).then_some(runtime_id))
            .collect()
    }

    // ---- the warm pools ----

    /// What the cluster says of a warm runtime's anchor: it is there (`Some`) or gone.
    pub fn apply_warm(&self, runtime_id: &str, warm: Option<WarmRuntime>) {
        let mut inner = self.lock();
        match warm {
            Some(warm) if !inner.claimed.contains(runtime_id) => {
                inner.warm.insert(runtime_id.to_string(), Arc::new(warm));
            }
            _ => {
                inner.warm.remove(runtime_id);
            }
        }
    }

    /// Every warm runtime the cluster has, from a list.
    pub fn load_warm(&self, listed: Vec<WarmRuntime>) {
        let mut inner = self.lock();
        let claimed = std::mem::take(&mut inner.claimed);
        inner.warm = listed
            .into_iter()
            .filter(|warm| !claimed.contains(&warm.id))
            .map(|warm| (warm.id.clone(), Arc::new(warm)))
            .collect();
        inner.claimed = claimed;
    }

    /// The warm runtimes and their pods.
    pub fn warm_runtimes(&self) -> Vec<(Arc<WarmRuntime>, Option<Arc<PodRecord>>)> {
        let inner = self.lock();
        inner
            .warm
            .values()
            .map(|warm| {
                let pod = inner.entries.get(&warm.id).and_then(|entry| entry.pod.clone());
                (warm.clone(), pod)
            })
            .collect()
    }

    /// How many warm runtimes of `pool` a claim could take now.
    pub fn ready_warm_pods(&self, pool: &str) -> usize {
        let inner = self.lock();
        inner
            .warm
            .values()
            .filter(|warm| warm.pool == pool && inner.entries.get(&warm.id).is_some_and(Entry::can_be_claimed))
            .count()
    }

    /// Takes the oldest warm runtime of `pool` whose agent is Ready and dormant, for a claim:
    /// from now on it is no pool's.
    pub fn take_warm(&self, pool: &str) -> Option<(Arc<WarmRuntime>, Arc<PodRecord>)> {
        let mut inner = self.lock();
        let (warm, pod) = inner
            .warm
            .values()
            .filter(|warm| warm.pool == pool)
            .filter_map(|warm| {
                let entry = inner.entries.get(&warm.id).filter(|entry| entry.can_be_claimed())?;
                Some((warm.clone(), entry.pod.clone()?))
            })
            .min_by(|(a, _), (b, _)| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)))?;
        inner.warm.remove(&warm.id);
        inner.claimed.insert(warm.id.clone());
        Some((warm, pod))
    }

    /// A warm runtime the service deletes.
    pub fn forget_warm(&self, runtime_id: &str) {
        self.lock().warm.remove(runtime_id);
    }

    // ---- what the service did ----

    /// A place for one more runtime not paused, if fewer than `cap` are (counting the places
    /// other starts hold): checked and taken at once, so concurrent starts cannot overshoot.
    pub fn take_slot(&self, cap: usize) -> Option<Slot<'_>> {
        let mut inner = self.lock();
        let not_paused = inner
            .entries
            .values()
            .filter(|entry| entry.runtime.as_ref().is_some_and(|runtime| !runtime.is_paused()))
            .count();
        if not_paused + inner.slots_held >= cap {
            return None;
        }
        inner.slots_held += 1;
        Some(Slot {
            store: self,
            filled: false,
        })
    }

    /// A runtime `/start` created, with the pod it created (`None`: none yet). The pod watch
    /// may have reported that pod already: see `record_pod_created`.
    pub fn record_started(&self, runtime: Runtime, created_pod: Option<PodRecord>, slot: Option<Slot<'_>>) {
        let mut inner = self.lock();
        fill(&mut inner, slot);
        if let Some(record) = created_pod {
            inner.record_pod_created(&runtime.id, record);
        }
        inner.insert_runtime(runtime);
    }

    /// A runtime `/stop` removed; its pod is known until the watch reports it gone.
    pub fn record_stopped(&self, runtime_id: &str) {
        self.lock().apply_anchor(runtime_id, AnchorEvent::Gone);
    }

    /// A desired state the service has just written on the anchor.
    pub fn record_desired(&self, runtime_id: &str, desired: Desire, slot: Option<Slot<'_>>) {
        let mut inner = self.lock();
        fill(&mut inner, slot);
        if let Some(runtime) = inner.entries.get_mut(runtime_id).and_then(|e| e.runtime.as_mut()) {
            let runtime = Arc::make_mut(runtime);
            runtime.desired = desired;
            runtime.changed_at = Instant::now();
        }
    }

    /// A pod the service has just created.
    pub fn record_pod_created(&self, runtime_id: &str, record: PodRecord) {
        self.lock().record_pod_created(runtime_id, record);
    }

    /// The service has just deleted the runtime's pod: until the watch reports it gone, it
    /// terminates and its name is taken. A pod already reported gone stays gone.
    pub fn record_pod_deleted(&self, runtime_id: &str) {
        let mut inner = self.lock();
        let Some(entry) = inner.entries.get_mut(runtime_id) else {
            return;
        };
        if let Some(record) = entry.pod.as_mut() {
            // Only a pod the service knows of is expected to go: a flag set without one would
            // hide the vanishing of the next pod.
            entry.pod_deleted_by_service = true;
            let record = Arc::make_mut(record);
            record.terminating = true;
            record.observation = PodObservation::new(PodStatus::NotFound);
            record.changed_at = Some(Instant::now());
        }
    }

    /// The agent of the runtime's pod `uid`, in its container that restarted `restart_count`
    /// times, is now `agent`: `Initialized` has its session's settings (the runtime may read
    /// `running`), `Dormant { routes_built: true }` may be claimed.
    pub fn record_agent(&self, runtime_id: &str, uid: &str, restart_count: u32, agent: Agent) {
        let mut inner = self.lock();
        let Some(pod) = inner.entries.get_mut(runtime_id).and_then(|entry| entry.pod.as_mut()) else {
            return;
        };
        if pod.uid == uid && pod.observation.restart_count == restart_count {
            Arc::make_mut(pod).agent = agent;
        }
    }

    /// Whether the runtime's pod vanished behind the service's back since this was last asked.
    pub fn take_vanished_pod(&self, runtime_id: &str) -> bool {
        self.lock()
            .entries
            .get_mut(runtime_id)
            .is_some_and(|entry| std::mem::take(&mut entry.pod_vanished))
    }
}

/// The runtime a slot was taken for is now counted itself: the slot is given back in the same
/// moment.
fn fill(inner: &mut Inner, slot: Option<Slot<'_>>) {
    if let Some(mut slot) = slot {
        slot.filled = true;
        inner.slots_held -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::start_request::StartRequest;
    use serde_json::json;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::thread;
    use std::time::Duration;

    fn runtime(id: &str, session_id: &str) -> Runtime {
        Runtime {
            id: id.to_string(),
            session_id: session_id.to_string(),
            session_api_key: "key".to_string(),
            anchor_uid: format!("uid-{id}"),
            request: StartRequest::from_json(&json!({"session_id": session_id}), "image:1").unwrap(),
            desired: Desire::new(DesiredState::Running, SystemTime::UNIX_EPOCH),
            created_at: SystemTime::UNIX_EPOCH,
            // Written long ago: lists that begin now know of it.
            changed_at: Instant::now()
                .checked_sub(Duration::from_secs(1))
                .expect("up for a second"),
        }
    }

    fn paused() -> Desire {
        Desire::new(DesiredState::Paused, SystemTime::UNIX_EPOCH)
    }

    fn pod(uid: &str, status: PodStatus) -> PodRecord {
        PodRecord {
            uid: uid.to_string(),
            terminating: false,
            observation: PodObservation::new(status),
            ip: None,
            unready_since: None,
            changed_at: None,
            agent: Agent::Serving,
        }
    }

    fn seen(added: bool, uid: &str, status: PodStatus) -> PodEvent {
        PodEvent::Seen {
            added,
            record: pod(uid, status),
        }
    }

    fn pod_status(store: &Store, runtime_id: &str) -> Option<(String, PodStatus)> {
        let pod = store.snapshot(runtime_id)?.pod?;
        Some((pod.uid.clone(), pod.observation.status))
    }

    fn loaded(runtimes: Vec<Runtime>) -> Store {
        let store = Store::new();
        store.load(runtimes, Instant::now(), HashMap::new());
        store
    }

    #[test]
    fn news_of_a_replaced_pod_is_stale() {
        let store = loaded(vec![runtime("r1", "s1")]);
        store.apply_pod("r1", seen(true, "old", PodStatus::Ready));
        store.apply_pod("r1", seen(true, "new", PodStatus::Pending));
        // The old pod's last words arrive after the new pod was added.
        store.apply_pod("r1", seen(false, "old", PodStatus::Running));
        store.apply_pod("r1", PodEvent::Gone { uid: "old".into() });
        assert_eq!(pod_status(&store, "r1"), Some(("new".into(), PodStatus::Pending)));
        store.apply_pod("r1", PodEvent::Gone { uid: "new".into() });
        assert_eq!(pod_status(&store, "r1"), None);
    }

    #[test]
    fn a_pod_turning_ready_is_told_once() {
        let store = loaded(vec![runtime("r1", "s1")]);
        assert!(store.apply_pod("r1", seen(true, "p", PodStatus::Running)).is_none());
        assert!(store.apply_pod("r1", seen(false, "p", PodStatus::Ready)).is_some());
        assert!(store.apply_pod("r1", seen(false, "p", PodStatus::Ready)).is_none());
        // Its replacement turning ready is news again, and the old pod's last words are not.
        assert!(store.apply_pod("r1", seen(true, "q", PodStatus::Ready)).is_some());
        assert!(store.apply_pod("r1", seen(false, "p", PodStatus::Ready)).is_none());
    }

    #[test]
    fn a_pod_gone_behind_the_service_s_back_is_told_once_and_one_it_deleted_never() {
        let store = loaded(vec![runtime("r1", "s1")]);
        // Deleting when no pod is known expects nothing of the next pod.
        store.record_pod_deleted("r1");
        store.apply_pod("r1", seen(true, "p", PodStatus::Ready));
        store.apply_pod("r1", PodEvent::Gone { uid: "p".into() });
        assert!(store.take_vanished_pod("r1"));
        assert!(!store.take_vanished_pod("r1"));
        store.apply_pod("r1", seen(true, "q", PodStatus::Ready));
        store.record_pod_deleted("r1");
        store.apply_pod("r1", PodEvent::Gone { uid: "q".into() });
        assert!(!store.take_vanished_pod("r1"), "the service deleted it");
    }

    #[test]
    fn the_watch_report_of_a_created_pod_beats_the_create_answer() {
        let store = loaded(vec![runtime("r1", "s1")]);
        store.apply_pod("r1", seen(true, "p", PodStatus::Ready));
        store.record_pod_created("r1", pod("p", PodStatus::Pending));
        assert_eq!(pod_status(&store, "r1"), Some(("p".into(), PodStatus::Ready)));
    }

    #[test]
    fn a_pod_list_replaces_what_it_knows_but_not_what_the_service_did_since() {
        let store = loaded(vec![runtime("r1", "s1"), runtime("r2", "s2"), runtime("r3", "s3")]);
        store.apply_pod("r1", seen(true, "a", PodStatus::Pending));
        store.apply_pod("r2", seen(true, "b", PodStatus::Ready));
        let listed_at = Instant::now();
        store.record_pod_created("r3", pod("c", PodStatus::Pending));
        let listed = HashMap::from([("r1".to_string(), pod("a", PodStatus::Ready))]);
        store.apply_pod_list(listed_at, listed);
        assert_eq!(
            pod_status(&store, "r1"),
            Some(("a".into(), PodStatus::Ready)),
            "seen anew"
        );
        assert_eq!(pod_status(&store, "r2"), None, "the list lacks it: gone");
        assert_eq!(
            pod_status(&store, "r3"),
            Some(("c".into(), PodStatus::Pending)),
            "created after the list began"
        );
    }

    #[test]
    fn an_anchor_list_that_lacks_a_runtime_drops_it() {
        let store = loaded(vec![runtime("r1", "s1"), runtime("r2", "s2"), runtime("r3", "s3")]);
        let listed_at = Instant::now();
        store.record_desired("r3", paused(), None);
        let anchors = HashMap::from([("r1".to_string(), paused())]);
        let forgotten = store.apply_anchor_list(listed_at, &anchors);
        assert_eq!(forgotten, ["r2"]);
        assert!(store.runtime("r2").is_none() && store.runtime_of_session("s2").is_none());
        assert_eq!(store.runtime("r1").map(|r| r.desired.clone()), Some(paused()));
        assert!(
            store.runtime("r3").is_some(),
            "changed by the service after the list began"
        );
    }

    #[test]
    fn an_anchor_event_sets_the_desired_state_or_forgets_the_runtime() {
        let store = loaded(vec![runtime("r1", "Session-A")]);
        assert!(!store.apply_anchor("r1", AnchorEvent::Desired(paused())));
        assert!(store.runtime("r1").is_some_and(|r| r.is_paused()));
        assert!(!store.apply_anchor("unknown", AnchorEvent::Gone));
        assert!(store.apply_anchor("r1", AnchorEvent::Gone));
        assert!(store.runtime_of_session("session-a").is_none());
        assert!(store.snapshots().is_empty());
    }

    #[test]
    fn sessions_are_found_regardless_of_case_but_batches_want_the_exact_id() {
        let store = loaded(vec![runtime("r1", "Session-A"), runtime("r2", "b")]);
        assert_eq!(
            store.runtime_of_session("session-a").map(|r| r.id.clone()),
            Some("r1".into())
        );
        let found = store.snapshots_of_sessions(&["b", "session-a", "Session-A", "nope"]);
        let ids: Vec<_> = found
            .iter()
            .map(|s| s.as_ref().map(|s| s.runtime.id.as_str()))
            .collect();
        assert_eq!(ids, [Some("r2"), None, Some("r1"), None]);
    }

    #[test]
    fn one_session_at_a_time_others_in_parallel() {
        let store = Arc::new(Store::new());
        let held = store.lock_session("Abc");
        assert!(store.try_lock_session("abc").is_none(), "the same session up to case");
        let other = store.try_lock_session("other");
        assert!(other.is_some(), "another session is free");

        let entered = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (store, entered) = (store.clone(), entered.clone());
            thread::spawn(move || {
                let _guard = store.lock_session("ABC");
                entered.store(true, Ordering::SeqCst);
            })
        };
        thread::sleep(Duration::from_millis(50));
        assert!(!entered.load(Ordering::SeqCst), "waits while the session is held");
        drop(held);
        waiter.join().unwrap();
        assert!(entered.load(Ordering::SeqCst));
        assert!(store.try_lock_session("abc").is_some(), "released again");
    }
}
