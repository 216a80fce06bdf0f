//! The work the service does on its own, for as long as it runs: it rebuilds the store from
//! the cluster (recovery), keeps it true to the cluster (two watches), keeps the cluster true to
//! what each runtime is asked to be (convergence), removes what a runtime left behind (the
//! orphan sweep), pauses or stops runtimes left idle, stuck or paused too long (lifecycle), and
//! keeps the warm pools full (pools).

mod converge;
mod lifecycle;
mod pools;
mod recovery;
mod watches;

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::controller::Controller;

/// How often each runtime's pod is compared with its desired state.
const CONVERGE_INTERVAL: Duration = Duration::from_secs(1);
/// The pause before trying the API server again after a failure.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Rebuilds the store from the cluster, then follows the cluster for as long as the service
/// runs: the pod and anchor watches each in a thread, and a loop that converges and sweeps.
pub fn keep_state(controller: &Arc<Controller>) {
    let recovered = loop {
        match recovery::recover(controller) {
            Ok(recovered) => break recovered,
            Err(error) => {
                log::error!("cannot load the runtimes from the cluster yet: {error}");
                thread::sleep(RETRY_PAUSE);
            }
        }
    };
    let pods = controller.clone();
    thread::spawn(move || watches::follow_pods(&pods, recovered.pods_version));
    let anchors = controller.clone();
    thread::spawn(move || watches::follow_anchors(&anchors, recovered.anchors_version));
    let tended = controller.clone();
    thread::spawn(move || lifecycle::tend(&tended));
    let pooled = controller.clone();
    thread::spawn(move || pools::tend(&pooled));

    let sweep_interval = controller.config().orphan_sweep_interval;
    let mut last_sweep = Instant::now();
    loop {
        let started = Instant::now();
        converge::converge(controller);
        if last_sweep.elapsed() >= sweep_interval {
            last_sweep = Instant::now();
            match recovery::sweep_orphans(controller) {
                Ok(0) => {}
                Ok(deleted) => log::info!("deleted {deleted} objects whose runtime was gone"),
                Err(error) => log::warn!("cannot sweep for orphaned objects: {error}"),
            }
        }
        thread::sleep(CONVERGE_INTERVAL.saturating_sub(started.elapsed()));
    }
}
