//! The runtimes the service knows, indexed by runtime id and by session id: a cache of the
//! cluster, which stays the source of truth.
//!
//! One mutex guards it, held only for map operations, never across a Kubernetes call. Work
//! on one session (and so on its runtime) is serialised by `lock_session`, which blocks other
//! callers for that session only: different runtimes proceed in parallel.

use std::collections::{HashMap, HashSet};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crate::pod_status::PodObservation;
use crate::runtime::Runtime;

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
    /// Lowercased session ids with an operation in flight.
    busy_sessions: HashSet<String>,
    ready: bool,
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
        let mut inner = self.lock();
        if !inner.busy_sessions.insert(key.clone()) {
            return None;
        }
        Some(SessionGuard { store: self, key })
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

    pub fn insert(&self, runtime: Runtime) {
        let mut inner = self.lock();
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

    /// Changes a runtime in place and returns it as it is now.
    pub fn update(&self, runtime_id: &str, change: impl FnOnce(&mut Runtime)) -> Option<Runtime> {
        let mut inner = self.lock();
        let runtime = inner.runtimes.get_mut(runtime_id)?;
        change(runtime);
        Some(runtime.clone())
    }

    /// `read` applied to every runtime, oldest first.
    pub fn map_all<T>(&self, mut read: impl FnMut(&Runtime) -> T) -> Vec<T> {
        let inner = self.lock();
        let mut runtimes: Vec<&Runtime> = inner.runtimes.values().collect();
        runtimes.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
        runtimes.into_iter().map(&mut read).collect()
    }

    /// `read` applied to the runtime of each session id, in order; `None` for an unknown one.
    pub fn map_sessions<T>(&self, session_ids: &[&str], mut read: impl FnMut(&Runtime) -> T) -> Vec<Option<T>> {
        let inner = self.lock();
        session_ids
            .iter()
            .map(|session_id| {
                let runtime_id = inner.sessions.get(&session_key(session_id))?;
                inner
                    .runtimes
                    .get(runtime_id)
                    .filter(|r| r.session_id == *session_id)
                    .map(&mut read)
            })
            .collect()
    }

    pub fn find<T>(&self, runtime_id: &str, read: impl FnOnce(&Runtime) -> T) -> Option<T> {
        self.lock().runtimes.get(runtime_id).map(read)
    }

    /// Records what a pod list that began at `listed_at` showed. A runtime whose pod the
    /// service created or deleted after that is left alone: the list cannot know of it.
    pub fn apply_pod_list(&self, listed_at: Instant, mut observe: impl FnMut(&str) -> PodObservation) {
        let mut inner = self.lock();
        for runtime in inner.runtimes.values_mut() {
            if runtime.pod_changed_at < listed_at {
                runtime.pod = observe(&runtime.id);
            }
        }
    }

    /// Runtimes for which `diverges` holds, judged only on lists newer than their last change.
    pub fn diverging(&self, listed_at: Instant, mut diverges: impl FnMut(&Runtime) -> bool) -> Vec<Runtime> {
        let inner = self.lock();
        inner
            .runtimes
            .values()
            .filter(|r| r.pod_changed_at < listed_at && diverges(r))
            .cloned()
            .collect()
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
