//! The running service: its parts built from the configuration, then its threads: the HTTP
//! workers and the background work.

use std::fmt;
use std::thread;
use std::time::Duration;

use crate::api::{self, Api};
use crate::background;
use crate::config::Config;
use crate::controller::Controller;
use crate::env::ConfigError;
use crate::image_check::ImageCheck;
use crate::kube;
use crate::registry::Registries;
use crate::sys;

/// Why the service could not start.
#[derive(Debug)]
pub enum StartError {
    Config(ConfigError),
    Listen { port: u16, error: std::io::Error },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(error) => write!(f, "invalid configuration: {error}"),
            StartError::Listen { port, error } => write!(f, "cannot listen on port {port}: {error}"),
        }
    }
}

impl std::error::Error for StartError {}

impl From<ConfigError> for StartError {
    fn from(error: ConfigError) -> StartError {
        StartError::Config(error)
    }
}

/// Builds the service from `config` and serves until SIGTERM or SIGINT, then stops gracefully
/// (see `shut_down`) and ends the process with status 0. It returns only when it cannot start.
pub fn run(config: Config) -> Result<(), StartError> {
    // Before any thread starts, so that all of them leave the signals to `shut_down`.
    if let Err(error) = sys::block_termination_signals() {
        log::warn!("cannot take over SIGTERM and SIGINT ({error}): they will end the service at once");
    }
    let kube = kube::Client::new(&config.kube)?;
    let images = ImageCheck::new(Registries::new(&config.registries)?, config.image_pull_secrets.clone());
    let port = config.server_port;
    let server = api::listen(port, config.http).map_err(|error| StartError::Listen { port, error })?;
    log::info!(
        "serving on port {port} with {} workers; Kubernetes API at {} in namespace {}",
        config.worker_threads,
        config.kube.api_url,
        config.kube.namespace
    );
    let (workers, grace) = (config.worker_threads, config.shutdown_grace);
    let controller = std::sync::Arc::new(Controller::new(config, kube, images));
    {
        let controller = controller.clone();
        thread::spawn(move || background::keep_state(&controller));
    }
    let api = Api::new(&controller);
    thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| api.serve(&server));
        }
        scope.spawn(|| shut_down(&api, &server, grace));
    });
    Ok(())
}

/// Waits for SIGTERM or SIGINT, then: `/readiness` answers 503 (the Service stops routing here),
/// no connection is accepted any more, the requests in flight are finished for up to `grace`,
/// and the process exits 0. The cluster is the store: nothing else needs saving.
fn shut_down(api: &Api, server: &tiny_http::Server, grace: Duration) {
    match sys::wait_for_termination() {
        Ok(signal) => log::info!("signal {signal}: finishing the requests in flight (up to {grace:?}), then exiting"),
        Err(error) => {
            log::warn!("cannot wait for SIGTERM ({error}); it will end the service at once");
            return;
        }
    }
    api.begin_shutdown();
    server.stop_accepting();
    if api.wait_idle(grace) {
        log::info!("every request answered; exiting");
    } else {
        log::warn!("requests still in flight after {grace:?}; exiting anyway");
    }
    std::process::exit(0);
}
