//! Warm pools (`WARM_POOLS`): sandbox pods booted ahead of time, their agent server dormant
//! (`OH_DEFERRED_INIT`), each one an unclaimed runtime with its own id, anchor and session key.
//! A `/start` whose request matches a pool claims one and hands it the session's settings
//! through the agent's `POST /api/init` (`boot` says what can be handed over after boot).
//!
//! - `mod.rs`: what a pool is, read from its setting.
//! - `boot`: what the agent reads only at boot, whether a request matches a pool, and the body
//!   of `/api/init`.
//! - `objects`: a warm runtime's objects, and the patches that hand them to a session.
//! - `runtimes`: minting, claiming and initialising warm runtimes.

pub mod boot;
pub mod objects;
pub mod runtimes;

use std::collections::BTreeSet;

use serde_json::Value;

use crate::env::ConfigError;
use crate::names::is_dns_label;
use crate::start_request::StartRequest;

const VARIABLE: &str = "WARM_POOLS";
/// More warm pods than this in one pool is a typo, not a plan.
const MAX_SIZE: u64 = 1000;

/// One pool: `size` Ready warm runtimes booted from `request`.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    /// A label value (`openhands.dev/warm-pool`).
    pub name: String,
    pub size: usize,
    /// A `/start` body without `session_id` (its `session_id` is empty).
    pub request: StartRequest,
}

/// Reads `WARM_POOLS`: a JSON list of `{"name", "size", "request"}`. Every problem names the
/// variable, the pool and the field.
pub fn pools_from(text: Option<&str>, default_image: &str) -> Result<Vec<Pool>, ConfigError> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    let error = |message: String| ConfigError::new(VARIABLE, message);
    let Ok(Value::Array(entries)) = serde_json::from_str::<Value>(text) else {
        return Err(error(
            r#"must be a JSON list of {"name": ..., "size": N, "request": {...}}"#.to_string(),
        ));
    };
    let mut pools = Vec::new();
    let mut names = BTreeSet::new();
    for (position, entry) in entries.iter().enumerate() {
        let pool = pool(entry, default_image).map_err(|why| error(format!("pool {}: {why}", position + 1)))?;
        if !names.insert(pool.name.clone()) {
            return Err(error(format!("the name {:?} is used twice", pool.name)));
        }
        pools.push(pool);
    }
    return Ok(pools);

    fn pool(entry: &Value, default_image: &str) -> Result<Pool, String> {
        let Value::Object(fields) = entry else {
            return Err("must be an object".to_string());
        };
        if let Some(unknown) = fields
            .keys()
            .find(|k| !["name", "size", "request"].contains(&k.as_str()))
        {
            return Err(format!("unknown field {unknown:?} (name, size and request are known)"));
        }
        let name = fields["name"]
            .as_str()
            .filter(|n| is_dns_label(n))
            .ok_or("name must be a lowercase DNS label (letters, digits and '-', at most 63 characters)")?;
        let size = fields
            .get("size")
            .and_then(Value::as_u64)
            .filter(|size| (1..=MAX_SIZE).contains(size))
            .ok_or_else(|| format!("{name}: size must be an integer from 1 to {MAX_SIZE}"))?;
        let mut request = match fields.get("request") {
            Some(Value::Object(request)) => request.clone(),
            None => serde_json::Map::new(),
            Some(_) => return Err(format!("{name}: request must be a /start body (an object)")),
        };
        if request.contains_key("session_id") {
            return Err(format!("{name}: request must not name a session_id"));
        }
        // Validated as `/start` would, with a session id that any request may carry.
        request.insert("session_id".to_string(), Value::from("pool"));
        let mut request = StartRequest::from_json(&Value::Object(request), default_image)
            .map_err(|why| format!("{name}: request: {why}"))?;
        request.session_id.clear();
        Ok(Pool {
            name: name.to_string(),
            size: size as usize,
            request,
        })
    }
}
