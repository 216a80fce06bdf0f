//! The running service: its parts built from the configuration, then its threads: the HTTP
//! workers and the background work.

use std::fmt;
use std::thread;

use crate::api::{self, Api};
use crate::background;
use crate::config::Config;
use crate::controller::Controller;
use crate::env::ConfigError;
use crate::image_check::ImageCheck;
use crate::kube;
use crate::registry::Registries;

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

/// Builds the service from `config` and serves for as long as the process runs. It returns only
/// when it cannot start.
pub fn run(config: Config) -> Result<(), StartError> {
    let kube = kube::Client::new(&config.kube)?;
    let images = ImageCheck::new(Registries::new(&config.registries)?, config.image_pull_secrets.clone());
    let port = config.server_port;
    let server = api::listen(port).map_err(|error| StartError::Listen { port, error })?;
    log::info!(
        "serving on port {port} with {} workers; Kubernetes API at {} in namespace {}",
        config.worker_threads,
        config.kube.api_url,
        config.kube.namespace
    );
    let workers = config.worker_threads;
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
    });
    Ok(())
}
