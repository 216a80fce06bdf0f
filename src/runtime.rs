//! A runtime: one sandbox of one session, what a client asked for, and how it is doing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{self, Config};
use crate::error::Error;
use crate::pod_status::{PodObservation, PodRecord, PodStatus};

/// The longest session id: `work-1-{session}` must fit a 63-character DNS label.
const MAX_SESSION_ID: usize = 56;
const MAX_RESOURCE_FACTOR: f64 = 16.0;

/// What a runtime is asked to be; recorded on its anchor Secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DesiredState {
    Running,
    Paused,
}

impl DesiredState {
    pub fn as_str(self) -> &'static str {
        match self {
            DesiredState::Running => "running",
            DesiredState::Paused => "paused",
        }
    }
}

/// The `status` clients act on (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Starting,
    Running,
    Paused,
    Error,
    /// Only in the answer to `/stop`.
    Stopped,
}

/// How the container is started (SPEC §5).
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

/// A `/start` request, validated. It is kept on the anchor Secret so that `/resume` and a
/// restarted service can recreate the pod exactly as first asked.
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
    pub fn from_json(body: &Value, default_image: &str) -> Result<StartRequest, Error> {
        let Value::Object(fields) = body else {
            return Err(Error::invalid("body", "must be a JSON object"));
        };
        let field = |name: &str| fields.get(name).filter(|v| !v.is_null());
        let string = |name: &'static str| -> Result<Option<String>, Error> {
            match field(name) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(Error::invalid(name, "must be a string")),
            }
        };
        let id = |name: &'static str| -> Result<Option<i64>, Error> {
            match field(name) {
                None => Ok(None),
                Some(v) => v
                    .as_i64()
                    .filter(|n| (0..=i64::from(i32::MAX)).contains(n))
                    .map(Some)
                    .ok_or_else(|| Error::invalid(name, "must be an integer from 0 to 2147483647")),
            }
        };

        let session_id = string("session_id")?.ok_or_else(|| Error::invalid("session_id", "is required"))?;
        check_session_id(&session_id)?;

        let image = string("image")?
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| default_image.to_string());
        if image.chars().any(char::is_whitespace) || image.len() > 1024 {
            return Err(Error::invalid("image", "must be an image reference without spaces"));
        }

        let command = match field("command") {
            None => Command::ImageEntrypoint,
            Some(Value::String(s)) if s.trim().is_empty() => Command::ImageEntrypoint,
            Some(Value::String(s)) => Command::Shell(s.clone()),
            Some(Value::Array(items)) => {
                let parts = items
                    .iter()
                    .map(|item| item.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| Error::invalid("command", "must be a string or an array of strings"))?;
                match parts.as_slice() {
                    [] => Command::ImageEntrypoint,
                    [only] if only.trim().is_empty() => Command::ImageEntrypoint,
                    [only] => Command::Shell(only.clone()),
                    _ => Command::Exec(parts),
                }
            }
            Some(_) => return Err(Error::invalid("command", "must be a string or an array of strings")),
        };

        let mut environment = BTreeMap::new();
        match field("environment") {
            None => {}
            Some(Value::Object(variables)) => {
                for (name, value) in variables {
                    if !config::is_env_name(name) {
                        return Err(Error::invalid(
                            "environment",
                            format!("{name:?} is not a valid environment variable name"),
                        ));
                    }
                    let Value::String(value) = value else {
                        return Err(Error::invalid(
                            "environment",
                            format!("the value of {name} must be a string"),
                        ));
                    };
                    environment.insert(name.clone(), value.clone());
                }
            }
            Some(_) => return Err(Error::invalid("environment", "must be an object of strings")),
        }

        let resource_factor = match field("resource_factor") {
            None => 1.0,
            Some(v) => v
                .as_f64()
                .filter(|f| *f > 0.0 && *f <= MAX_RESOURCE_FACTOR)
                .ok_or_else(|| Error::invalid("resource_factor", "must be a number above 0 and at most 16"))?,
        };

        let runtime_class = string("runtime_class")?.filter(|c| !c.is_empty());
        if runtime_class.as_deref().is_some_and(|c| !config::is_dns_subdomain(c)) {
            return Err(Error::invalid("runtime_class", "must be a valid RuntimeClass name"));
        }

        let image_pull_policy = match string("image_pull_policy")?.as_deref() {
            None => None,
            Some("Always") => Some(PullPolicy::Always),
            Some("IfNotPresent") => Some(PullPolicy::IfNotPresent),
            Some("Never") => Some(PullPolicy::Never),
            Some(_) => {
                return Err(Error::invalid(
                    "image_pull_policy",
                    "must be Always, IfNotPresent or Never",
                ));
            }
        };

        Ok(StartRequest {
            session_id,
            image,
            command,
            working_dir: string("working_dir")?.filter(|d| !d.is_empty()),
            environment,
            resource_factor,
            runtime_class,
            run_as_user: id("run_as_user")?,
            run_as_group: id("run_as_group")?,
            fs_group: id("fs_group")?,
            image_pull_policy,
        })
    }
}

/// SPEC §6: 1-56 characters of `[A-Za-z0-9-]`, not starting or ending with `-`.
pub fn check_session_id(session_id: &str) -> Result<(), Error> {
    let valid = (1..=MAX_SESSION_ID).contains(&session_id.len())
        && session_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !session_id.starts_with('-')
        && !session_id.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(Error::invalid(
            "session_id",
            "must be 1 to 56 letters, digits or '-', not starting or ending with '-'",
        ))
    }
}

/// One runtime as the service knows it from its anchor.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub id: String,
    pub session_id: String,
    pub session_api_key: String,
    /// The anchor Secret's uid, which every other object names as its owner.
    pub anchor_uid: String,
    pub request: StartRequest,
    pub desired: DesiredState,
    pub created_at: SystemTime,
    /// When the service last wrote this runtime: a list that began earlier cannot know of it.
    pub changed_at: Instant,
}

/// What a runtime without a pod reports.
static NO_POD: PodObservation = PodObservation::new(PodStatus::NotFound);

impl Runtime {
    /// Whether a client (or an operator, on the anchor) asked for the runtime to be paused; it
    /// then reads `paused` whatever its pod still does, and `/list` leaves it out.
    pub fn is_paused(&self) -> bool {
        self.desired == DesiredState::Paused
    }

    /// `status` from the desired state and `pod_status` (SPEC §4).
    pub fn status(&self, pod_status: PodStatus) -> Status {
        match self.desired {
            DesiredState::Paused => Status::Paused,
            DesiredState::Running => match pod_status {
                PodStatus::Ready => Status::Running,
                PodStatus::Failed | PodStatus::CrashLoopBackOff | PodStatus::Unknown => Status::Error,
                PodStatus::Pending | PodStatus::Running | PodStatus::NotFound => Status::Starting,
            },
        }
    }

    /// The runtime object (RR) of SPEC §3, with its pod as known at `now`.
    pub fn view(&self, pod: Option<&PodRecord>, config: &Config, now: SystemTime) -> RuntimeView {
        let observation = pod.map_or(&NO_POD, |p| &p.observation);
        let pod_status = observation.status_at(now, config.image_pull_grace);
        let status = self.status(pod_status);
        let session = self.session_id.to_lowercase();
        // Views are built thousands at a time for `/list`: joining slices costs one allocation
        // and none of the formatting machinery.
        let host = |prefix: &str| [&config.url_scheme, "://", prefix, &session, ".", &config.base_domain].concat();
        RuntimeView {
            runtime_id: self.id.clone(),
            session_id: self.session_id.clone(),
            url: host(""),
            session_api_key: self.session_api_key.clone(),
            status,
            pod_status: if status == Status::Paused {
                PodStatus::NotFound
            } else {
                pod_status
            },
            status_detail: match status {
                Status::Starting | Status::Error => observation.detail.clone(),
                _ => None,
            },
            work_hosts: BTreeMap::from([
                (host("work-1-"), config.ports.worker_1),
                (host("work-2-"), config.ports.worker_2),
            ]),
            restart_count: observation.restart_count,
            restart_reasons: observation.restart_reasons.clone(),
            image: self.request.image.clone(),
            created_at: rfc3339(self.created_at),
        }
    }
}

/// What clients receive for a runtime: every field always present, with its JSON type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuntimeView {
    pub runtime_id: String,
    pub session_id: String,
    pub url: String,
    pub session_api_key: String,
    pub status: Status,
    pub pod_status: PodStatus,
    pub status_detail: Option<String>,
    pub work_hosts: BTreeMap<String, u16>,
    pub restart_count: u32,
    pub restart_reasons: Vec<String>,
    pub image: String,
    pub created_at: String,
}

/// `n` random bytes as lowercase hex (runtime ids: 16, session keys: 32).
pub fn random_hex(bytes: usize) -> Result<String, Error> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).map_err(|e| Error::Internal(format!("no randomness from the OS: {e}")))?;
    Ok(buffer.iter().map(|b| format!("{b:02x}")).collect())
}

/// RFC 3339 in UTC with second precision, as Kubernetes writes timestamps.
pub fn rfc3339(at: SystemTime) -> String {
    let seconds = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Parses the RFC 3339 UTC timestamps Kubernetes writes (`2025-03-04T10:15:03Z`, fractions
/// allowed).
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut date_parts = date.splitn(3, '-').map(str::parse::<i64>);
    let (year, month, day) = (
        date_parts.next()?.ok()?,
        date_parts.next()?.ok()?,
        date_parts.next()?.ok()?,
    );
    let time = time.split('.').next()?;
    let mut time_parts = time.splitn(3, ':').map(str::parse::<u64>);
    let (hour, minute, second) = (
        time_parts.next()?.ok()?,
        time_parts.next()?.ok()?,
        time_parts.next()?.ok()?,
    );
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = u64::try_from(days_from_civil(year, month, day)).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(days * 86_400 + hour * 3600 + minute * 60 + second))
}

// Howard Hinnant's algorithms between days since 1970-01-01 and the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(body: Value) -> Result<StartRequest, Error> {
        StartRequest::from_json(&body, "default:1")
    }

    fn field_of(result: Result<StartRequest, Error>) -> String {
        match result {
            Err(Error::InvalidRequest { field, .. }) => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn timestamps_round_trip() {
        for text in [
            "1970-01-01T00:00:00Z",
            "2000-02-29T12:34:56Z",
            "2026-11-24T23:59:59Z",
            "2100-03-01T00:00:00Z",
        ] {
            assert_eq!(rfc3339(parse_rfc3339(text).unwrap()), text);
        }
        assert_eq!(
            rfc3339(parse_rfc3339("2025-03-04T10:15:03.123456Z").unwrap()),
            "2025-03-04T10:15:03Z"
        );
        assert!(parse_rfc3339("yesterday").is_none());
        assert!(parse_rfc3339("2025-13-01T00:00:00Z").is_none());
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
