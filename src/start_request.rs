//! A `/start` request (API.md §3), validated field by field. It is kept on the anchor so that
//! `/resume` and a restarted service recreate the pod exactly as first asked.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::names::{is_dns_subdomain, is_env_name, is_session_id};

const MAX_RESOURCE_FACTOR: f64 = 16.0;
/// Image references are short; anything this long is not one.
const MAX_IMAGE_LENGTH: usize = 1024;

/// A field of a request that is missing or wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidField {
    pub field: &'static str,
    pub message: String,
}

impl InvalidField {
    pub fn new(field: &'static str, message: impl Into<String>) -> InvalidField {
        InvalidField {
            field,
            message: message.into(),
        }
    }
}

impl fmt::Display for InvalidField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for InvalidField {}

/// How the container is started (API.md §5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Runs under `/bin/bash -c`.
    Shell(String),
    /// The container's `command`, as given (exec form).
    Exec(Vec<String>),
    /// The image's entrypoint, told which port to serve.
    ImageEntrypoint,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// A `/start` request, validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartRequest {
    pub session_id: String,
    pub image: String,
    pub command: Command,
    pub working_dir: Option<String>,
    /// Sorted by name, which is also the order in the pod.
    pub environment: BTreeMap<String, String>,
    pub resource_factor: f64,
    pub runtime_class: Option<String>,
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub fs_group: Option<i64>,
    pub image_pull_policy: Option<PullPolicy>,
}

impl StartRequest {
    /// Validates a `/start` body; unknown fields are ignored (clients add fields over time).
    pub fn from_json(body: &Value, default_image: &str) -> Result<StartRequest, InvalidField> {
        let Value::Object(fields) = body else {
            return Err(InvalidField::new("body", "must be a JSON object"));
        };
        let fields = Fields(fields);
        Ok(StartRequest {
            session_id: session_id(&fields)?,
            image: image(&fields, default_image)?,
            command: command(&fields)?,
            working_dir: fields.string("working_dir")?.filter(|d| !d.is_empty()),
            environment: environment(&fields)?,
            resource_factor: resource_factor(&fields)?,
            runtime_class: runtime_class(&fields)?,
            run_as_user: fields.id("run_as_user")?,
            run_as_group: fields.id("run_as_group")?,
            fs_group: fields.id("fs_group")?,
            image_pull_policy: image_pull_policy(&fields)?,
        })
    }
}

/// A request's fields; `null` counts as absent, as the clients send it for "not set".
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    fn string(&self, name: &'static str) -> Result<Option<String>, InvalidField> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(InvalidField::new(name, "must be a string")),
        }
    }

    /// A user or group id, as Kubernetes accepts them.
    fn id(&self, name: &'static str) -> Result<Option<i64>, InvalidField> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .filter(|n| (0..=i64::from(i32::MAX)).contains(n))
                .map(Some)
                .ok_or_else(|| InvalidField::new(name, "must be an integer from 0 to 2147483647")),
        }
    }
}

fn session_id(fields: &Fields) -> Result<String, InvalidField> {
    let session_id = fields
        .string("session_id")?
        .ok_or_else(|| InvalidField::new("session_id", "is required"))?;
    if !is_session_id(&session_id) {
        return Err(InvalidField::new(
            "session_id",
            "must be 1 to 56 letters, digits or '-', not starting or ending with '-'",
        ));
    }
    Ok(session_id)
}

fn image(fields: &Fields, default_image: &str) -> Result<String, InvalidField> {
    let image = fields
        .string("image")?
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| default_image.to_string());
    if image.chars().any(char::is_whitespace) || image.len() > MAX_IMAGE_LENGTH {
        return Err(InvalidField::new("image", "must be an image reference without spaces"));
    }
    Ok(image)
}

/// The three forms of API.md §5: a shell line, an exec array, or the image's entrypoint.
fn command(fields: &Fields) -> Result<Command, InvalidField> {
    let invalid = || InvalidField::new("command", "must be a string or an array of strings");
    let parts = match fields.get("command") {
        None => return Ok(Command::ImageEntrypoint),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(invalid)?,
        Some(_) => return Err(invalid()),
    };
    Ok(match parts.as_slice() {
        [] => Command::ImageEntrypoint,
        [only] if only.trim().is_empty() => Command::ImageEntrypoint,
        [only] => Command::Shell(only.clone()),
        _ => Command::Exec(parts),
    })
}

fn environment(fields: &Fields) -> Result<BTreeMap<String, String>, InvalidField> {
    let variables = match fields.get("environment") {
        None => return Ok(BTreeMap::new()),
        Some(Value::Object(variables)) => variables,
        Some(_) => return Err(InvalidField::new("environment", "must be an object of strings")),
    };
    let mut environment = BTreeMap::new();
    for (name, value) in variables {
        if !is_env_name(name) {
            return Err(InvalidField::new(
                "environment",
                format!("{name:?} is not a valid environment variable name"),
            ));
        }
        let Value::String(value) = value else {
            return Err(InvalidField::new(
                "environment",
                format!("the value of {name} must be a string"),
            ));
        };
        environment.insert(name.clone(), value.clone());
    }
    Ok(environment)
}

fn resource_factor(fields: &Fields) -> Result<f64, InvalidField> {
    match fields.get("resource_factor") {
        None => Ok(1.0),
        Some(v) => v
            .as_f64()
            .filter(|f| *f > 0.0 && *f <= MAX_RESOURCE_FACTOR)
            .ok_or_else(|| InvalidField::new("resource_factor", "must be a number above 0 and at most 16")),
    }
}

fn runtime_class(fields: &Fields) -> Result<Option<String>, InvalidField> {
    let runtime_class = fields.string("runtime_class")?.filter(|c| !c.is_empty());
    if runtime_class.as_deref().is_some_and(|c| !is_dns_subdomain(c)) {
        return Err(InvalidField::new("runtime_class", "must be a valid RuntimeClass name"));
    }
    Ok(runtime_class)
}

fn image_pull_policy(fields: &Fields) -> Result<Option<PullPolicy>, InvalidField> {
    match fields.string("image_pull_policy")?.as_deref() {
        None => Ok(None),
        Some("Always") => Ok(Some(PullPolicy::Always)),
        Some("IfNotPresent") => Ok(Some(PullPolicy::IfNotPresent)),
        Some("Never") => Ok(Some(PullPolicy::Never)),
        Some(_) => Err(InvalidField::new(
            "image_pull_policy",
            "must be Always, IfNotPresent or Never",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(body: Value) -> Result<StartRequest, InvalidField> {
        StartRequest::from_json(&body, "default:1")
    }

    fn field_of(result: Result<StartRequest, InvalidField>) -> &'static str {
        match result {
            Err(InvalidField { field, .. }) => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn commands_take_the_three_forms_of_the_spec() {
        let command = |c: Value| parse(json!({"session_id": "s", "command": c})).unwrap().command;
        assert_eq!(
            command(json!("/usr/local/bin/openhands-agent-server --port 60000")),
            Command::Shell("/usr/local/bin/openhands-agent-server --port 60000".into())
        );
        assert_eq!(command(json!(["python -m x"])), Command::Shell("python -m x".into()));
        assert_eq!(
            command(json!(["/usr/local/bin/openhands-agent-server", "--port", "60000"])),
            Command::Exec(vec![
                "/usr/local/bin/openhands-agent-server".into(),
                "--port".into(),
                "60000".into()
            ])
        );
        for empty in [json!(null), json!(""), json!([]), json!([""])] {
            assert_eq!(command(empty), Command::ImageEntrypoint);
        }
        assert_eq!(
            parse(json!({"session_id": "s"})).unwrap().command,
            Command::ImageEntrypoint
        );
    }

    #[test]
    fn bad_fields_are_named() {
        assert_eq!(field_of(parse(json!({}))), "session_id");
        for bad in ["", "-x", "x-", "a_b", "a.b", &"x".repeat(57)] {
            assert_eq!(field_of(parse(json!({"session_id": bad}))), "session_id", "{bad}");
        }
        assert!(parse(json!({"session_id": "x".repeat(56)})).is_ok());
        let with = |k: &str, v: Value| {
            let mut body = json!({"session_id": "s"});
            body[k] = v;
            field_of(parse(body))
        };
        assert_eq!(with("image", json!(5)), "image");
        assert_eq!(with("image", json!("has space")), "image");
        assert_eq!(with("command", json!([1, 2])), "command");
        assert_eq!(with("environment", json!({"A": 1})), "environment");
        assert_eq!(with("environment", json!({"A=B": "x"})), "environment");
        assert_eq!(with("environment", json!(["A"])), "environment");
        assert_eq!(with("resource_factor", json!(0)), "resource_factor");
        assert_eq!(with("resource_factor", json!(17)), "resource_factor");
        assert_eq!(with("resource_factor", json!("2")), "resource_factor");
        assert_eq!(with("runtime_class", json!("Sysbox")), "runtime_class");
        assert_eq!(with("run_as_user", json!(-1)), "run_as_user");
        assert_eq!(with("fs_group", json!(1.5)), "fs_group");
        assert_eq!(with("image_pull_policy", json!("always")), "image_pull_policy");
        assert_eq!(field_of(parse(json!([1]))), "body");
    }

    #[test]
    fn defaults_and_unknown_fields() {
        let request = parse(json!({"session_id": "Abc", "something_new": {"x": 1}, "image": null})).unwrap();
        assert_eq!(request.image, "default:1");
        assert_eq!(request.resource_factor, 1.0);
        assert!(request.environment.is_empty() && request.working_dir.is_none());
    }
}
