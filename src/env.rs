//! Reading settings from environment variables: the lookup, the error that names a variable, and
//! the forms of value that settings share (ports, durations, lists, JSON objects, URLs, names).
//!
//! A value that cannot be used is an error naming its variable, never a silent default: a
//! default would create sandboxes the operator did not ask for.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde_json::Value;

use crate::names::{is_dns_label, is_dns_subdomain};

/// A setting that cannot be used, named by its environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

impl ConfigError {
    pub fn new(variable: &'static str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            variable,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.variable, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The environment as settings read it: a variable that is unset, empty or blank is absent, and
/// values are trimmed. The binary looks variables up with `std::env::var`, tests in a map.
#[derive(Clone, Copy)]
pub struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Env<'a> {
    pub fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Env<'a> {
        Env { lookup }
    }

    /// The trimmed value, `None` when unset or blank.
    pub fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|value| value.trim().to_string())
            .filter(|value| !value.is_empty())
    }

    pub fn text(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or_else(|| default.to_string())
    }

    pub fn port(&self, name: &'static str, default: u16) -> Result<u16, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(text) => text
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| ConfigError::new(name, format!("{text:?} is not a port number (1-65535)"))),
        }
    }

    /// A whole number from 1 to `max`.
    pub fn count(&self, name: &'static str, default: usize, max: usize) -> Result<usize, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| ConfigError::new(name, format!("{text:?} must be a number from 1 to {max}"))),
        }
    }

    /// A duration in the forms of `parse_duration`; zero only where `zero_allowed`.
    pub fn duration(&self, name: &'static str, default: Duration, zero_allowed: bool) -> Result<Duration, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(text) => parse_duration(&text)
                .filter(|d| zero_allowed || !d.is_zero())
                .ok_or_else(|| ConfigError::new(name, format!("{text:?} is not a duration such as 90s, 2m or 1h"))),
        }
    }

    /// A duration that `0` turns off (`None`).
    pub fn optional_duration(&self, name: &'static str, default: Duration) -> Result<Option<Duration>, ConfigError> {
        Ok(Some(self.duration(name, default, true)?).filter(|d| !d.is_zero()))
    }

    /// A limit that `0` (the default) turns off (`None`).
    pub fn optional_limit(&self, name: &'static str, max: usize) -> Result<Option<usize>, ConfigError> {
        match self.get(name).as_deref().map(str::trim) {
            None | Some("0") => Ok(None),
            Some(_) => self.count(name, 0, max).map(Some),
        }
    }

    /// A Kubernetes object name (an RFC 1123 subdomain).
    pub fn object_name(&self, name: &'static str) -> Result<Option<String>, ConfigError> {
        match self.get(name) {
            None => Ok(None),
            Some(value) if is_dns_subdomain(&value) => Ok(Some(value)),
            Some(value) => Err(ConfigError::new(
                name,
                format!("{value:?} is not a valid Kubernetes name"),
            )),
        }
    }

    /// A namespace name (an RFC 1123 label).
    pub fn namespace(&self, name: &'static str) -> Result<Option<String>, ConfigError> {
        match self.get(name) {
            None => Ok(None),
            Some(value) if is_dns_label(&value) => Ok(Some(value)),
            Some(value) => Err(ConfigError::new(name, format!("{value:?} is not a namespace name"))),
        }
    }

    /// An `http://` or `https://` URL, without a trailing slash.
    pub fn url(&self, name: &'static str) -> Result<Option<String>, ConfigError> {
        match self.get(name) {
            None => Ok(None),
            Some(value) if value.starts_with("http://") || value.starts_with("https://") => {
                Ok(Some(value.trim_end_matches('/').to_string()))
            }
            Some(value) => Err(ConfigError::new(
                name,
                format!("{value:?} must start with http:// or https://"),
            )),
        }
    }

    /// A comma-separated list, each item checked by `valid` (`what` names an item in the error).
    pub fn list(&self, name: &'static str, valid: fn(&str) -> bool, what: &str) -> Result<Vec<String>, ConfigError> {
        let Some(text) = self.get(name) else {
            return Ok(Vec::new());
        };
        text.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                if valid(item) {
                    Ok(item.to_string())
                } else {
                    Err(ConfigError::new(name, format!("{item:?} is not {what}")))
                }
            })
            .collect()
    }

    /// A JSON object of strings, e.g. `{"a.b/c": "x, y"}` (values may hold commas).
    pub fn string_map(&self, name: &'static str) -> Result<BTreeMap<String, String>, ConfigError> {
        let Some(text) = self.get(name) else {
            return Ok(BTreeMap::new());
        };
        let invalid = || ConfigError::new(name, "must be a JSON object whose values are strings");
        let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&text) else {
            return Err(invalid());
        };
        map.into_iter()
            .map(|(key, value)| match value {
                Value::String(value) => Ok((key, value)),
                _ => Err(invalid()),
            })
            .collect()
    }
}

/// `120`, `120s`, `2m`, `1h`, `500ms`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    match unit {
        "" | "s" => Some(Duration::from_secs(number)),
        "ms" => Some(Duration::from_millis(number)),
        "m" => Some(Duration::from_secs(number.checked_mul(60)?)),
        "h" => Some(Duration::from_secs(number.checked_mul(3600)?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_the_documented_forms() {
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        for bad in ["", "soon", "2 m", "-1s", "1.5s", "99999999999999999999h"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn blank_is_unset() {
        let lookup = |name: &str| (name == "BLANK").then(|| "  ".to_string());
        let env = Env::new(&lookup);
        assert_eq!(env.get("BLANK"), None);
        assert_eq!(env.text("BLANK", "default"), "default");
        assert_eq!(env.port("BLANK", 8080), Ok(8080));
    }
}
