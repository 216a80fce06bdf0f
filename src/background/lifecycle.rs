//! What the service does on its own to runtimes left alone (API.md §6): it pauses a runtime
//! whose agent has been idle for its limit, pauses one stuck `starting` or in `error`, and
//! stops one paused for too long. Every clock is kept by the cluster (the anchor's
//! desired-state time, the pod's Ready condition) or by the agent, never only in memory, so a
//! restart of the service neither resets nor forgets one.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, SystemTime};

use crate::agent::{self, IdleClock};
use crate::controller::Controller;
use crate::events::Action;
use crate::runtime::{Runtime, Status};
use crate::store::Snapshot;

/// How long an agent has to answer `/server_info`: one that does not is never paused for
/// idleness.
const AGENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Agents asked at once, so that a round over thousands of runtimes takes seconds, not hours,
/// and a few slow agents cannot hold it up.
const AGENTS_AT_ONCE: usize = 16;

/// Checks every runtime each `IDLE_CHECK_INTERVAL`, for as long as the service runs.
pub(super) fn tend(controller: &Arc<Controller>) {
    let lifecycle = controller.config().lifecycle;
    if lifecycle.idle_pause_after.is_none()
        && lifecycle.paused_stop_after.is_none()
        && lifecycle.stuck_pause_after.is_none()
    {
        return;
    }
    let http = agent::client(AGENT_TIMEOUT);
    loop {
        thread::sleep(lifecycle.idle_check_interval);
        check(controller, &http);
    }
}

/// One round: acts on every runtime past one of its limits.
fn check(controller: &Controller, http: &ureq::Agent) {
    let config = controller.config();
    let lifecycle = config.lifecycle;
    let now = SystemTime::now();
    let age = |since: SystemTime| now.duration_since(since).unwrap_or_default();
    let mut running = Vec::new();
    for snapshot in controller.store().snapshots() {
        let runtime = &snapshot.runtime;
        match snapshot.status(config, now) {
            Status::Paused => {
                if let Some(limit) = lifecycle.paused_stop_after
                    && age(runtime.desired.since) >= limit
                {
                    let message = format!(
                        "paused for {}; stopped (PAUSED_STOP_AFTER)",
                        seconds(age(runtime.desired.since))
                    );
                    act(controller, runtime, Action::DormantStop, &message, |c| {
                        c.stop_unless_asked_since(&runtime.id, runtime.desired.since)
                    });
                }
            }
            status @ (Status::Starting | Status::Error) => {
                let unready_since = snapshot.pod.as_ref().and_then(|pod| pod.unready_since);
                let since = unready_since.map_or(runtime.desired.since, |pod| pod.max(runtime.desired.since));
                if let Some(limit) = lifecycle.stuck_pause_after
                    && age(since) >= limit
                {
                    let word = if status == Status::Error {
                        "in error"
                    } else {
                        "starting"
                    };
                    // The client's view only here: building one for every runtime each round
                    // would cost a round over thousands of them for nothing.
                    let reason = snapshot
                        .view(config, now)
                        .status_detail
                        .unwrap_or_else(|| format!("{word} for {} without becoming ready", seconds(age(since))));
                    let message = format!(
                        "{word} for {}; paused (STUCK_PAUSE_AFTER): {reason}",
                        seconds(age(since))
                    );
                    act(controller, runtime, Action::StuckPause, &message, |c| {
                        c.pause_unless_asked_since(&runtime.id, runtime.desired.since, Some(reason.clone()))
                    });
                }
            }
            Status::Running => {
                if lifecycle.idle_pause_after.is_some() {
                    running.push(snapshot);
                }
            }
        }
    }
    if let Some(default_limit) = lifecycle.idle_pause_after {
        for (runtime, clock) in idle_clocks(controller, http, running) {
            let limit = clock.limit.unwrap_or(default_limit);
            // A stale clock (a pod that booted long before it was resumed or claimed) does not
            // count: the runtime has been running for at least one limit.
            if clock.idle >= limit && age(runtime.desired.since) >= limit {
                let message = format!(
                    "its agent was idle for {} (limit {}); paused",
                    seconds(clock.idle),
                    seconds(limit)
                );
                act(controller, &runtime, Action::IdlePause, &message, |c| {
                    c.pause_unless_asked_since(&runtime.id, runtime.desired.since, None)
                });
            }
        }
    }
}

/// Runs `action` and records it when it took place.
fn act(
    controller: &Controller,
    runtime: &Runtime,
    kind: Action,
    message: &str,
    action: impl FnOnce(&Controller) -> Result<bool, crate::error::Error>,
) {
    match action(controller) {
        Ok(true) => controller.record(runtime, kind, message),
        Ok(false) => {}
        Err(error) => log::warn!("runtime {}: {} failed: {error}", runtime.id, kind.reason()),
    }
}

/// The idle clocks of the agents that answered, asked `AGENTS_AT_ONCE` at a time.
fn idle_clocks(controller: &Controller, http: &ureq::Agent, running: Vec<Snapshot>) -> Vec<(Arc<Runtime>, IdleClock)> {
    let port = controller.config().ports.agent;
    let next = AtomicUsize::new(0);
    let answers = Mutex::new(Vec::new());
    thread::scope(|scope| {
        for _ in 0..AGENTS_AT_ONCE.min(running.len()) {
            scope.spawn(|| {
                while let Some(snapshot) = running.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let pod_ip = snapshot.pod.as_ref().and_then(|pod| pod.ip.as_deref());
                    let Some(url) = agent::base_url(pod_ip, port) else {
                        continue;
                    };
                    match agent::idle_clock(http, &url) {
                        Ok(clock) => answers
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((snapshot.runtime.clone(), clock)),
                        Err(why) => log::debug!("runtime {}: no idle clock from {url}: {why}", snapshot.runtime.id),
                    }
                }
            });
        }
    });
    answers.into_inner().unwrap_or_else(|e| e.into_inner())
}

fn seconds(duration: Duration) -> String {
    format!("{}s", duration.as_secs())
}
