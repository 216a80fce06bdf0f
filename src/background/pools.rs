//! The warm pools kept full, and claimed pods whose agent is dormant given their session.
//!
//! Each round, for every pool: warm runtimes that cannot serve (pod gone, failed, too old, or
//! booted from a request the pool no longer has) are deleted, extra ones too, and a new one is
//! minted while the pool is short, at most one per `MINT_SPACING`; warm runtimes of a pool no
//! longer configured are deleted. Then every running runtime whose pod is Ready with a dormant agent (its container restarted, or
//! the service died between a claim and its init) is initialised from its anchor.

use std::collections::HashMap;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crate::controller::Controller;
use crate::pod_status::{PodRecord, PodStatus};
use crate::runtime::DesiredState;
use crate::warm::Pool;
use crate::warm::objects::WarmRuntime;

/// How often the pools are looked at.
const ROUND: Duration = Duration::from_millis(250);
/// A pool mints at most one warm pod this often. A burst of claims is replaced as a trickle, so
/// the sandboxes just handed out, whose first commands come within the next second, do not
/// share their nodes' cores with as many agents booting at once (an agent's boot takes a core
/// for seconds): with 8 claimed together, replacing all 8 at once tripled the time to their
/// first command in the test bed (BENCHMARKS.md, "Warm pools").
const MINT_SPACING: Duration = Duration::from_millis(500);
/// A pool whose warm pod could not be minted waits this long before it tries again.
const MINT_RETRY: Duration = Duration::from_secs(5);
/// Dormant agents initialised at once.
const INITS_AT_ONCE: usize = 8;

pub(super) fn tend(controller: &Controller) {
    let mut next_mint: HashMap<String, Instant> = HashMap::new();
    loop {
        let started = Instant::now();
        refill(controller, &mut next_mint);
        initialize_dormant(controller);
        thread::sleep(ROUND.saturating_sub(started.elapsed()));
    }
}

/// `next_mint` holds, per pool, when it may mint again.
fn refill(controller: &Controller, next_mint: &mut HashMap<String, Instant>) {
    let config = controller.config();
    let now = SystemTime::now();
    let warm = controller.store().warm_runtimes();
    for (runtime, _) in warm
        .iter()
        .filter(|(w, _)| !config.warm_pools.iter().any(|p| p.name == w.pool))
    {
        delete(controller, runtime, "its pool is no longer configured");
    }
    for pool in &config.warm_pools {
        let mut serving = Vec::new();
        for (runtime, pod) in warm.iter().filter(|(w, _)| w.pool == pool.name) {
            match unfit(controller, pool, runtime, pod.as_deref(), now) {
                Some(why) => delete(controller, runtime, &why),
                None => serving.push(runtime),
            }
        }
        // The newest go first: the oldest are the first claimed, and would be replaced first.
        serving.sort_by_key(|runtime| std::cmp::Reverse(runtime.created_at));
        while serving.len() > pool.size {
            if let Some(runtime) = serving.pop() {
                delete(controller, runtime, "the pool is smaller now");
            }
        }
        let minted_at = Instant::now();
        if serving.len() >= pool.size || next_mint.get(&pool.name).is_some_and(|at| minted_at < *at) {
            continue;
        }
        let wait = match controller.mint_warm(pool) {
            Ok(()) => MINT_SPACING,
            Err(why) => {
                log::warn!("pool {}: cannot mint a warm pod: {why}", pool.name);
                MINT_RETRY
            }
        };
        next_mint.insert(pool.name.clone(), minted_at + wait);
    }
}

/// Why a warm runtime cannot serve its pool any more, if it cannot.
fn unfit(
    controller: &Controller,
    pool: &Pool,
    runtime: &WarmRuntime,
    pod: Option<&PodRecord>,
    now: SystemTime,
) -> Option<String> {
    let config = controller.config();
    if runtime.request != pool.request {
        return Some("the pool's request changed".to_string());
    }
    if now.duration_since(runtime.created_at).unwrap_or_default() > config.warm_pod_max_age {
        return Some("it is older than WARM_POD_MAX_AGE".to_string());
    }
    let Some(pod) = pod else {
        return Some("its pod is gone".to_string());
    };
    if pod.terminating {
        return Some("its pod is being deleted".to_string());
    }
    match pod.status_at(now, config.image_pull_grace) {
        PodStatus::Failed | PodStatus::CrashLoopBackOff | PodStatus::Unknown => Some(format!(
            "its pod failed ({})",
            pod.observation.detail.as_deref().unwrap_or("no detail")
        )),
        _ => None,
    }
}

fn delete(controller: &Controller, runtime: &WarmRuntime, why: &str) {
    log::info!("runtime {} of pool {}: replaced: {why}", runtime.id, runtime.pool);
    if let Err(error) = controller.delete_warm(runtime) {
        log::warn!("runtime {}: cannot delete a warm runtime: {error}", runtime.id);
    }
}

/// Initialises the dormant agents of running runtimes, a few at once.
fn initialize_dormant(controller: &Controller) {
    let store = controller.store();
    let dormant = store.runtimes_where(|runtime, pod| {
        runtime.desired.state == DesiredState::Running && pod.is_some_and(PodRecord::awaits_init)
    });
    for batch in dormant.chunks(INITS_AT_ONCE) {
        thread::scope(|scope| {
            for runtime in batch {
                scope.spawn(move || {
                    // A client working on the session (or the claim itself) goes first.
                    let Some(_session) = store.try_lock_session(&runtime.session_id) else {
                        return;
                    };
                    let Some(pod) = store.snapshot(&runtime.id).and_then(|now| now.pod) else {
                        return;
                    };
                    if !pod.awaits_init() {
                        return;
                    }
                    match controller.initialize_if_dormant(runtime, &pod) {
                        Ok(()) => log::info!("runtime {}: its agent has its session", runtime.id),
                        Err(why) => log::warn!("runtime {}: cannot initialise its agent yet: {why}", runtime.id),
                    }
                });
            }
        });
    }
}
