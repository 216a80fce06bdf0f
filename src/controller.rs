//! The lifecycle of runtimes (SPEC §6, §7): start, stop, pause and resume for clients, and the
//! background work that keeps the store true to the cluster and the cluster true to what each
//! runtime is asked to be.
//!
//! The cluster is the store of record. Each runtime's anchor Secret holds its session key,
//! original request and desired state, and owns every other object of the runtime. Order
//! makes it crash-safe: the anchor is created before anything it owns, and the desired state
//! is written on the anchor before the pod is touched, so a restart converges to what the
//! client last asked for.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::config::Config;
use crate::error::Error;
use crate::kube_rest::{Client, KubeError, PropagationPolicy, Resource, WatchEvent};
use crate::manifests::{self, MANAGED_SELECTOR, RUNTIME_ID_LABEL, object_name};
use crate::pod_status::{PodRecord, PodStatus};
use crate::registry::{Credentials, ImageReference, Registries, RegistryUnavailable};
use crate::runtime::{DesiredState, Runtime, RuntimeView, StartRequest, Status, random_hex, rfc3339};
use crate::store::{PodEvent, SessionGuard, Store};

/// How long one watch runs before the API server ends it and it is started again.
const WATCH_DURATION: Duration = Duration::from_secs(300);
/// The pause before trying the API server again after a failure.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

pub struct Controller {
    config: Config,
    kube: Client,
    registries: Registries,
    store: Store,
}

/// The answer to `/start`: a new runtime (201) or the session's existing one (200).
pub enum Started {
    Created(RuntimeView),
    Existing(RuntimeView),
}

/// Where the two watches start: the resourceVersions of the lists recovery read.
pub struct Recovered {
    pub anchors_version: String,
    pub pods_version: String,
}

fn runtime_id_of(object: &Value) -> Option<&str> {
    object["metadata"]["labels"][RUNTIME_ID_LABEL].as_str()
}

fn is_being_deleted(object: &Value) -> bool {
    !object["metadata"]["deletionTimestamp"].is_null()
}

/// A scoped thread's result; its panic, a bug, goes on up.
fn joined<T>(thread: thread::ScopedJoinHandle<'_, T>) -> T {
    thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// What recovery and the orphan sweep keep of a labelled object: whose it is and its name.
struct Labelled {
    resource: Resource,
    name: String,
    runtime_id: String,
    being_deleted: bool,
}

impl Labelled {
    fn of(resource: Resource, object: &Value) -> Option<Labelled> {
        Some(Labelled {
            resource,
            name: object["metadata"]["name"].as_str()?.to_string(),
            runtime_id: runtime_id_of(object)?.to_string(),
            being_deleted: is_being_deleted(object),
        })
    }
}

impl Controller {
    pub fn new(config: Config, kube: Client, registries: Registries) -> Controller {
        Controller {
            config,
            kube,
            registries,
            store: Store::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn view_of(&self, runtime_id: &str) -> Result<RuntimeView, Error> {
        self.store
            .find(runtime_id)
            .map(|found| found.view(&self.config, SystemTime::now()))
            .ok_or_else(|| Error::RuntimeNotFound(runtime_id.to_string()))
    }

    /// The kinds a runtime owns besides its pod, in the order `/start` creates them.
    fn owned_kinds(&self) -> Vec<Resource> {
        let mut kinds = Vec::new();
        if self.config.workspace.is_some() {
            kinds.push(Resource::PersistentVolumeClaims);
        }
        // The policy exists before the pod, so the pod never runs unconfined.
        if self.config.network_policy.is_some() {
            kinds.push(Resource::NetworkPolicies);
        }
        kinds.extend([Resource::Services, Resource::Ingresses]);
        kinds
    }

    fn manifest(&self, resource: Resource, runtime: &Runtime) -> Option<Value> {
        let (config, id, session, uid) = (&self.config, &runtime.id, &runtime.session_id, &runtime.anchor_uid);
        match resource {
            Resource::Pods => Some(manifests::pod(config, id, &runtime.request, uid)),
            Resource::Services => Some(manifests::service(config, id, session, uid)),
            Resource::Ingresses => Some(manifests::ingress(config, id, session, uid)),
            Resource::PersistentVolumeClaims => manifests::workspace_claim(config, id, session, uid),
            Resource::NetworkPolicies => manifests::network_policy(config, id, session, uid),
            Resource::Secrets => None,
        }
    }

    // ---- what clients ask ----

    /// `POST /start`: idempotent per session. An existing runtime is returned as it is,
    /// resumed when paused, or given a new pod when in error.
    pub fn start(&self, body: &Value) -> Result<Started, Error> {
        let request = StartRequest::from_json(body, &self.config.default_image)?;
        let _session = self.store.lock_session(&request.session_id);
        if let Some(existing) = self.store.runtime_of_session(&request.session_id) {
            if existing.session_id != request.session_id {
                return Err(Error::SessionConflict {
                    requested: request.session_id,
                    existing: existing.session_id.clone(),
                });
            }
            return self.run_again(&existing.id).map(Started::Existing);
        }

        let ignored = manifests::ignored_environment(&self.config, &request);
        if !ignored.is_empty() {
            log::warn!(
                "session {}: ignoring environment variables the service sets itself: {}",
                request.session_id,
                ignored.join(", ")
            );
        }
        let runtime_id = random_hex(16)?;
        let _starting = self.store.begin_start(&runtime_id);
        let session_api_key = random_hex(32)?;
        let created_at = SystemTime::now();
        let anchor = manifests::anchor_secret(
            &runtime_id,
            &session_api_key,
            &request,
            DesiredState::Running,
            &rfc3339(created_at),
        )
        .map_err(|e| Error::Internal(format!("cannot encode the start request: {e}")))?;
        let anchor = self.kube.create(Resource::Secrets, &anchor)?;
        let runtime = Runtime {
            id: runtime_id,
            session_id: request.session_id.clone(),
            session_api_key,
            anchor_uid: anchor["metadata"]["uid"].as_str().unwrap_or_default().to_string(),
            request,
            desired: DesiredState::Running,
            created_at,
            changed_at: Instant::now(),
        };
        let pod = match self.create_owned(&runtime) {
            Ok(pod) => pod,
            Err(error) => {
                // The anchor owns whatever was created: deleting it removes everything.
                let name = object_name(&runtime.id);
                if let Err(cleanup) = self
                    .kube
                    .delete(Resource::Secrets, &name, PropagationPolicy::Background)
                {
                    log::error!("runtime {}: cannot roll back a failed start: {cleanup}", runtime.id);
                }
                log::warn!("session {}: start failed: {error}", runtime.session_id);
                return Err(error.into());
            }
        };
        log::info!(
            "runtime {} started for session {} ({})",
            runtime.id,
            runtime.session_id,
            runtime.request.image
        );
        let pod = PodRecord::of(&pod);
        let view = runtime.view(pod.as_ref(), &self.config, SystemTime::now());
        self.store.insert(runtime, pod);
        Ok(Started::Created(view))
    }

    /// Creates everything the anchor owns, in order; returns the pod.
    fn create_owned(&self, runtime: &Runtime) -> Result<Value, KubeError> {
        let mut pod = Value::Null;
        let mut kinds = self.owned_kinds();
        let pod_position = kinds.iter().position(|k| *k == Resource::Services).unwrap_or(0);
        kinds.insert(pod_position, Resource::Pods);
        for resource in kinds {
            if let Some(manifest) = self.manifest(resource, runtime) {
                let created = self.kube.create(resource, &manifest)?;
                if resource == Resource::Pods {
                    pod = created;
                }
            }
        }
        Ok(pod)
    }

    /// `POST /stop`: removes every object of the runtime.
    pub fn stop(&self, runtime_id: &str) -> Result<RuntimeView, Error> {
        let (runtime, _session) = self.lock_runtime(runtime_id)?;
        let mut view = self.view_of(runtime_id)?;
        let name = object_name(runtime_id);
        // Once the anchor is gone, garbage collection removes the rest even if we die now.
        self.kube
            .delete(Resource::Secrets, &name, PropagationPolicy::Background)?;
        self.store.remove(runtime_id);
        for resource in [Resource::Pods].into_iter().chain(self.owned_kinds()) {
            if let Err(error) = self.kube.delete(resource, &name, PropagationPolicy::Background) {
                log::warn!(
                    "runtime {runtime_id}: {} left to garbage collection: {error}",
                    resource.plural()
                );
            }
        }
        log::info!("runtime {runtime_id} of session {} stopped", runtime.session_id);
        view.status = Status::Stopped;
        view.pod_status = PodStatus::NotFound;
        view.status_detail = None;
        Ok(view)
    }

    /// `POST /pause`: deletes the pod only; everything else stays for `/resume`.
    pub fn pause(&self, runtime_id: &str) -> Result<RuntimeView, Error> {
        let (runtime, _session) = self.lock_runtime(runtime_id)?;
        if runtime.is_paused() {
            return self.view_of(runtime_id);
        }
        self.record_desired_state(&runtime, DesiredState::Paused)?;
        self.delete_pod(runtime_id)?;
        log::info!("runtime {runtime_id} of session {} paused", runtime.session_id);
        self.view_of(runtime_id)
    }

    /// `POST /resume`: a paused runtime, or one in error, gets a new pod from its original
    /// request with the same session key; a starting or running one is returned as it is.
    pub fn resume(&self, runtime_id: &str) -> Result<RuntimeView, Error> {
        let (_runtime, _session) = self.lock_runtime(runtime_id)?;
        self.run_again(runtime_id)
    }

    /// What `/start` and `/resume` do to an existing runtime (its session is held).
    fn run_again(&self, runtime_id: &str) -> Result<RuntimeView, Error> {
        let view = self.view_of(runtime_id)?;
        let runtime = self
            .store
            .runtime(runtime_id)
            .ok_or_else(|| Error::RuntimeNotFound(runtime_id.to_string()))?;
        match view.status {
            Status::Paused => {
                self.record_desired_state(&runtime, DesiredState::Running)?;
                log::info!("runtime {} of session {} resuming", runtime.id, runtime.session_id);
            }
            Status::Error => {
                self.delete_pod(runtime_id)?;
                log::info!(
                    "runtime {} of session {} gets a new pod after an error",
                    runtime.id,
                    runtime.session_id
                );
            }
            Status::Starting | Status::Running | Status::Stopped => return Ok(view),
        }
        self.create_pod(&runtime)?;
        self.view_of(runtime_id)
    }

    /// Creates the runtime's pod. While its previous pod still terminates the name is taken:
    /// `converge` creates the pod once the old one is gone.
    fn create_pod(&self, runtime: &Runtime) -> Result<(), Error> {
        let pod = manifests::pod(&self.config, &runtime.id, &runtime.request, &runtime.anchor_uid);
        match self.kube.create(Resource::Pods, &pod) {
            Ok(pod) => {
                if let Some(record) = PodRecord::of(&pod) {
                    self.store.pod_created(&runtime.id, record);
                }
            }
            Err(KubeError::AlreadyExists(_)) => {
                log::info!("runtime {}: waiting for its previous pod to go", runtime.id)
            }
            Err(error) => return Err(error.into()),
        }
        Ok(())
    }

    fn delete_pod(&self, runtime_id: &str) -> Result<(), Error> {
        self.kube
            .delete(Resource::Pods, &object_name(runtime_id), PropagationPolicy::Background)?;
        self.store.pod_deleted(runtime_id);
        Ok(())
    }

    fn record_desired_state(&self, runtime: &Runtime, desired: DesiredState) -> Result<(), Error> {
        let patch = manifests::desired_state_patch(desired, &rfc3339(SystemTime::now()));
        self.kube
            .merge_patch(Resource::Secrets, &object_name(&runtime.id), &patch)?;
        self.store.set_desired(&runtime.id, desired);
        Ok(())
    }

    /// Holds the runtime's session and returns the runtime as it is now.
    fn lock_runtime(&self, runtime_id: &str) -> Result<(Arc<Runtime>, SessionGuard<'_>), Error> {
        let not_found = || Error::RuntimeNotFound(runtime_id.to_string());
        let session_id = self.store.runtime(runtime_id).ok_or_else(not_found)?.session_id.clone();
        let guard = self.store.lock_session(&session_id);
        // It may have been stopped while we waited.
        let runtime = self.store.runtime(runtime_id).ok_or_else(not_found)?;
        Ok((runtime, guard))
    }

    // ---- keeping the store true to the cluster ----

    /// Whether `image` can be pulled, asked of its registry with the credentials the sandbox pods
    /// would pull it with (the `IMAGE_PULL_SECRETS`).
    pub fn image_exists(&self, image: &str) -> Result<bool, Error> {
        let image = ImageReference::parse(image).map_err(|message| Error::invalid("image", message))?;
        let credentials = self.pull_credentials(&image.registry)?;
        self.registries
            .image_exists(&image, credentials.as_ref())
            .map_err(|RegistryUnavailable(message)| Error::Registry(message))
    }

    /// The first pull secret with credentials for `registry`. A missing secret is skipped, as
    /// the kubelet skips it.
    fn pull_credentials(&self, registry: &str) -> Result<Option<Credentials>, Error> {
        for name in &self.config.image_pull_secrets {
            let secret = match self.kube.get(Resource::Secrets, name) {
                Ok(secret) => secret,
                Err(KubeError::NotFound(_)) => {
                    log::warn!("image pull secret {name} does not exist");
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            if let Some(credentials) = Credentials::from_pull_secret(&secret, registry) {
                return Ok(Some(credentials));
            }
        }
        Ok(None)
    }

    /// Rebuilds the store from the cluster (SPEC §7): every runtime, running or paused, from
    /// its anchor; its pod; the objects a crash left missing are created and those whose
    /// anchor is gone deleted. Then the service is ready.
    pub fn recover(&self) -> Result<Recovered, KubeError> {
        let started = Instant::now();
        let listed_at = Instant::now();
        // Owned objects first, anchors second: an object created after its list began has
        // its anchor in the second list, so it is never taken for an orphan. Each list keeps
        // only what recovery needs of an object.
        // The owned kinds are listed beside the pods, each in a thread of its own: recovery
        // waits for the longest list rather than for their sum.
        let (pods, owned) = thread::scope(|scope| {
            let owned: Vec<_> = self
                .owned_kinds()
                .into_iter()
                .map(|resource| (resource, scope.spawn(move || self.list_labelled(resource))))
                .collect();
            let pods = self.kube.list_kept(Resource::Pods, MANAGED_SELECTOR, |pod| {
                Some((Labelled::of(Resource::Pods, &pod)?, PodRecord::of(&pod)))
            });
            let owned: Result<Vec<_>, KubeError> = owned
                .into_iter()
                .map(|(resource, listing)| Ok((resource, joined(listing)?)))
                .collect();
            (pods, owned)
        });
        let (pods, owned) = (pods?, owned?);
        let anchors = self.kube.list_kept(Resource::Secrets, MANAGED_SELECTOR, |anchor| {
            if is_being_deleted(&anchor) {
                return None;
            }
            Some(manifests::runtime_from_anchor(&anchor).map_err(|why| {
                let name = anchor["metadata"]["name"].as_str().unwrap_or_default();
                log::error!("the anchor {name} cannot be read ({why}); leaving its runtime alone");
                runtime_id_of(&anchor).map(str::to_string)
            }))
        })?;

        let mut runtimes = HashMap::new();
        let mut unreadable = HashSet::new();
        for read in anchors.items {
            match read {
                Ok(runtime) => {
                    runtimes.insert(runtime.id.clone(), runtime);
                }
                Err(runtime_id) => unreadable.extend(runtime_id),
            }
        }
        let has_anchor = |id: &str| runtimes.contains_key(id) || unreadable.contains(id);

        self.delete_orphans(
            pods.items
                .iter()
                .map(|(pod, _)| pod)
                .chain(owned.iter().flat_map(|(_, objects)| objects)),
            &has_anchor,
        );
        // A start interrupted by a crash left its anchor without some of what it owns.
        for (resource, objects) in &owned {
            let present: HashSet<&str> = objects.iter().map(|o| o.runtime_id.as_str()).collect();
            for runtime in runtimes.values().filter(|r| !present.contains(r.id.as_str())) {
                if let Some(manifest) = self.manifest(*resource, runtime) {
                    log::info!("runtime {}: creating its missing {}", runtime.id, resource.plural());
                    self.kube.create(*resource, &manifest)?;
                }
            }
        }

        let records = pods
            .items
            .into_iter()
            .filter_map(|(pod, record)| Some((pod.runtime_id, record?)))
            .collect();
        let count = runtimes.len();
        for runtime in runtimes.into_values() {
            self.store.insert(runtime, None);
        }
        self.store.replace_pods(listed_at, records);
        self.store.set_ready();
        log::info!("recovered {count} runtimes from the cluster in {:?}", started.elapsed());
        Ok(Recovered {
            anchors_version: anchors.resource_version,
            pods_version: pods.resource_version,
        })
    }

    /// Every labelled object of `resource`, as recovery and the sweep need it.
    fn list_labelled(&self, resource: Resource) -> Result<Vec<Labelled>, KubeError> {
        let listed = self
            .kube
            .list_kept(resource, MANAGED_SELECTOR, |object| Labelled::of(resource, &object))?;
        Ok(listed.items)
    }

    /// Deletes labelled objects whose runtime has no anchor (and is not being started).
    fn delete_orphans<'a>(
        &self,
        objects: impl Iterator<Item = &'a Labelled>,
        has_anchor: &dyn Fn(&str) -> bool,
    ) -> usize {
        let mut deleted = 0;
        for Labelled {
            resource,
            name,
            runtime_id,
            being_deleted,
        } in objects
        {
            if *being_deleted || has_anchor(runtime_id) || self.store.is_known(runtime_id) {
                continue;
            }
            log::info!("deleting {} {name}: its runtime's anchor is gone", resource.plural());
            match self.kube.delete(*resource, name, PropagationPolicy::Background) {
                Ok(_) => deleted += 1,
                Err(error) => log::warn!("cannot delete the orphaned {} {name}: {error}", resource.plural()),
            }
        }
        deleted
    }

    /// Looks for labelled objects whose anchor no longer exists and deletes them.
    pub fn sweep_orphans(&self) -> Result<usize, KubeError> {
        let mut objects = Vec::new();
        for resource in [Resource::Pods].into_iter().chain(self.owned_kinds()) {
            objects.extend(self.list_labelled(resource)?);
        }
        let anchors: HashSet<String> = self
            .kube
            .list_kept(Resource::Secrets, MANAGED_SELECTOR, |a| {
                runtime_id_of(&a).map(str::to_string)
            })?
            .items
            .into_iter()
            .collect();
        Ok(self.delete_orphans(objects.iter(), &|id| anchors.contains(id)))
    }

    /// Follows the sandbox pods forever, from the resourceVersion of the last list.
    pub fn follow_pods(&self, resource_version: String) {
        self.follow(
            Resource::Pods,
            resource_version,
            Controller::apply_pod_event,
            Controller::relist_pods,
        );
    }

    /// Follows the anchors forever: an operator's change or deletion reaches the store.
    pub fn follow_anchors(&self, resource_version: String) {
        self.follow(
            Resource::Secrets,
            resource_version,
            Controller::apply_anchor_event,
            Controller::relist_anchors,
        );
    }

    /// Watches `resource` from `resource_version`, again and again: a watch the server ends
    /// goes on from the last version seen, a broken one after a pause, and a gone version
    /// (410) after a fresh list.
    fn follow(
        &self,
        resource: Resource,
        mut resource_version: String,
        apply: fn(&Controller, WatchEvent),
        relist: fn(&Controller) -> Result<String, KubeError>,
    ) {
        loop {
            let outcome = self
                .kube
                .watch(resource, MANAGED_SELECTOR, &resource_version, WATCH_DURATION)
                .and_then(|events| {
                    for event in events {
                        let event = event?;
                        if let Some(version) = event_version(&event) {
                            resource_version = version;
                        }
                        apply(self, event);
                    }
                    Ok(())
                });
            match outcome {
                Ok(()) => {}
                Err(KubeError::Expired(message)) => {
                    log::info!(
                        "the {} watch must start over ({message}); listing again",
                        resource.plural()
                    );
                    resource_version = loop {
                        match relist(self) {
                            Ok(version) => break version,
                            Err(error) => {
                                log::warn!("cannot list the {}: {error}", resource.plural());
                                thread::sleep(RETRY_PAUSE);
                            }
                        }
                    };
                }
                Err(error) => {
                    log::warn!("the {} watch stopped: {error}", resource.plural());
                    thread::sleep(RETRY_PAUSE);
                }
            }
        }
    }

    fn apply_pod_event(&self, event: WatchEvent) {
        let (pod, added, gone) = match &event {
            WatchEvent::Added(pod) => (pod, true, false),
            WatchEvent::Modified(pod) => (pod, false, false),
            WatchEvent::Deleted(pod) => (pod, false, true),
            WatchEvent::Bookmark(_) => return,
        };
        let (Some(runtime_id), Some(record)) = (runtime_id_of(pod), PodRecord::of(pod)) else {
            return;
        };
        let event = if gone {
            PodEvent::Gone { uid: record.uid }
        } else {
            PodEvent::Seen { added, record }
        };
        self.store.pod_event(runtime_id, event);
    }

    fn apply_anchor_event(&self, event: WatchEvent) {
        let (anchor, deleted) = match &event {
            WatchEvent::Added(anchor) | WatchEvent::Modified(anchor) => (anchor, is_being_deleted(anchor)),
            WatchEvent::Deleted(anchor) => (anchor, true),
            WatchEvent::Bookmark(_) => return,
        };
        let Some(runtime_id) = runtime_id_of(anchor) else {
            return;
        };
        if deleted {
            if self.store.remove(runtime_id).is_some() {
                log::info!("runtime {runtime_id}: its anchor was deleted; garbage collection removes the rest");
            }
        } else if let Some(desired) = manifests::desired_state_of(anchor) {
            self.store.observe_desired(runtime_id, desired);
        }
    }

    fn relist_pods(&self) -> Result<String, KubeError> {
        let listed_at = Instant::now();
        let pods = self.kube.list_kept(Resource::Pods, MANAGED_SELECTOR, |pod| {
            Some((runtime_id_of(&pod)?.to_string(), PodRecord::of(&pod)?))
        })?;
        self.store.replace_pods(listed_at, pods.items.into_iter().collect());
        Ok(pods.resource_version)
    }

    fn relist_anchors(&self) -> Result<String, KubeError> {
        let listed_at = Instant::now();
        let anchors = self.kube.list_kept(Resource::Secrets, MANAGED_SELECTOR, |anchor| {
            let desired = manifests::desired_state_of(&anchor).filter(|_| !is_being_deleted(&anchor))?;
            Some((runtime_id_of(&anchor)?.to_string(), desired))
        })?;
        let desired = anchors.items.into_iter().collect();
        for runtime_id in self.store.replace_anchors(listed_at, &desired) {
            log::info!("runtime {runtime_id}: its anchor is gone; garbage collection removes the rest");
        }
        Ok(anchors.resource_version)
    }

    // ---- keeping the cluster true to what each runtime is asked to be ----

    /// A running runtime without a pod (node drain, eviction, `kubectl delete pod`, a crash
    /// before the pod was created, or a resume whose previous pod has just gone) gets one;
    /// a paused runtime loses its pod. A pod in error is replaced only when a client asks.
    pub fn converge(&self) {
        let diverging = self.store.select(|runtime, pod| match runtime.desired {
            DesiredState::Running => pod.is_none(),
            DesiredState::Paused => pod.is_some_and(|pod| !pod.terminating),
        });
        for runtime in diverging {
            // A client working on this session decides; the next round looks again.
            let Some(_session) = self.store.try_lock_session(&runtime.session_id) else {
                continue;
            };
            let Some(now) = self.store.find(&runtime.id) else {
                continue;
            };
            let runtime = &now.runtime;
            let outcome = match (runtime.desired, now.pod.is_some()) {
                (DesiredState::Running, false) => {
                    log::info!("runtime {}: creating its missing pod", runtime.id);
                    self.create_pod(runtime)
                }
                (DesiredState::Paused, true) => {
                    log::info!("runtime {}: deleting the pod of a paused runtime", runtime.id);
                    self.delete_pod(&runtime.id)
                }
                _ => Ok(()),
            };
            if let Err(error) = outcome {
                log::warn!("runtime {}: {error}", runtime.id);
            }
        }
    }
}

/// The resourceVersion an event brings the watch to.
fn event_version(event: &WatchEvent) -> Option<String> {
    match event {
        WatchEvent::Added(object) | WatchEvent::Modified(object) | WatchEvent::Deleted(object) => {
            object["metadata"]["resourceVersion"].as_str().map(str::to_string)
        }
        WatchEvent::Bookmark(version) => Some(version.clone()).filter(|v| !v.is_empty()),
    }
}
