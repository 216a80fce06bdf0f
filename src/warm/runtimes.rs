//! The service's work on warm runtimes: minting one for a pool, claiming one for a `/start`,
//! finishing a claim a crash interrupted, and initialising a claimed pod's dormant agent.
//!
//! A claim, in a crash-safe order: (1) the session and its request written on the anchor over
//! the resourceVersion the service knows (so a warm runtime never goes to two sessions: from
//! here it is the session's runtime, which recovery resumes wherever the claim stopped), (2) the
//! pod labelled with the session, (3) `POST /api/init` (which recovery and the background
//! redo for any claimed pod whose agent is dormant), (4) its other objects turned or created
//! as a cold runtime's.

use std::time::{Instant, SystemTime};

use crate::agent;
use crate::controller::Controller;
use crate::kube::{KubeError, Resource};
use crate::manifests::object_name;
use crate::metrics::StartKind;
use crate::pod_status::{Agent, PodRecord};
use crate::random::random_hex;
use crate::runtime::{Desire, DesiredState, Runtime, RuntimeView};
use crate::start_request::StartRequest;
use crate::store::Slot;
use crate::timestamps::whole_second_up;

use super::objects::{self, WarmRuntime};
use super::{Pool, boot};

/// What `/start` does with a request: a claimed warm runtime, or a cold start to make (with the
/// place under the cap it holds).
pub enum Claim<'a> {
    Claimed(Box<RuntimeView>),
    Cold(Option<Slot<'a>>),
}

impl Controller {
    /// Claims a Ready warm runtime of the first pool `request` matches, if there is one; any
    /// failure deletes the half-claimed runtime and leaves the request to a cold start.
    pub fn claim_warm<'a>(&'a self, request: &StartRequest, slot: Option<Slot<'a>>) -> Claim<'a> {
        let config = self.config();
        // One pass: the first pool the request matches; why the others are not, for debugging.
        let mut matched = None;
        for pool in &config.warm_pools {
            match boot::mismatch(config, &pool.request, request) {
                None => {
                    matched = Some(pool);
                    break;
                }
                Some(why) => log::debug!("session {}: not for pool {}: {why}", request.session_id, pool.name),
            }
        }
        let Some(pool) = matched else {
            return Claim::Cold(slot);
        };
        let Some((warm, pod)) = self.store().take_warm(&pool.name) else {
            log::info!(
                "session {}: pool {} has no Ready warm pod; starting cold",
                request.session_id,
                pool.name
            );
            return Claim::Cold(slot);
        };
        let _claiming = self.store().begin_start(&warm.id);
        let began = Instant::now();
        match self.claim(&warm, &pod, request) {
            Ok(runtime) => {
                let view = runtime.view(Some(&pod_initialized(&pod)), config, SystemTime::now());
                log::info!(
                    "runtime {} of pool {} claimed for session {}",
                    warm.id,
                    pool.name,
                    request.session_id
                );
                self.metrics().started_at(&runtime.id, StartKind::Warm, began);
                self.metrics().running(&runtime.id);
                self.store().record_started(runtime, Some(pod_initialized(&pod)), slot);
                Claim::Claimed(Box::new(view))
            }
            Err(why) => {
                log::warn!(
                    "session {}: the claim of warm runtime {} failed ({why}); starting cold",
                    request.session_id,
                    warm.id
                );
                if let Err(error) = self.kube().delete(Resource::Secrets, &object_name(&warm.id)) {
                    log::error!(
                        "runtime {}: cannot delete a half-claimed warm runtime: {error}",
                        warm.id
                    );
                }
                Claim::Cold(slot)
            }
        }
    }

    fn claim(&self, warm: &WarmRuntime, pod: &PodRecord, request: &StartRequest) -> Result<Runtime, String> {
        let now = SystemTime::now();
        let runtime = Runtime {
            id: warm.id.clone(),
            session_id: request.session_id.clone(),
            session_api_key: warm.session_api_key.clone(),
            anchor_uid: warm.anchor_uid.clone(),
            request: request.clone(),
            // Idleness counts from the claim: the agent's clock has run since its boot.
            desired: Desire::new(DesiredState::Running, whole_second_up(now)),
            created_at: now,
            changed_at: Instant::now(),
        };
        let name = object_name(&warm.id);
        let patch = objects::claim_anchor_patch(warm, &runtime).map_err(|e| e.to_string())?;
        self.kube()
            .merge_patch(Resource::Secrets, &name, &patch)
            .map_err(|e| format!("its anchor: {e}"))?;
        self.finish_claim_of(Resource::Pods, &runtime)
            .map_err(|e| format!("its pod: {e}"))?;
        self.initialize(&runtime, pod)?;
        for resource in self.owned_kinds() {
            match resource {
                Resource::Services | Resource::Ingresses => {
                    if let Some(manifest) = self.manifest(resource, &runtime) {
                        self.kube()
                            .create(resource, &manifest)
                            .map_err(|e| format!("its {}: {e}", resource.plural()))?;
                    }
                }
                _ => self
                    .finish_claim_of(resource, &runtime)
                    .map_err(|e| format!("its {}: {e}", resource.plural()))?,
            }
        }
        Ok(runtime)
    }

    /// Turns a claimed runtime's object of kind `resource`, made for a pool, into its own: the
    /// session's labels, and the runtime's NetworkPolicy (or none, where sandboxes get none).
    pub fn finish_claim_of(&self, resource: Resource, runtime: &Runtime) -> Result<(), KubeError> {
        let name = object_name(&runtime.id);
        match resource {
            Resource::NetworkPolicies => match objects::claim_policy_patch(self.config(), runtime) {
                Some(patch) => self.kube().merge_patch(resource, &name, &patch).map(drop),
                None => self.kube().delete(resource, &name).map(drop),
            },
            Resource::Pods | Resource::PersistentVolumeClaims => self
                .kube()
                .merge_patch(resource, &name, &objects::claim_labels_patch(runtime))
                .map(drop),
            _ => Ok(()),
        }
    }

    /// Gives the dormant agent of a claimed runtime's pod its session (`POST /api/init`).
    pub fn initialize(&self, runtime: &Runtime, pod: &PodRecord) -> Result<(), String> {
        let url = agent::base_url(pod.ip.as_deref(), self.config().ports.agent).ok_or("its pod has no address")?;
        let body = boot::init_body(self.config(), &runtime.session_api_key, &runtime.request);
        agent::initialize(self.agents(), &url, &runtime.session_api_key, &body)
            .map_err(|e| format!("/api/init {e}"))?;
        self.store()
            .record_agent(&runtime.id, &pod.uid, pod.observation.restart_count, Agent::Initialized);
        Ok(())
    }

    /// Makes sure the agent of a claimed runtime's pod has its session: after a restart of its
    /// container, or of the service between claim and init, it is dormant again.
    pub fn initialize_if_dormant(&self, runtime: &Runtime, pod: &PodRecord) -> Result<(), String> {
        let url = agent::base_url(pod.ip.as_deref(), self.config().ports.agent).ok_or("its pod has no address")?;
        match agent::init_state(self.agents(), &url)? {
            agent::InitState::Ready => {
                self.store()
                    .record_agent(&runtime.id, &pod.uid, pod.observation.restart_count, Agent::Initialized);
                Ok(())
            }
            agent::InitState::Dormant => self.initialize(runtime, pod),
            agent::InitState::Initializing => Err("its agent is initialising".to_string()),
        }
    }

    /// Has the dormant agent of a warm runtime's Ready pod build its routes, after which it may
    /// be claimed (`agent::build_routes`).
    pub fn build_routes(&self, warm: &WarmRuntime, pod: &PodRecord) -> Result<(), String> {
        let url = agent::base_url(pod.ip.as_deref(), self.config().ports.agent).ok_or("its pod has no address")?;
        agent::build_routes(self.agents(), &url)?;
        let built = Agent::Dormant { routes_built: true };
        self.store()
            .record_agent(&warm.id, &pod.uid, pod.observation.restart_count, built);
        Ok(())
    }

    /// Mints one warm runtime for `pool`: its anchor, then what the anchor owns, the pod last.
    /// A failure deletes the anchor, and with it whatever was created.
    pub fn mint_warm(&self, pool: &Pool) -> Result<(), String> {
        let runtime_id = random_hex(16).map_err(|e| e.to_string())?;
        let _starting = self.store().begin_start(&runtime_id);
        let key = random_hex(32).map_err(|e| e.to_string())?;
        let created_at = whole_second_up(SystemTime::now());
        let anchor = objects::anchor(&runtime_id, &key, pool, created_at).map_err(|e| e.to_string())?;
        let anchor = self
            .kube()
            .create(Resource::Secrets, &anchor)
            .map_err(|e| e.to_string())?;
        let warm = objects::from_anchor(&anchor)?;
        let config = self.config();
        let created = (|| {
            if let Some(claim) = objects::workspace_claim(config, &warm) {
                self.kube().create(Resource::PersistentVolumeClaims, &claim)?;
            }
            let policy = objects::network_policy(config, &warm);
            self.kube().create(Resource::NetworkPolicies, &policy)?;
            self.kube().create(Resource::Pods, &objects::pod(config, &warm))
        })();
        match created {
            Ok(pod) => {
                if let Some(record) = PodRecord::of(&pod) {
                    self.store().record_pod_created(&warm.id, record);
                }
                log::info!("runtime {} minted for pool {}", warm.id, pool.name);
                self.store().apply_warm(&warm.id.clone(), Some(warm));
                Ok(())
            }
            Err(error) => {
                if let Err(cleanup) = self.kube().delete(Resource::Secrets, &object_name(&warm.id)) {
                    log::error!("runtime {}: cannot roll back a failed warm pod: {cleanup}", warm.id);
                }
                Err(error.to_string())
            }
        }
    }

    /// Deletes a warm runtime (its anchor; the garbage collector removes the rest).
    pub fn delete_warm(&self, warm: &WarmRuntime) -> Result<(), KubeError> {
        self.kube().delete(Resource::Secrets, &object_name(&warm.id))?;
        self.store().forget_warm(&warm.id);
        Ok(())
    }
}

/// The pod as it is once its agent has the session.
fn pod_initialized(pod: &PodRecord) -> PodRecord {
    PodRecord {
        agent: Agent::Initialized,
        ..pod.clone()
    }
}
