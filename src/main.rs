use std::process::ExitCode;

use openhands_k8s_runtime::kube_rest;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let config = match kube_rest::Config::from_env(&|name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(error) => {
            log::error!("invalid configuration: {error}");
            return ExitCode::FAILURE;
        }
    };
    match kube_rest::Client::new(&config) {
        Ok(client) => {
            log::info!(
                "Kubernetes API at {} in namespace {}",
                config.api_url,
                client.namespace()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            log::error!("invalid configuration: {error}");
            ExitCode::FAILURE
        }
    }
}
