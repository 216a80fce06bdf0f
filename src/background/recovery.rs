//! Recovery (API.md §7): the store rebuilt from the cluster at startup, what an interrupted start
//! left missing created, and objects whose runtime is gone deleted, then and every
//! `ORPHAN_SWEEP_INTERVAL` after.

use std::collections::{HashMap, HashSet};
use std::thread;
use std::time::Instant;

use crate::controller::Controller;
use crate::kube::{KubeError, ObjectList, Resource};
use crate::manifests;
use crate::object::{self, MANAGED_SELECTOR};
use crate::pod_status::PodRecord;
use crate::runtime::Runtime;
use crate::warm::objects::{self, WarmRuntime};

/// Where the two watches start: the resourceVersions of the lists recovery read.
pub(super) struct Recovered {
    pub anchors_version: String,
    pub pods_version: String,
}

/// What recovery and the orphan sweep keep of a labelled object: whose it is and its name.
struct Labelled {
    resource: Resource,
    name: String,
    runtime_id: String,
    being_deleted: bool,
    /// Still marked as a warm pool's.
    warm: bool,
}

impl Labelled {
    fn of(resource: Resource, object: &serde_json::Value) -> Option<Labelled> {
        Some(Labelled {
            resource,
            name: object::name(object)?.to_string(),
            runtime_id: object::runtime_id(object)?.to_string(),
            being_deleted: object::is_being_deleted(object),
            warm: objects::pool_of(object).is_some(),
        })
    }
}

/// The runtimes read from their anchors, and the ids of anchors that cannot be read: those
/// runtimes are left alone, never taken for orphans.
struct Anchors {
    runtimes: HashMap<String, Runtime>,
    /// The warm pools' unclaimed runtimes, by id.
    warm: HashMap<String, WarmRuntime>,
    unreadable: HashSet<String>,
    resource_version: String,
}

impl Anchors {
    fn has(&self, runtime_id: &str) -> bool {
        self.runtimes.contains_key(runtime_id)
            || self.unreadable.contains(runtime_id)
            || self.warm.contains_key(runtime_id)
    }
}

/// What an anchor is: a runtime's, or a warm pool's unclaimed runtime's.
enum Anchored {
    Runtime(Runtime),
    Warm(WarmRuntime),
}

/// Reads an anchor; the error names the anchor and why, for the log.
fn read_anchor(anchor: &serde_json::Value) -> Result<Anchored, String> {
    let read = match objects::pool_of(anchor) {
        Some(_) => objects::from_anchor(anchor).map(Anchored::Warm),
        None => manifests::runtime_from_anchor(anchor).map(Anchored::Runtime),
    };
    read.map_err(|why| {
        format!(
            "the anchor {} cannot be read ({why})",
            object::name(anchor).unwrap_or_default()
        )
    })
}

/// Rebuilds the store from the cluster: every runtime, running or paused, from its anchor, and
/// its pod. Objects a crash left missing are created and those whose anchor is gone deleted.
/// Then the store is ready.
pub(super) fn recover(controller: &Controller) -> Result<Recovered, KubeError> {
    let started = Instant::now();
    // Owned objects first, anchors second: an object created after its list began has its
    // anchor in the second list, so it is never taken for an orphan.
    let listed_at = Instant::now();
    let (pods, owned) = list_pods_and_owned(controller)?;
    let anchors = list_anchors(controller)?;

    delete_orphans(
        controller,
        pods.items
            .iter()
            .map(|(pod, _)| pod)
            .chain(owned.iter().flat_map(|(_, objects)| objects)),
        &|id| anchors.has(id),
    );
    create_missing(controller, &owned, anchors.runtimes.values())?;
    let pods_and_owned = pods
        .items
        .iter()
        .map(|(pod, _)| pod)
        .chain(owned.iter().flat_map(|(_, objects)| objects));
    finish_claims(controller, pods_and_owned, &anchors.runtimes)?;

    let records = pods
        .items
        .into_iter()
        .filter_map(|(pod, record)| Some((pod.runtime_id, record?)))
        .collect();
    let count = anchors.runtimes.len();
    controller.store().load_warm(anchors.warm.into_values().collect());
    controller
        .store()
        .load(anchors.runtimes.into_values().collect(), listed_at, records);
    log::info!("recovered {count} runtimes from the cluster in {:?}", started.elapsed());
    Ok(Recovered {
        anchors_version: anchors.resource_version,
        pods_version: pods.resource_version,
    })
}

type LabelledPods = ObjectList<(Labelled, Option<PodRecord>)>;
/// Each owned kind and its labelled objects.
type Owned = Vec<(Resource, Vec<Labelled>)>;

/// The pods and every owned kind, each list in a thread of its own: recovery waits for the
/// longest list rather than for their sum. Each list keeps only what recovery needs.
fn list_pods_and_owned(controller: &Controller) -> Result<(LabelledPods, Owned), KubeError> {
    let (pods, owned) = thread::scope(|scope| {
        let owned: Vec<_> = controller
            .owned_kinds()
            .into_iter()
            .map(|resource| (resource, scope.spawn(move || list_labelled(controller, resource))))
            .collect();
        let pods = controller.kube().list_kept(Resource::Pods, MANAGED_SELECTOR, |pod| {
            Some((Labelled::of(Resource::Pods, &pod)?, PodRecord::of(&pod)))
        });
        let owned: Result<Vec<_>, KubeError> = owned
            .into_iter()
            .map(|(resource, listing)| Ok((resource, joined(listing)?)))
            .collect();
        (pods, owned)
    });
    Ok((pods?, owned?))
}

fn list_anchors(controller: &Controller) -> Result<Anchors, KubeError> {
    let listed = controller
        .kube()
        .list_kept(Resource::Secrets, MANAGED_SELECTOR, |anchor| {
            if object::is_being_deleted(&anchor) {
                return None;
            }
            Some(read_anchor(&anchor).map_err(|why| {
                log::error!("{why}; leaving its runtime alone");
                object::runtime_id(&anchor).map(str::to_string)
            }))
        })?;
    let mut anchors = Anchors {
        runtimes: HashMap::new(),
        warm: HashMap::new(),
        unreadable: HashSet::new(),
        resource_version: listed.resource_version,
    };
    for read in listed.items {
        match read {
            Ok(Anchored::Runtime(runtime)) => {
                anchors.runtimes.insert(runtime.id.clone(), runtime);
            }
            Ok(Anchored::Warm(warm)) => {
                anchors.warm.insert(warm.id.clone(), warm);
            }
            Err(runtime_id) => anchors.unreadable.extend(runtime_id),
        }
    }
    Ok(anchors)
}

/// A start interrupted by a crash left its anchor without some of what it owns.
fn create_missing<'a>(
    controller: &Controller,
    owned: &[(Resource, Vec<Labelled>)],
    runtimes: impl Iterator<Item = &'a Runtime> + Clone,
) -> Result<(), KubeError> {
    for (resource, objects) in owned {
        let present: HashSet<&str> = objects.iter().map(|o| o.runtime_id.as_str()).collect();
        for runtime in runtimes.clone().filter(|r| !present.contains(r.id.as_str())) {
            if let Some(manifest) = controller.manifest(*resource, runtime) {
                log::info!("runtime {}: creating its missing {}", runtime.id, resource.plural());
                controller.kube().create(*resource, &manifest)?;
            }
        }
    }
    Ok(())
}

/// A claim interrupted by a crash left a claimed runtime's pod or policy marked as warm: the
/// pod is labelled with its session, the policy becomes the runtime's (what the anchor already
/// says). The missing Service and Ingress are `create_missing`'s.
fn finish_claims<'a>(
    controller: &Controller,
    objects: impl Iterator<Item = &'a Labelled>,
    runtimes: &HashMap<String, Runtime>,
) -> Result<(), KubeError> {
    for labelled in objects.filter(|o| o.warm && !o.being_deleted) {
        let Some(runtime) = runtimes.get(&labelled.runtime_id) else {
            continue;
        };
        log::info!(
            "runtime {}: finishing the claim of its {}",
            runtime.id,
            labelled.resource.plural()
        );
        controller.finish_claim_of(labelled.resource, runtime)?;
    }
    Ok(())
}

/// Every labelled object of `resource`, as recovery and the sweep need it.
fn list_labelled(controller: &Controller, resource: Resource) -> Result<Vec<Labelled>, KubeError> {
    let listed = controller
        .kube()
        .list_kept(resource, MANAGED_SELECTOR, |object| Labelled::of(resource, &object))?;
    Ok(listed.items)
}

/// Deletes labelled objects whose runtime has no anchor (and is not being started).
fn delete_orphans<'a>(
    controller: &Controller,
    objects: impl Iterator<Item = &'a Labelled>,
    has_anchor: &dyn Fn(&str) -> bool,
) -> usize {
    let mut deleted = 0;
    for Labelled {
        resource,
        name,
        runtime_id,
        being_deleted,
        ..
    } in objects
    {
        if *being_deleted || has_anchor(runtime_id) || controller.store().is_known(runtime_id) {
            continue;
        }
        log::info!("deleting {} {name}: its runtime's anchor is gone", resource.plural());
        match controller.kube().delete(*resource, name) {
            Ok(_) => deleted += 1,
            Err(error) => log::warn!("cannot delete the orphaned {} {name}: {error}", resource.plural()),
        }
    }
    deleted
}

/// Looks for labelled objects whose anchor no longer exists and deletes them. A periodic sweep
/// gains nothing from listing in parallel: the kinds are listed one after another.
pub(super) fn sweep_orphans(controller: &Controller) -> Result<usize, KubeError> {
    let mut objects = Vec::new();
    for resource in [Resource::Pods].into_iter().chain(controller.owned_kinds()) {
        objects.extend(list_labelled(controller, resource)?);
    }
    let anchors: HashSet<String> = controller
        .kube()
        .list_kept(Resource::Secrets, MANAGED_SELECTOR, |anchor| {
            object::runtime_id(&anchor).map(str::to_string)
        })?
        .items
        .into_iter()
        .collect();
    Ok(delete_orphans(controller, objects.iter(), &|id| anchors.contains(id)))
}

/// A scoped thread's result; its panic, a bug, goes on up.
fn joined<T>(thread: thread::ScopedJoinHandle<'_, T>) -> T {
    thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}
