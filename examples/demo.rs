//! The service and a simulated Kubernetes cluster in one process, for trying the API:
//!
//! ```sh
//! cargo run --release --example demo     # then use the curl lines it prints
//! ```
//!
//! The cluster is the test suite's fake API server with its simulated kubelet, on a free local
//! port; the service talks to it as it would to a real one. `SERVER_PORT` (default 8080) and
//! `API_KEY` (default `dev`) are read like the service reads them, and so is every other
//! setting of the README's configuration table. Ctrl-C ends both.
//!
//! ```sh
//! bash tests/agent-server/install.sh 1.58.2                  # once
//! cargo run --release --example demo -- --real-agents
//! ```
//!
//! runs the real OpenHands agent server in every sandbox pod of an agent-server image (the
//! default image is one), and an ingress controller's stand-in on port 8081 (`INGRESS_PORT`)
//! that routes `{session}.localhost` to it, so a sandbox's URL opens in a browser (which resolve
//! `*.localhost` to this machine) with `:8081` added.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::ExitCode;
use std::time::Duration;

use openhands_k8s_runtime::{Config, StartError};
use support::agent_bed::AgentBed;
use support::{FakeKube, PodFate};

/// How often the simulated kubelet moves a pod one step (Pending, ContainerCreating, Running,
/// Ready): a sandbox reads `running` about three seconds after `/start`.
const KUBELET_TICK: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let real_agents = match std::env::args().skip(1).collect::<Vec<_>>().as_slice() {
        [] => None,
        [flag] if flag == "--real-agents" => match AgentBed::installed() {
            Ok(agents) => Some(agents),
            Err(why) => {
                eprintln!("demo: {why}");
                return ExitCode::FAILURE;
            }
        },
        _ => {
            eprintln!("usage: demo [--real-agents]");
            return ExitCode::FAILURE;
        }
    };
    let mut builder = FakeKube::builder().without_auth().tick(KUBELET_TICK);
    if let Some(agents) = real_agents.clone() {
        builder = builder.run_agents(agents);
    }
    let cluster = builder.start();
    let ingress_port = std::env::var("INGRESS_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8081);
    let ingress = real_agents.as_ref().map(|_| cluster.start_ingress(ingress_port));
    cluster.kubelet_rule("crashloop", PodFate::crash_loop());
    cluster.kubelet_rule("no-such-image", PodFate::ImagePullBackOff);
    cluster.kubelet_rule("unschedulable", PodFate::unschedulable());

    let demo_defaults = |name: &str| match name {
        "API_KEY" => Some("dev".to_string()),
        "KUBE_API_URL" => Some(cluster.url().to_string()),
        "NAMESPACE" => Some(support::NAMESPACE.to_string()),
        // Sandbox URLs a browser on this machine opens (through the ingress stand-in).
        "BASE_DOMAIN" if ingress.is_some() => Some("localhost".to_string()),
        "URL_SCHEME" if ingress.is_some() => Some("http".to_string()),
        _ => None,
    };
    let lookup = |name: &str| match name {
        // The demo's cluster is the only one it may talk to.
        "KUBE_API_URL" | "NAMESPACE" => demo_defaults(name),
        _ => std::env::var(name).ok().or_else(|| demo_defaults(name)),
    };
    let config = match Config::from_env(&lookup) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{}", StartError::from(error));
            return ExitCode::FAILURE;
        }
    };
    print_usage(&config.api_key, config.server_port);
    if let Some(ingress) = &ingress {
        print_real_agents(ingress.addr.port(), &config.base_domain);
    }
    match openhands_k8s_runtime::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

fn print_usage(api_key: &str, port: u16) {
    let api = format!("http://localhost:{port}");
    let key = format!("-H 'X-API-Key: {api_key}'");
    println!(
        "\nopenhands-k8s-runtime on {api}, with a simulated cluster (pods are Ready about three seconds after they are created)

Create a sandbox, then repeat the second line until \"status\": \"running\":
  curl -s -X POST {api}/start {key} -d '{{\"session_id\": \"demo\"}}'
  curl -s {api}/sessions/demo {key}

Then list, pause, resume and stop it (RUNTIME_ID is the runtime_id of the answers above):
  curl -s {api}/list {key}
  curl -s -X POST {api}/pause {key} -d '{{\"runtime_id\": \"RUNTIME_ID\"}}'
  curl -s -X POST {api}/resume {key} -d '{{\"runtime_id\": \"RUNTIME_ID\"}}'
  curl -s -X POST {api}/stop {key} -d '{{\"runtime_id\": \"RUNTIME_ID\"}}'

Images whose name contains crashloop, no-such-image or unschedulable fail as on a real cluster:
  curl -s -X POST {api}/start {key} -d '{{\"session_id\": \"broken\", \"image\": \"example/crashloop:1\"}}'

Ctrl-C stops the service and the cluster.
"
    );
}

fn print_real_agents(ingress_port: u16, base_domain: &str) {
    println!(
        "Sandbox pods of an agent-server image run the real agent server (the first boot takes 5-20 s).
Its URL, with :{ingress_port} added, goes through the ingress stand-in; SESSION_API_KEY is the
session_api_key of the runtime:
  http://demo.{base_domain}:{ingress_port}/docs                      (in a browser)
  curl -s -X POST http://localhost:{ingress_port}/api/bash/execute_bash_command -H 'Host: demo.{base_domain}' \\
    -H 'X-Session-API-Key: SESSION_API_KEY' -H 'Content-Type: application/json' -d '{{\"command\": \"uname -a\"}}'
"
    );
}
