//! How the service reaches a sandbox's agent server: directly at its pod's address, as the
//! per-sandbox NetworkPolicy lets this service in, with no cluster DNS in between.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::Value;

use crate::http_client;

/// The most of an agent's answer read (its `/server_info` and `/api/init` are a few hundred bytes).
const MAX_ANSWER: u64 = 64 * 1024;

/// What an agent says of its idle clock in `GET /server_info` (no key needed): seconds since
/// its last API call, command, file operation or streamed LLM answer, and the limit it was
/// started with (`OH_RUNTIME_IDLE_TIMEOUT_SECONDS`), if any.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IdleClock {
    pub idle: Duration,
    pub limit: Option<Duration>,
}

/// An HTTP client for agents, every call bounded by `timeout`.
pub fn client(timeout: Duration) -> ureq::Agent {
    http_client::agent_config().timeout_global(Some(timeout)).build().into()
}

/// Asks the agent at `base_url` for its idle clock.
pub fn idle_clock(http: &ureq::Agent, base_url: &str) -> Result<IdleClock, String> {
    let info = get_json(http, &format!("{base_url}/server_info"))?;
    read_idle_clock(&info).ok_or_else(|| "no idle_time in its answer".to_string())
}

/// Where an agent started with `OH_DEFERRED_INIT` is (`GET /api/init`, no key needed); a
/// failed init rolls it back to dormant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitState {
    Dormant,
    Initializing,
    Ready,
}

pub fn init_state(http: &ureq::Agent, base_url: &str) -> Result<InitState, String> {
    let status = get_json(http, &format!("{base_url}/api/init"))?;
    match status["state"].as_str() {
        Some("dormant") => Ok(InitState::Dormant),
        Some("initializing") => Ok(InitState::Initializing),
        Some("ready") => Ok(InitState::Ready),
        _ => Err(format!("an unknown init state: {}", status["state"])),
    }
}

/// Gives a dormant agent its session (`POST /api/init`), authorised by the key it booted with.
pub fn initialize(http: &ureq::Agent, base_url: &str, init_key: &str, body: &Value) -> Result<(), String> {
    let mut answer = http
        .post(format!("{base_url}/api/init"))
        .header("X-Init-API-Key", init_key)
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .map_err(|e| e.to_string())?;
    if answer.status() == 200 {
        return Ok(());
    }
    // Its detail says why (a field it does not know, a failed start of its services).
    let detail = answer
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_string()
        .unwrap_or_default();
    Err(format!("answered {}: {}", answer.status(), detail.trim()))
}

fn get_json(http: &ureq::Agent, url: &str) -> Result<Value, String> {
    let mut answer = http.get(url).call().map_err(|e| e.to_string())?;
    if answer.status() != 200 {
        return Err(format!("answered {}", answer.status()));
    }
    let text = answer
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_string()
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))
}

fn read_idle_clock(info: &Value) -> Option<IdleClock> {
    let seconds = |value: &Value| {
        value
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
    };
    Some(IdleClock {
        idle: seconds(&info["idle_time"])?,
        limit: seconds(&info["runtime_idle_timeout_seconds"]).filter(|limit| !limit.is_zero()),
    })
}

/// A path no agent server has a route for.
const NO_ROUTE: &str = "/openhands-k8s-runtime/no-route";

/// Has the agent at `base_url` build its routes. FastAPI 0.137 and later build the routes of an
/// included router at the first request that reaches it: ~0.2 s of a core for the agent server
/// (1.58.2), which would otherwise fall on a claimed sandbox's first command. A request for a
/// path no route has reaches every router, and is answered 404 (by a dormant agent too). Any
/// answer will do: an agent that answers without routing has nothing to build.
pub fn build_routes(http: &ureq::Agent, base_url: &str) -> Result<(), String> {
    http.get(format!("{base_url}{NO_ROUTE}"))
        .call()
        .map(drop)
        .map_err(|e| e.to_string())
}

/// `http://{pod_ip}:{port}`, an IPv6 address in brackets; `None` for a pod without an address.
pub fn base_url(pod_ip: Option<&str>, port: u16) -> Option<String> {
    match pod_ip?.parse::<IpAddr>().ok()? {
        IpAddr::V4(ip) => Some(format!("http://{ip}:{port}")),
        IpAddr::V6(ip) => Some(format!("http://[{ip}]:{port}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn idle_clocks_of_both_agent_versions() {
        // 1.34.0 and 1.58.2 answer alike; the limit is null unless the agent was given one.
        let info = json!({"uptime": 3.0, "idle_time": 42.0, "runtime_idle_timeout_seconds": null});
        let clock = read_idle_clock(&info).unwrap();
        assert_eq!((clock.idle, clock.limit), (Duration::from_secs(42), None));
        let info = json!({"idle_time": 7, "runtime_idle_timeout_seconds": 600.0});
        assert_eq!(read_idle_clock(&info).unwrap().limit, Some(Duration::from_secs(600)));
        assert_eq!(read_idle_clock(&json!({"idle_time": -1})), None);
        assert_eq!(read_idle_clock(&json!({"uptime": 1})), None);
    }

    #[test]
    fn addresses_of_both_families() {
        assert_eq!(
            base_url(Some("10.244.1.7"), 60000).as_deref(),
            Some("http://10.244.1.7:60000")
        );
        assert_eq!(
            base_url(Some("fd00::7"), 60000).as_deref(),
            Some("http://[fd00::7]:60000")
        );
        assert_eq!(base_url(None, 60000), None);
        assert_eq!(base_url(Some("not an address"), 60000), None);
    }
}
