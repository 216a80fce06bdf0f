use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use openhands_k8s_runtime::api;
use openhands_k8s_runtime::config::Config;
use openhands_k8s_runtime::controller::Controller;
use openhands_k8s_runtime::kube_rest;

/// How often the pods are listed; clients poll about as often.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
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
    let address = format!("0.0.0.0:{}", config.server_port);
    let server = match tiny_http::Server::http(&address) {
        Ok(server) => Arc::new(server),
        Err(error) => {
            log::error!("cannot listen on {address}: {error}");
            return ExitCode::FAILURE;
        }
    };
    log::info!(
        "serving on {address} with {} workers; Kubernetes API at {} in namespace {}",
        config.worker_threads,
        config.kube.api_url,
        config.kube.namespace
    );
    let workers = config.worker_threads;
    let controller = Arc::new(Controller::new(config, kube));

    {
        let controller = controller.clone();
        thread::spawn(move || poll_pods(&controller));
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

/// Lists the sandbox pods about once a second for as long as the service runs.
fn poll_pods(controller: &Controller) {
    loop {
        let started = Instant::now();
        if let Err(error) = controller.poll_pods() {
            log::warn!("cannot list the sandbox pods: {error}");
        }
        thread::sleep(POLL_INTERVAL.saturating_sub(started.elapsed()));
    }
}
