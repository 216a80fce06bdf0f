//! An agent server's stand-in on 127.0.0.1, for pods whose `status.podIP` the fake sets to
//! 127.0.0.1 (`Builder::pod_ip`) and a service told its port (`AGENT_SERVER_PORT`): it answers
//! what the service asks of agents (`/server_info`, `GET` and `POST /api/init`) as a dormant
//! agent of either version does, 404 to anything else, and records every call.

use std::sync::{Arc, Mutex};
use std::thread;

use serde_json::{Value, json};

/// One call the service made to an agent.
#[derive(Debug, Clone)]
pub struct AgentCall {
    pub method: String,
    pub path: String,
    pub init_key: Option<String>,
    pub body: Value,
}

pub struct AgentStandIn {
    server: Arc<tiny_http::Server>,
    pub port: u16,
    calls: Arc<Mutex<Vec<AgentCall>>>,
}

impl AgentStandIn {
    /// Agents that are dormant and take their init (all pods share the one stand-in).
    pub fn start() -> AgentStandIn {
        AgentStandIn::answering_init(200)
    }

    /// Agents whose `POST /api/init` answers `code` (500: its services failed to start, and it
    /// rolled back to dormant).
    pub fn answering_init(code: u16) -> AgentStandIn {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("an agent stand-in"));
        let port = server.server_addr().to_ip().expect("an address").port();
        let calls: Arc<Mutex<Vec<AgentCall>>> = Arc::default();
        for _ in 0..4 {
            let (server, calls) = (server.clone(), calls.clone());
            thread::spawn(move || {
                for mut request in server.incoming_requests() {
                    let mut text = String::new();
                    let _ = request.as_reader().read_to_string(&mut text);
                    let call = AgentCall {
                        method: request.method().to_string(),
                        path: request.url().to_string(),
                        init_key: request
                            .headers()
                            .iter()
                            .find(|h| h.field.equiv("X-Init-API-Key"))
                            .map(|h| h.value.to_string()),
                        body: serde_json::from_str(&text).unwrap_or(Value::Null),
                    };
                    let (status, answer) = match (call.method.as_str(), call.path.as_str()) {
                        ("GET", "/api/init") => (200, json!({"state": "dormant", "error": null})),
                        ("POST", "/api/init") if code == 200 => (200, json!({"state": "ready", "error": null})),
                        ("POST", "/api/init") => (code, json!({"detail": "RuntimeError: the services did not start"})),
                        ("GET", "/server_info") => (
                            200,
                            json!({"uptime": 10.0, "idle_time": 1.0, "runtime_idle_timeout_seconds": null}),
                        ),
                        _ => (404, json!({"detail": "Not Found"})),
                    };
                    calls.lock().expect("the calls").push(call);
                    let response = tiny_http::Response::from_string(answer.to_string()).with_status_code(status);
                    let _ = request.respond(response);
                }
            });
        }
        AgentStandIn { server, port, calls }
    }

    pub fn calls(&self) -> Vec<AgentCall> {
        self.calls.lock().expect("the calls").clone()
    }
}

impl Drop for AgentStandIn {
    fn drop(&mut self) {
        self.server.unblock();
    }
}
