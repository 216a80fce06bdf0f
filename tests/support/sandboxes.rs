//! A bed of sandboxes whose pods run the real agent server: the fake API server with its node,
//! an ingress controller's stand-in, and the service; reached as a client reaches them.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::agent_bed::AgentBed;
use super::ingress::IngressStandIn;
use super::{FakeKube, Service};

/// A cold boot of the agent server takes 5-20 s here; several may boot at once.
pub const BOOT: Duration = Duration::from_secs(180);

pub struct Bed {
    pub fake: FakeKube,
    pub ingress: IngressStandIn,
    pub service: Service,
    pub http: ureq::Agent,
}

pub fn bed(versions: &[&str]) -> Option<Bed> {
    bed_with(versions, &[])
}

pub fn bed_with(versions: &[&str], settings: &[(&str, &str)]) -> Option<Bed> {
    let agents = AgentBed::for_test(versions)?;
    let fake = FakeKube::builder().run_agents(agents).start();
    let ingress = fake.start_ingress(0);
    let mut settings = settings.to_vec();
    settings.push(("URL_SCHEME", "http"));
    let service = Service::start(&fake, &settings);
    let http = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    Some(Bed {
        fake,
        ingress,
        service,
        http,
    })
}

impl Bed {
    pub fn wait_running(&self, session_id: &str) -> Value {
        self.wait_for(session_id, "running", |runtime| runtime["status"] == "running")
    }

    /// Waits until the session's runtime is as `wanted` says (never in `error`); on a timeout
    /// the failure shows the runtime, its container's log and the service's.
    pub fn wait_for(&self, session_id: &str, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + BOOT;
        loop {
            let answer = self.service.get(&format!("/sessions/{session_id}"));
            if answer.code == 200 && wanted(&answer.body) {
                return answer.body;
            }
            assert!(
                Instant::now() < deadline && answer.body["status"] != "error",
                "{session_id} never {what}: {:#}\n--- its container:\n{}\n--- the service:\n{}",
                answer.body,
                self.container_log(session_id),
                self.service.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn container_log(&self, session_id: &str) -> String {
        let answer = self.service.get(&format!("/sessions/{session_id}"));
        let pod = format!("runtime-{}", answer.body["runtime_id"].as_str().unwrap_or_default());
        self.fake
            .node()
            .map(|node| node.container_log(&pod))
            .unwrap_or_default()
    }

    /// `POST {url}/api/bash/execute_bash_command` as a client would, through the ingress.
    pub fn run_command(&self, runtime: &Value, key: &str, command: &str) -> (u16, Value) {
        self.post_to_agent(
            runtime,
            key,
            "/api/bash/execute_bash_command",
            &json!({"command": command}),
        )
    }

    /// `GET {url}{path}` with the session key `key`, through the ingress.
    pub fn get_from_agent(&self, runtime: &Value, key: &str, path: &str) -> (u16, Value) {
        let host = runtime["url"].as_str().expect("a url").trim_start_matches("http://");
        let mut answer = self
            .http
            .get(format!("{}{path}", self.ingress.url()))
            .header("Host", host)
            .header("X-Session-API-Key", key)
            .call()
            .expect("the ingress answers");
        decoded(&mut answer)
    }

    /// `POST {url}{path}` with `body` and the session key `key`, through the ingress.
    pub fn post_to_agent(&self, runtime: &Value, key: &str, path: &str, body: &Value) -> (u16, Value) {
        let url = runtime["url"].as_str().expect("a url");
        let host = url.trim_start_matches("http://");
        let mut answer = self
            .http
            .post(format!("{}{path}", self.ingress.url()))
            .header("Host", host)
            .header("X-Session-API-Key", key)
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .expect("the ingress answers");
        decoded(&mut answer)
    }

    /// Runs `command` in the sandbox with its session key; its standard output.
    pub fn output_of(&self, runtime: &Value, command: &str) -> String {
        let key = runtime["session_api_key"].as_str().expect("a session key");
        let (code, body) = self.run_command(runtime, key, command);
        assert_eq!(code, 200, "{command}: {body:#}");
        assert_eq!(body["exit_code"], 0, "{command}: {body:#}");
        body["stdout"].as_str().unwrap_or_default().to_string()
    }
}

/// An agent's answer: its status and its body, as JSON or else as the text it is.
fn decoded(answer: &mut ureq::http::Response<ureq::Body>) -> (u16, Value) {
    let code = answer.status().as_u16();
    let text = answer.body_mut().read_to_string().unwrap_or_default();
    (code, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}
