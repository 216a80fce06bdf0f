//! The pod and anchor watches: what the cluster says reaches the store, whoever changed it (the
//! kubelet, an operator's `kubectl`, the garbage collector).

use std::collections::HashMap;
use std::thread;
use std::time::{Duration, Instant};

use super::RETRY_PAUSE;
use crate::agent;
use crate::controller::Controller;
use crate::kube::{KubeError, Resource, WatchEvent};
use crate::manifests;
use crate::object::{self, MANAGED_SELECTOR};
use crate::pod_status::PodRecord;
use crate::runtime::Desire;
use crate::store::{AnchorEvent, PodEvent};
use crate::warm::objects::{self, WarmRuntime};

/// How long one watch runs before the API server ends it and it is started again.
const WATCH_DURATION: Duration = Duration::from_secs(300);

/// Follows the sandbox pods forever, from the resourceVersion of the last list.
pub(super) fn follow_pods(controller: &Controller, resource_version: String) {
    follow(
        controller,
        Resource::Pods,
        resource_version,
        apply_pod_event,
        relist_pods,
    );
}

/// Follows the anchors forever: an operator's change or deletion reaches the store.
pub(super) fn follow_anchors(controller: &Controller, resource_version: String) {
    follow(
        controller,
        Resource::Secrets,
        resource_version,
        apply_anchor_event,
        relist_anchors,
    );
}

/// Watches `resource` from `resource_version`, again and again: a watch the server ends goes
/// on from the last version seen, a broken one after a pause, and a gone version (410) after a
/// fresh list.
fn follow(
    controller: &Controller,
    resource: Resource,
    mut resource_version: String,
    apply: fn(&Controller, WatchEvent),
    relist: fn(&Controller) -> Result<String, KubeError>,
) {
    loop {
        let outcome = controller
            .kube()
            .watch(resource, MANAGED_SELECTOR, &resource_version, WATCH_DURATION)
            .and_then(|events| {
                for event in events {
                    let event = event?;
                    if let Some(version) = event_version(&event) {
                        resource_version = version;
                    }
                    if let WatchEvent::Bookmark(version) = &event {
                        log::debug!("the {} watch is at {version} (bookmark)", resource.plural());
                    }
                    apply(controller, event);
                }
                Ok(())
            });
        match outcome {
            Ok(()) => {}
            Err(KubeError::Expired(message)) => {
                controller.metrics().watch_restarted(resource.plural());
                log::info!(
                    "the {} watch must start over ({message}); listing again",
                    resource.plural()
                );
                resource_version = loop {
                    match relist(controller) {
                        Ok(version) => break version,
                        Err(error) => {
                            log::warn!("cannot list the {}: {error}", resource.plural());
                            thread::sleep(RETRY_PAUSE);
                        }
                    }
                };
            }
            Err(error) => {
                controller.metrics().watch_restarted(resource.plural());
                log::warn!("the {} watch stopped: {error}", resource.plural());
                thread::sleep(RETRY_PAUSE);
            }
        }
    }
}

/// The resourceVersion an event brings the watch to.
fn event_version(event: &WatchEvent) -> Option<String> {
    match event {
        WatchEvent::Added(object) | WatchEvent::Modified(object) | WatchEvent::Deleted(object) => {
            object::resource_version(object).map(str::to_string)
        }
        WatchEvent::Bookmark(version) => Some(version.clone()).filter(|v| !v.is_empty()),
    }
}

fn apply_pod_event(controller: &Controller, event: WatchEvent) {
    let (pod, added, gone) = match &event {
        WatchEvent::Added(pod) => (pod, true, false),
        WatchEvent::Modified(pod) => (pod, false, false),
        WatchEvent::Deleted(pod) => (pod, false, true),
        WatchEvent::Bookmark(_) => return,
    };
    let (Some(runtime_id), Some(record)) = (object::runtime_id(pod), PodRecord::of(pod)) else {
        return;
    };
    let event = if gone {
        PodEvent::Gone { uid: record.uid }
    } else {
        PodEvent::Seen { added, record }
    };
    if let Some(pod) = controller.store().apply_pod(runtime_id, event) {
        controller.metrics().running(runtime_id);
        let port = controller.config().ports.agent;
        match agent::base_url(pod.ip.as_deref(), port) {
            Some(url) => log::debug!("runtime {runtime_id}: pod ready, its agent server at {url}"),
            None => log::debug!("runtime {runtime_id}: pod ready, without an address yet"),
        }
    }
}

fn apply_anchor_event(controller: &Controller, event: WatchEvent) {
    let (anchor, gone) = match &event {
        WatchEvent::Added(anchor) | WatchEvent::Modified(anchor) => (anchor, object::is_being_deleted(anchor)),
        WatchEvent::Deleted(anchor) => (anchor, true),
        WatchEvent::Bookmark(_) => return,
    };
    let Some(runtime_id) = object::runtime_id(anchor) else {
        return;
    };
    if objects::pool_of(anchor).is_some() {
        let warm = objects::from_anchor(anchor).ok().filter(|_| !gone);
        controller.store().apply_warm(runtime_id, warm);
        return;
    }
    let event = if gone {
        AnchorEvent::Gone
    } else {
        let Some(desired) = manifests::desire_of(anchor) else {
            return;
        };
        AnchorEvent::Desired(desired)
    };
    if controller.store().apply_anchor(runtime_id, event) {
        log::info!("runtime {runtime_id}: its anchor was deleted; garbage collection removes the rest");
    }
}

fn relist_pods(controller: &Controller) -> Result<String, KubeError> {
    let listed_at = Instant::now();
    let pods = controller.kube().list_kept(Resource::Pods, MANAGED_SELECTOR, |pod| {
        Some((object::runtime_id(&pod)?.to_string(), PodRecord::of(&pod)?))
    })?;
    controller
        .store()
        .apply_pod_list(listed_at, pods.items.into_iter().collect());
    Ok(pods.resource_version)
}

fn relist_anchors(controller: &Controller) -> Result<String, KubeError> {
    let listed_at = Instant::now();
    let anchors = controller
        .kube()
        .list_kept(Resource::Secrets, MANAGED_SELECTOR, |anchor| {
            if object::is_being_deleted(&anchor) {
                return None;
            }
            match objects::pool_of(&anchor) {
                Some(_) => objects::from_anchor(&anchor)
                    .ok()
                    .map(|warm| Listed::Warm(Box::new(warm))),
                None => Some(Listed::Desired(
                    object::runtime_id(&anchor)?.to_string(),
                    manifests::desire_of(&anchor)?,
                )),
            }
        })?;
    let mut desired = HashMap::new();
    let mut warm = Vec::new();
    for listed in anchors.items {
        match listed {
            Listed::Desired(runtime_id, desire) => {
                desired.insert(runtime_id, desire);
            }
            Listed::Warm(runtime) => warm.push(*runtime),
        }
    }
    controller.store().load_warm(warm);
    for runtime_id in controller.store().apply_anchor_list(listed_at, &desired) {
        log::info!("runtime {runtime_id}: its anchor is gone; garbage collection removes the rest");
    }
    Ok(anchors.resource_version)
}

/// What a relist keeps of an anchor.
enum Listed {
    Desired(String, Desire),
    Warm(Box<WarmRuntime>),
}
