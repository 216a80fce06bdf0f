//! What clients ask of runtimes (API.md §3, §6): start, stop, pause and resume, and the few
//! operations on a runtime's objects that the background work shares.
//!
//! The cluster is the store of record. Each runtime's anchor Secret holds its session key,
//! original request and desired state, and owns every other object of the runtime. Order makes
//! it crash-safe: the anchor is created before anything it owns, and the desired state is
//! written on the anchor before the pod is touched, so a restart converges to what the client
//! last asked for.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::agent;
use crate::config::Config;
use crate::error::Error;
use crate::events::{self, Action};
use crate::image_check::ImageCheck;
use crate::kube::{Client, KubeError, Resource};
use crate::manifests::{self, object_name};
use crate::metrics::{Metrics, StartKind};
use crate::object;
use crate::pod_status::{PodRecord, PodStatus};
use crate::random::random_hex;
use crate::runtime::{Desire, DesiredState, ReportedStatus, Runtime, RuntimeView, Status};
use crate::start_request::StartRequest;
use crate::store::{SessionGuard, Slot, Store};
use crate::timestamps::whole_second_up;
use crate::warm::runtimes::Claim;

/// The service's parts, shared by the HTTP workers and the background threads.
pub struct Controller {
    config: Config,
    kube: Client,
    images: ImageCheck,
    store: Store,
    metrics: Metrics,
    /// Reaches the agent servers (`/api/init`); the idle checks have their own, shorter-lived.
    agents: ureq::Agent,
}

/// How long an agent may take to initialise (it starts its conversation services).
const INIT_TIMEOUT: Duration = Duration::from_secs(15);

/// The answer to `/start`: a new runtime (201) or the session's existing one (200).
pub enum Started {
    Created(RuntimeView),
    Existing(RuntimeView),
}

impl Controller {
    pub fn new(config: Config, kube: Client, images: ImageCheck) -> Controller {
        Controller {
            config,
            kube,
            images,
            store: Store::new(),
            metrics: Metrics::default(),
            agents: agent::client(INIT_TIMEOUT),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn kube(&self) -> &Client {
        &self.kube
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn agents(&self) -> &ureq::Agent {
        &self.agents
    }

    /// `GET /image_exists` (API.md §9).
    pub fn image_exists(&self, image: &str) -> Result<bool, Error> {
        self.images.exists(&self.kube, image)
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
        let slot = match self.claim_warm(&request, self.slot()?) {
            Claim::Claimed(view) => return Ok(Started::Created(*view)),
            Claim::Cold(slot) => slot,
        };
        self.create_runtime(request, slot).map(Started::Created)
    }

    /// A place for one more runtime not paused, where `MAX_RUNNING_RUNTIMES` caps them.
    fn slot(&self) -> Result<Option<Slot<'_>>, Error> {
        match self.config.max_running_runtimes {
            None => Ok(None),
            Some(cap) => self.store.take_slot(cap).map(Some).ok_or(Error::AtCapacity { cap }),
        }
    }

    /// Creates a new runtime's anchor, then everything it owns; a failure deletes the anchor,
    /// and with it whatever was created.
    fn create_runtime(&self, request: StartRequest, slot: Option<Slot<'_>>) -> Result<RuntimeView, Error> {
        let runtime_id = random_hex(16)?;
        let _starting = self.store.begin_start(&runtime_id);
        let session_api_key = random_hex(32)?;
        let created_at = SystemTime::now();
        let desired = Desire::new(DesiredState::Running, whole_second_up(created_at));
        let anchor = manifests::anchor_secret(&runtime_id, &session_api_key, &request, &desired, created_at)
            .map_err(|e| Error::Internal(format!("cannot encode the start request: {e}")))?;
        let anchor = self.kube.create(Resource::Secrets, &anchor)?;
        let runtime = Runtime {
            id: runtime_id,
            session_id: request.session_id.clone(),
            session_api_key,
            anchor_uid: object::uid(&anchor).unwrap_or_default().to_string(),
            request,
            desired,
            created_at,
            changed_at: Instant::now(),
        };
        let pod = match self.create_owned(&runtime) {
            Ok(pod) => pod,
            Err(error) => {
                // The anchor owns whatever was created: deleting it removes everything.
                if let Err(cleanup) = self.kube.delete(Resource::Secrets, &object_name(&runtime.id)) {
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
        self.metrics.started(&runtime.id, StartKind::Cold);
        self.store.record_started(runtime, pod, slot);
        Ok(view)
    }

    /// Creates everything the anchor owns, in order (API.md §6); returns the pod.
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
        self.stop_now(&runtime)
    }

    /// Stops a runtime whose session the caller holds.
    fn stop_now(&self, runtime: &Runtime) -> Result<RuntimeView, Error> {
        let runtime_id = runtime.id.as_str();
        let mut view = self.view_of(runtime_id)?;
        let name = object_name(runtime_id);
        // Once the anchor is gone, garbage collection removes the rest even if we die now.
        self.kube.delete(Resource::Secrets, &name)?;
        self.store.record_stopped(runtime_id);
        self.metrics.forget(runtime_id);
        for resource in [Resource::Pods].into_iter().chain(self.owned_kinds()) {
            if let Err(error) = self.kube.delete(resource, &name) {
                log::warn!(
                    "runtime {runtime_id}: {} left to garbage collection: {error}",
                    resource.plural()
                );
            }
        }
        log::info!("runtime {runtime_id} of session {} stopped", runtime.session_id);
        view.status = ReportedStatus::Stopped;
        view.pod_status = PodStatus::NotFound;
        view.status_detail = None;
        Ok(view)
    }

    /// `POST /pause`: deletes the pod only; everything else stays for `/resume`.
    pub fn pause(&self, runtime_id: &str) -> Result<RuntimeView, Error> {
        let (runtime, _session) = self.lock_runtime(runtime_id)?;
        if !runtime.is_paused() {
            self.pause_now(&runtime, None)?;
        }
        self.view_of(runtime_id)
    }

    /// Pauses a runtime on the service's own account, as `/pause` would, unless something was
    /// asked of it since `asked_at` (a client resumed it after the decision was made). True
    /// when it was paused.
    pub fn pause_unless_asked_since(
        &self,
        runtime_id: &str,
        asked_at: SystemTime,
        reason: Option<String>,
    ) -> Result<bool, Error> {
        let (runtime, _session) = self.lock_runtime(runtime_id)?;
        if runtime.is_paused() || runtime.desired.since != asked_at {
            return Ok(false);
        }
        self.pause_now(&runtime, reason)?;
        Ok(true)
    }

    /// Stops a runtime on the service's own account, as `/stop` would, unless something was
    /// asked of it since `asked_at`. True when it was stopped.
    pub fn stop_unless_asked_since(&self, runtime_id: &str, asked_at: SystemTime) -> Result<bool, Error> {
        let (runtime, _session) = self.lock_runtime(runtime_id)?;
        if runtime.desired.since != asked_at {
            return Ok(false);
        }
        self.stop_now(&runtime).map(|_| true)
    }

    /// Records what the service did to a runtime on its own: a log line, a Kubernetes Event on
    /// its anchor (whose failure is logged, never the action's), and the lifecycle counter.
    pub fn record(&self, runtime: &Runtime, action: Action, message: &str) {
        log::info!("runtime {}: {}: {message}", runtime.id, action.reason());
        self.metrics.action(action);
        let event = events::event(&self.config.kube.namespace, runtime, action, message, SystemTime::now());
        if let Err(error) = self.kube.create(Resource::Events, &event) {
            log::warn!(
                "runtime {}: cannot record the {} event: {error}",
                runtime.id,
                action.reason()
            );
        }
    }

    fn pause_now(&self, runtime: &Runtime, reason: Option<String>) -> Result<(), Error> {
        let desire = Desire {
            state: DesiredState::Paused,
            since: whole_second_up(SystemTime::now()),
            pause_reason: reason,
        };
        self.record_desired_state(runtime, desire, None)?;
        self.metrics.forget(&runtime.id);
        self.delete_pod(&runtime.id)?;
        log::info!("runtime {} of session {} paused", runtime.id, runtime.session_id);
        Ok(())
    }

    /// `POST /resume`: a paused runtime, or one in error, gets a new pod from its original
    /// request with the same session key; a starting or running one is returned as it is.
    pub fn resume(&self, runtime_id: &str) -> Result<RuntimeView, Error> {
        let (_runtime, _session) = self.lock_runtime(runtime_id)?;
        self.run_again(runtime_id)
    }

    /// What `/start` and `/resume` do to an existing runtime (its session is held).
    fn run_again(&self, runtime_id: &str) -> Result<RuntimeView, Error> {
        let not_found = || Error::RuntimeNotFound(runtime_id.to_string());
        let snapshot = self.store.snapshot(runtime_id).ok_or_else(not_found)?;
        let now = SystemTime::now();
        let runtime = &snapshot.runtime;
        match snapshot.status(&self.config, now) {
            Status::Paused => {
                let slot = self.slot()?;
                let desire = Desire::new(DesiredState::Running, whole_second_up(now));
                self.record_desired_state(runtime, desire, slot)?;
                self.metrics.started(&runtime.id, StartKind::Cold);
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
            Status::Starting | Status::Running => return Ok(snapshot.view(&self.config, now)),
        }
        self.create_pod(runtime)?;
        self.view_of(runtime_id)
    }

    fn record_desired_state(&self, runtime: &Runtime, desire: Desire, slot: Option<Slot<'_>>) -> Result<(), Error> {
        let patch = manifests::desired_state_patch(&desire);
        self.kube
            .merge_patch(Resource::Secrets, &object_name(&runtime.id), &patch)?;
        self.store.record_desired(&runtime.id, desire, slot);
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

    fn view_of(&self, runtime_id: &str) -> Result<RuntimeView, Error> {
        self.store
            .snapshot(runtime_id)
            .map(|found| found.view(&self.config, SystemTime::now()))
            .ok_or_else(|| Error::RuntimeNotFound(runtime_id.to_string()))
    }

    // ---- a runtime's objects, for clients and the background work alike ----

    /// The kinds a runtime owns besides its pod, in the order `/start` creates them.
    pub fn owned_kinds(&self) -> Vec<Resource> {
        let mut kinds = Vec::new();
        if self.config.workspace.is_some() {
            kinds.push(Resource::PersistentVolumeClaims);
        }
        // The policy exists before the pod, so the pod never runs unconfined. Warm pods always
        // have one, which their claim turns into the runtime's (or deletes).
        if self.config.network_policy.is_some() || !self.config.warm_pools.is_empty() {
            kinds.push(Resource::NetworkPolicies);
        }
        kinds.extend([Resource::Services, Resource::Ingresses]);
        kinds
    }

    /// The runtime's object of kind `resource`, where the configuration gives it one.
    pub fn manifest(&self, resource: Resource, runtime: &Runtime) -> Option<Value> {
        let (config, id, session, uid) = (&self.config, &runtime.id, &runtime.session_id, &runtime.anchor_uid);
        match resource {
            Resource::Pods => Some(manifests::pod(config, id, &runtime.request, uid)),
            Resource::Services => Some(manifests::service(config, id, session, uid)),
            Resource::Ingresses => Some(manifests::ingress(config, id, session, uid)),
            Resource::PersistentVolumeClaims => manifests::workspace_claim(config, id, session, uid),
            Resource::NetworkPolicies => manifests::network_policy(config, id, session, uid),
            Resource::Secrets | Resource::Events => None,
        }
    }

    /// Creates the runtime's pod. While its previous pod still terminates the name is taken:
    /// convergence creates the pod once the old one is gone.
    pub fn create_pod(&self, runtime: &Runtime) -> Result<(), Error> {
        let pod = manifests::pod(&self.config, &runtime.id, &runtime.request, &runtime.anchor_uid);
        match self.kube.create(Resource::Pods, &pod) {
            Ok(pod) => {
                if let Some(record) = PodRecord::of(&pod) {
                    self.store.record_pod_created(&runtime.id, record);
                }
            }
            Err(KubeError::AlreadyExists(_)) => {
                log::info!("runtime {}: waiting for its previous pod to go", runtime.id)
            }
            Err(error) => return Err(error.into()),
        }
        Ok(())
    }

    pub fn delete_pod(&self, runtime_id: &str) -> Result<(), Error> {
        self.kube.delete(Resource::Pods, &object_name(runtime_id))?;
        self.store.record_pod_deleted(runtime_id);
        Ok(())
    }
}
