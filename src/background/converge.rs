//! Convergence: the cluster brought in line with what each runtime is asked to be (API.md §6).

use crate::controller::Controller;
use crate::events::Action;
use crate::runtime::DesiredState;

/// A running runtime without a pod (node drain, eviction, `kubectl delete pod`, a crash before
/// the pod was created, or a resume whose previous pod has just gone) gets one; a paused runtime
/// loses its pod. A pod in error is replaced only when a client asks.
pub(super) fn converge(controller: &Controller) {
    let store = controller.store();
    let diverging = store.runtimes_where(|runtime, pod| match runtime.desired.state {
        DesiredState::Running => pod.is_none(),
        DesiredState::Paused => pod.is_some_and(|pod| !pod.terminating),
    });
    for runtime in diverging {
        // A client working on this session decides; the next round looks again.
        let Some(_session) = store.try_lock_session(&runtime.session_id) else {
            continue;
        };
        let Some(now) = store.snapshot(&runtime.id) else {
            continue;
        };
        let runtime = &now.runtime;
        let outcome = match (runtime.desired.state, now.pod.is_some()) {
            (DesiredState::Running, false) => {
                log::info!("runtime {}: creating its missing pod", runtime.id);
                let outcome = controller.create_pod(runtime);
                if outcome.is_ok() && store.take_vanished_pod(&runtime.id) {
                    let message = "its pod was gone (deleted, evicted or drained); created a new one";
                    controller.record(runtime, Action::PodRecreated, message);
                }
                outcome
            }
            (DesiredState::Paused, true) => {
                log::info!("runtime {}: deleting the pod of a paused runtime", runtime.id);
                controller.delete_pod(&runtime.id)
            }
            _ => Ok(()),
        };
        if let Err(error) = outcome {
            log::warn!("runtime {}: {error}", runtime.id);
        }
    }
}
