//! The warm pools kept full, and claimed pods whose agent is dormant given their session.
//!
//! Each round, for every pool: warm runtimes that cannot serve (pod gone, failed, too old, or
//! booted from a request the pool no longer has) are deleted, extra ones too, and a new one is
//! minted while the pool is short, at most one per `MINT_SPACING`; warm runtimes of a pool no
//! longer configured are deleted. A warm pod turned Ready has its agent build its routes, and
//! may be claimed from then on. Then every running runtime whose pod is Ready with a dormant
//! agent (its container restarted, or the service died between a claim and its init) is
//! initialised from its anchor.

use std::collections::HashMap;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crate::controller::Controller;
use crate::pod_status::{Agent, PodRecord, PodStatus};
use crate::runtime::DesiredState;
use crate::warm::Pool;
use crate::warm::objects::WarmRuntime;

/// How often the pools are looked at.
const ROUND: Duration = Duration::from_millis(250);
/// A pool mints at most one warm pod this often. A burst of claims is replaced as a trickle, so
/// the sandboxes just handed out, whose first commands come within the next second, do not
/// share their nodes' cores with as many agents booting at once (an agent's boot takes a core
/// for seconds); a pool of 10 still fills in 5 s.
const MINT_SPACING: Duration = Duration::from_millis(500);
/// A pool whose warm pod could not be minted waits this long before it tries again.
const MINT_RETRY: Duration = Duration::from_secs(5);
/// Agents called at once (each call waits on an agent, not on this service).
const AGENT_CALLS_AT_ONCE: usize = 8;

pub(super) fn tend(controller: &Controller) {
    let mut next_mint: HashMap<String, Instant> = HashMap::new();
    loop {
        let started = Instant::now();
        refill(controller, &mut next_mint);
        build_routes(controller);
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
        if serving.len() >= pool.size || next_mint.get(&pool.name).is_some_and(|at| Instant::now() < *at) {
            continue;
        }
        let wait = match controller.mint_warm(pool) {
            Ok(()) => MINT_SPACING,
            Err(why) => {
                log::warn!("pool {}: cannot mint a warm pod: {why}", pool.name);
                MINT_RETRY
            }
        };
        // From the pod's creation, the last step of a mint, however long the mint took.
        next_mint.insert(pool.name.clone(), Instant::now() + wait);
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

/// Has the dormant agents of Ready warm pods build their routes: only then may they be claimed.
fn build_routes(controller: &Controller) {
    let unbuilt: Vec<_> = controller
        .store()
        .warm_runtimes()
        .into_iter()
        .filter_map(|(warm, pod)| Some((warm, pod?)))
        .filter(|(_, pod)| pod.agent == Agent::Dormant { routes_built: false } && pod.is_ready_and_staying())
        .collect();
    at_once(&unbuilt, |(warm, pod)| {
        if let Err(why) = controller.build_routes(warm, pod) {
            log::warn!(
                "runtime {} of pool {}: its agent did not answer: {why}",
                warm.id,
                warm.pool
            );
        }
    });
}

/// Initialises the dormant agents of running runtimes.
fn initialize_dormant(controller: &Controller) {
    let store = controller.store();
    let dormant = store.runtimes_where(|runtime, pod| {
        runtime.desired.state == DesiredState::Running && pod.is_some_and(PodRecord::awaits_init)
    });
    at_once(&dormant, |runtime| {
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

/// Calls `work` on every item, `AGENT_CALLS_AT_ONCE` at a time.
fn at_once<T: Sync>(items: &[T], work: impl Fn(&T) + Sync) {
    for batch in items.chunks(AGENT_CALLS_AT_ONCE) {
        thread::scope(|scope| {
            for item in batch {
                scope.spawn(|| work(item));
            }
        });
    }
}
