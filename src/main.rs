use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use openhands_k8s_runtime::api;
use openhands_k8s_runtime::config::Config;
use openhands_k8s_runtime::controller::Controller;
use openhands_k8s_runtime::kube_rest;
use openhands_k8s_runtime::registry::Registries;

/// How often each runtime's pod is compared with its desired state.
const CONVERGE_INTERVAL: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    limit_malloc_arenas();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let config = match Config::from_env(&|name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(error) => {
            log::error!("invalid configuration: {error}");
            return ExitCode::FAILURE;
        }
    };
    let kube = match kube_rest::Client::new(&config.kube) {
        Ok(kube) => kube,
        Err(error) => {
            log::error!("invalid configuration: {error}");
            return ExitCode::FAILURE;
        }
    };
    let registries = match Registries::new(&config.registries) {
        Ok(registries) => registries,
        Err(error) => {
            log::error!("invalid configuration: {error}");
            return ExitCode::FAILURE;
        }
    };
    let server = match api::listen(config.server_port) {
        Ok(server) => Arc::new(server),
        Err(error) => {
            log::error!("cannot listen on port {}: {error}", config.server_port);
            return ExitCode::FAILURE;
        }
    };
    log::info!(
        "serving on port {} with {} workers; Kubernetes API at {} in namespace {}",
        config.server_port,
        config.worker_threads,
        config.kube.api_url,
        config.kube.namespace
    );
    let workers = config.worker_threads;
    let controller = Arc::new(Controller::new(config, kube, registries));

    {
        let controller = controller.clone();
        thread::spawn(move || keep_state(&controller));
    }
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let (server, controller) = (server.clone(), controller.clone());
            thread::spawn(move || api::serve(&server, &controller))
        })
        .collect();
    for handle in handles {
        let _ = handle.join();
    }
    ExitCode::SUCCESS
}

/// glibc gives each thread that allocates an arena of its own (up to eight per core), and what
/// is freed in one arena is not reused by another: with 16 workers and 5,000 runtimes the
/// service kept a third more memory than it used. Two arenas serve the few cores it runs on.
/// (The static musl build has a single heap.)
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    // SAFETY: mallopt sets an allocator parameter; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

/// Rebuilds the store from the cluster, then follows the cluster for as long as the service
/// runs: two watches (pods, anchors) and a loop that converges and sweeps.
fn keep_state(controller: &Arc<Controller>) {
    let recovered = loop {
        match controller.recover() {
            Ok(recovered) => break recovered,
            Err(error) => {
                log::error!("cannot load the runtimes from the cluster yet: {error}");
                thread::sleep(CONVERGE_INTERVAL);
            }
        }
    };
    let pods = controller.clone();
    thread::spawn(move || pods.follow_pods(recovered.pods_version));
    let anchors = controller.clone();
    thread::spawn(move || anchors.follow_anchors(recovered.anchors_version));

    let sweep_interval = controller.config().orphan_sweep_interval;
    let mut last_sweep = Instant::now();
    loop {
        let started = Instant::now();
        controller.converge();
        if last_sweep.elapsed() >= sweep_interval {
            last_sweep = Instant::now();
            match controller.sweep_orphans() {
                Ok(0) => {}
                Ok(deleted) => log::info!("deleted {deleted} objects whose runtime was gone"),
                Err(error) => log::warn!("cannot sweep for orphaned objects: {error}"),
            }
        }
        thread::sleep(CONVERGE_INTERVAL.saturating_sub(started.elapsed()));
    }
}
