//! The binary: logging, the configuration from the environment, then the service.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use openhands_k8s_runtime::Config;

fn main() -> ExitCode {
    openhands_k8s_runtime::limit_malloc_arenas();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let outcome = Config::from_env(&|name| std::env::var(name).ok())
        .map_err(openhands_k8s_runtime::StartError::from)
        .and_then(openhands_k8s_runtime::run);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            log::error!("{error}");
            ExitCode::FAILURE
        }
    }
}
