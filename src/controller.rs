//! The lifecycle of runtimes (SPEC §6): start, stop, pause, resume, and a loop that watches
//! the pods and converges the cluster to what each runtime is asked to be.
//!
//! Order matters for crash safety: the anchor Secret is created before anything it owns, and a
//! runtime's desired state is written on its anchor before its pod is touched.

use std::collections::HashMap;
use std::time::{Instant, SystemTime};

use serde_json::Value;

use crate::config::Config;
use crate::error::Error;
use crate::kube_rest::{Client, KubeError, PropagationPolicy, Resource};
use crate::manifests::{self, MANAGED_SELECTOR, RUNTIME_ID_LABEL, object_name};
use crate::pod_status::{self, PodObservation, PodStatus};
use crate::runtime::{DesiredState, Runtime, RuntimeView, StartRequest, Status, random_hex, rfc3339};
use crate::store::Store;

pub struct Controller {
    config: Config,
    kube: Client,
    store: Store,
}

/// The answer to `/start`: a new runtime (201) or the session's existing one (200).
pub enum Started {
    Created(RuntimeView),
    Existing(RuntimeView),
}

impl Controller {
    pub fn new(config: Config, kube: Client) -> Controller {
        Controller {
            config,
            kube,
            store: Store::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn view(&self, runtime: &Runtime) -> RuntimeView {
        runtime.view(&self.config)
    }

    /// `POST /start`: idempotent per session. An existing runtime is returned as it is,
    /// resumed when paused, or given a new pod when in error.
    pub fn start(&self, body: &Value) -> Result<Started, Error> {
        let request = StartRequest::from_json(body, &self.config.default_image)?;
        let _session = self.store.lock_session(&request.session_id);
        if let Some(existing) = self.store.runtime_of_session(&request.session_id) {
            if existing.session_id != request.session_id {
                return Err(Error::SessionConflict {
                    requested: request.session_id,
                    existing: existing.session_id,
                });
            }
            return self.run_again(existing).map(Started::Existing);
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
        let anchor_uid = anchor["metadata"]["uid"].as_str().unwrap_or_default().to_string();
        if let Err(error) = self.create_dependents(&runtime_id, &request, &anchor_uid) {
            // The anchor owns whatever was created: deleting it removes everything.
            if let Err(cleanup) = self.kube.delete(
                Resource::Secrets,
                &object_name(&runtime_id),
                PropagationPolicy::Background,
            ) {
                log::error!("runtime {runtime_id}: cannot roll back a failed start: {cleanup}");
            }
            log::warn!("session {}: start failed: {error}", request.session_id);
            return Err(error.into());
        }
        let runtime = Runtime {
            id: runtime_id,
            session_id: request.session_id.clone(),
            session_api_key,
            anchor_uid,
            request,
            desired: DesiredState::Running,
            created_at,
            pod: PodObservation::new(PodStatus::Pending),
            pod_changed_at: Instant::now(),
        };
        log::info!(
            "runtime {} started for session {} ({})",
            runtime.id,
            runtime.session_id,
            runtime.request.image
        );
        let view = self.view(&runtime);
        self.store.insert(runtime);
        Ok(Started::Created(view))
    }

    fn create_dependents(&self, runtime_id: &str, request: &StartRequest, anchor_uid: &str) -> Result<(), KubeError> {
        let config = &self.config;
        self.kube
            .create(Resource::Pods, &manifests::pod(config, runtime_id, request, anchor_uid))?;
        self.kube.create(
            Resource::Services,
            &manifests::service(config, runtime_id, &request.session_id, anchor_uid),
        )?;
        self.kube.create(
            Resource::Ingresses,
            &manifests::ingress(config, runtime_id, &request.session_id, anchor_uid),
        )?;
        Ok(())
    }

    /// `POST /stop`: removes every object of the runtime.
    pub fn stop(&self, runtime_id: &str) -> Result<RuntimeView, Error> {
        let (runtime, _session) = self.lock_runtime(runtime_id)?;
        let name = object_name(runtime_id);
        // Once the anchor is gone, garbage collection removes the rest even if we die now.
        self.kube
            .delete(Resource::Secrets, &name, PropagationPolicy::Background)?;
        for resource in [Resource::Pods, Resource::Ingresses, Resource::Services] {
            if let Err(error) = self.kube.delete(resource, &name, PropagationPolicy::Background) {
                log::warn!(
                    "runtime {runtime_id}: {} left to garbage collection: {error}",
                    resource.plural()
                );
            }
        }
        self.store.remove(runtime_id);
        log::info!("runtime {runtime_id} of session {} stopped", runtime.session_id);
        let mut view = self.view(&runtime);
        view.status = Status::Stopped;
        view.pod_status = PodStatus::NotFound;
        view.status_detail = None;
        Ok(view)
    }

    /// `POST /pause`: deletes the pod only; everything else stays for `/resume`.
    pub fn pause(&self, runtime_id: &str) -> Result<RuntimeView, Error> {
        let (runtime, _session) = self.lock_runtime(runtime_id)?;
        if runtime.desired == DesiredState::Paused {
            return Ok(self.view(&runtime));
        }
        self.record_desired_state(&runtime, DesiredState::Paused)?;
        self.kube
            .delete(Resource::Pods, &object_name(runtime_id), PropagationPolicy::Background)?;
        let paused = self.set_pod(runtime_id, PodStatus::NotFound).unwrap_or(runtime);
        log::info!("runtime {runtime_id} of session {} paused", paused.session_id);
        Ok(self.view(&paused))
    }

    /// `POST /resume`: a paused runtime, or one in error, gets a new pod from its original
    /// request with the same session key; a starting or running one is returned as it is.
    pub fn resume(&self, runtime_id: &str) -> Result<RuntimeView, Error> {
        let (runtime, _session) = self.lock_runtime(runtime_id)?;
        self.run_again(runtime)
    }

    /// What `/start` and `/resume` do to an existing runtime (its session is held).
    fn run_again(&self, runtime: Runtime) -> Result<RuntimeView, Error> {
        match runtime.status() {
            Status::Paused => {
                self.record_desired_state(&runtime, DesiredState::Running)?;
                log::info!("runtime {} of session {} resuming", runtime.id, runtime.session_id);
            }
            Status::Error => {
                self.kube
                    .delete(Resource::Pods, &object_name(&runtime.id), PropagationPolicy::Background)?;
                log::info!(
                    "runtime {} of session {} gets a new pod after an error",
                    runtime.id,
                    runtime.session_id
                );
            }
            Status::Starting | Status::Running | Status::Stopped => return Ok(self.view(&runtime)),
        }
        let runtime = self.set_pod(&runtime.id, PodStatus::NotFound).unwrap_or(runtime);
        let runtime = self.create_pod(&runtime)?;
        Ok(self.view(&runtime))
    }

    /// Creates the runtime's pod. While its previous pod still terminates the name is taken:
    /// then the pod is left to `converge`, which creates it once the old one is gone.
    fn create_pod(&self, runtime: &Runtime) -> Result<Runtime, Error> {
        let pod = manifests::pod(&self.config, &runtime.id, &runtime.request, &runtime.anchor_uid);
        match self.kube.create(Resource::Pods, &pod) {
            Ok(_) => Ok(self
                .set_pod(&runtime.id, PodStatus::Pending)
                .unwrap_or_else(|| runtime.clone())),
            Err(KubeError::AlreadyExists(_)) => Ok(runtime.clone()),
            Err(error) => Err(error.into()),
        }
    }

    fn record_desired_state(&self, runtime: &Runtime, desired: DesiredState) -> Result<(), Error> {
        let patch = manifests::desired_state_patch(desired, &rfc3339(SystemTime::now()));
        self.kube
            .merge_patch(Resource::Secrets, &object_name(&runtime.id), &patch)?;
        self.store.update(&runtime.id, |r| r.desired = desired);
        Ok(())
    }

    /// Records that the service just changed the pod, which the next list may not show yet.
    fn set_pod(&self, runtime_id: &str, status: PodStatus) -> Option<Runtime> {
        self.store.update(runtime_id, |r| {
            r.pod = PodObservation::new(status);
            r.pod_changed_at = Instant::now();
        })
    }

    /// Holds the runtime's session and returns the runtime as it is now.
    fn lock_runtime(&self, runtime_id: &str) -> Result<(Runtime, crate::store::SessionGuard<'_>), Error> {
        let not_found = || Error::RuntimeNotFound(runtime_id.to_string());
        let session_id = self
            .store
            .find(runtime_id, |r| r.session_id.clone())
            .ok_or_else(not_found)?;
        let guard = self.store.lock_session(&session_id);
        // It may have been stopped while we waited.
        let runtime = self.store.runtime(runtime_id).ok_or_else(not_found)?;
        Ok((runtime, guard))
    }

    /// One round of the pod loop: list the service's pods, record what they say, and bring
    /// each runtime's pod in line with its desired state.
    pub fn poll_pods(&self) -> Result<(), KubeError> {
        let listed_at = Instant::now();
        let pods = self.kube.list(Resource::Pods, MANAGED_SELECTOR)?;
        let now = SystemTime::now();
        let by_runtime: HashMap<String, Value> = pods
            .items
            .into_iter()
            .filter_map(|pod| Some((pod["metadata"]["labels"][RUNTIME_ID_LABEL].as_str()?.to_string(), pod)))
            .collect();
        let grace = self.config.image_pull_grace;
        self.store.apply_pod_list(listed_at, |runtime_id| {
            pod_status::observe(by_runtime.get(runtime_id), now, grace)
        });
        self.store.set_ready();
        self.converge(listed_at, &by_runtime);
        Ok(())
    }

    /// A running runtime whose pod is gone (node drain, eviction, `kubectl delete pod`, or the
    /// previous pod of a resume finally terminated) gets one; a paused runtime loses its pod.
    fn converge(&self, listed_at: Instant, pods: &HashMap<String, Value>) {
        let diverging = self.store.diverging(listed_at, |runtime| {
            let pod = pods.get(&runtime.id);
            let terminating = pod.is_some_and(|p| !p["metadata"]["deletionTimestamp"].is_null());
            match runtime.desired {
                DesiredState::Running => pod.is_none(),
                DesiredState::Paused => pod.is_some() && !terminating,
            }
        });
        for runtime in diverging {
            // A client working on this session decides; the next round looks again.
            let Some(_session) = self.store.try_lock_session(&runtime.session_id) else {
                continue;
            };
            let Some(runtime) = self.store.runtime(&runtime.id) else {
                continue;
            };
            let outcome = match runtime.desired {
                DesiredState::Running => {
                    log::info!("runtime {}: creating its missing pod", runtime.id);
                    self.create_pod(&runtime).map(drop)
                }
                DesiredState::Paused => {
                    log::info!("runtime {}: deleting the pod of a paused runtime", runtime.id);
                    let name = object_name(&runtime.id);
                    self.kube
                        .delete(Resource::Pods, &name, PropagationPolicy::Background)
                        .map(drop)
                        .map_err(Error::from)
                }
            };
            if let Err(error) = outcome {
                log::warn!("runtime {}: {error}", runtime.id);
            }
        }
    }
}
