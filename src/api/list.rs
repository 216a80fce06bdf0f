//! The `/list` answer: thousands of runtimes, encoded a few at a time as the client reads them,
//! each from a cache of its JSON while it has not changed.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use crate::config::Config;
use crate::pod_status::PodRecord;
use crate::runtime::Runtime;
use crate::store::Snapshot;

/// How much of a `/list` answer is encoded at a time: a few runtimes' worth.
const LIST_CHUNK_BYTES: usize = 16 * 1024;

/// Each runtime's JSON as the last `/list` encoded it. Most runtimes do not change between two
/// lists, and encoding thousands of views is most of a list's work. A view is current while the
/// store holds the very runtime and pod it was encoded from: the store never changes them in
/// place, it puts new ones there (holding them here makes `Arc::make_mut` copy them).
#[derive(Default)]
pub struct EncodedViews {
    views: Mutex<HashMap<String, Arc<EncodedView>>>,
}

struct EncodedView {
    runtime: Arc<Runtime>,
    pod: Option<Arc<PodRecord>>,
    json: Box<[u8]>,
}

impl EncodedView {
    fn is_of(&self, snapshot: &Snapshot) -> bool {
        let same_pod = match (&self.pod, &snapshot.pod) {
            (Some(mine), Some(now)) => Arc::ptr_eq(mine, now),
            (None, None) => true,
            _ => false,
        };
        same_pod && Arc::ptr_eq(&self.runtime, &snapshot.runtime)
    }
}

impl EncodedViews {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<EncodedView>>> {
        self.views.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached JSON of each snapshot that has one current.
    fn find(&self, snapshots: &[Snapshot]) -> Vec<Option<Arc<EncodedView>>> {
        let views = self.lock();
        snapshots
            .iter()
            .map(|snapshot| {
                views
                    .get(&snapshot.runtime.id)
                    .filter(|view| view.is_of(snapshot))
                    .cloned()
            })
            .collect()
    }

    fn keep(&self, fresh: Vec<EncodedView>) {
        let mut views = self.lock();
        for view in fresh {
            views.insert(view.runtime.id.clone(), Arc::new(view));
        }
    }

    /// Drops the views of runtimes that are gone, once a list has seen every runtime.
    fn retain(&self, runtime_ids: &HashSet<&str>) {
        self.lock().retain(|id, _| runtime_ids.contains(id.as_str()));
    }
}

/// The `/list` body, a `Read` that encodes as it is read: however many runtimes there are, a
/// request holds their snapshots and a few KiB of JSON, never the whole answer.
pub struct ListBody<'a> {
    config: &'a Config,
    cache: &'a EncodedViews,
    snapshots: Vec<Snapshot>,
    /// The next snapshot to encode.
    next: usize,
    include_paused: bool,
    now: SystemTime,
    /// Encoded and not yet read, from `read_from`.
    encoded: Vec<u8>,
    read_from: usize,
    started: bool,
    finished: bool,
}

impl<'a> ListBody<'a> {
    pub fn new(
        config: &'a Config,
        cache: &'a EncodedViews,
        snapshots: Vec<Snapshot>,
        include_paused: bool,
        now: SystemTime,
    ) -> ListBody<'a> {
        ListBody {
            config,
            cache,
            snapshots,
            next: 0,
            include_paused,
            now,
            encoded: b"{\"runtimes\":[".to_vec(),
            read_from: 0,
            started: false,
            finished: false,
        }
    }

    /// Encodes the next runtimes; false once everything has been encoded.
    fn encode_more(&mut self) -> std::io::Result<bool> {
        if self.finished {
            return Ok(false);
        }
        self.encoded.clear();
        self.read_from = 0;
        // A chunk's worth is at most this many runtimes, each at least this long.
        let batch_end = (self.next + LIST_CHUNK_BYTES / 256).min(self.snapshots.len());
        let cached = self.cache.find(&self.snapshots[self.next..batch_end]);
        let mut fresh = Vec::new();
        for cached in cached {
            if self.encoded.len() >= LIST_CHUNK_BYTES {
                break;
            }
            let snapshot = &self.snapshots[self.next];
            self.next += 1;
            if snapshot.runtime.is_paused() && !self.include_paused {
                continue;
            }
            if self.started {
                self.encoded.push(b',');
            }
            self.started = true;
            match cached {
                Some(view) => self.encoded.extend_from_slice(&view.json),
                None => {
                    let start = self.encoded.len();
                    serde_json::to_writer(&mut self.encoded, &snapshot.view(self.config, self.now))?;
                    fresh.extend(encoded_view(snapshot, &self.encoded[start..]));
                }
            }
        }
        if !fresh.is_empty() {
            self.cache.keep(fresh);
        }
        if self.next == self.snapshots.len() {
            self.encoded.extend_from_slice(b"]}");
            self.finished = true;
            let ids: HashSet<&str> = self.snapshots.iter().map(|s| s.runtime.id.as_str()).collect();
            self.cache.retain(&ids);
        }
        Ok(true)
    }
}

/// The view to cache, unless it changes with time alone (an image pull failing within its
/// grace reads `failed` once the grace is over).
fn encoded_view(snapshot: &Snapshot, json: &[u8]) -> Option<EncodedView> {
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

impl Read for ListBody<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.read_from == self.encoded.len() {
            if !self.encode_more()? {
                return Ok(0);
            }
        }
        let left = &self.encoded[self.read_from..];
        let n = left.len().min(out.len());
        out[..n].copy_from_slice(&left[..n]);
        self.read_from += n;
        Ok(n)
    }
}
