//! Everything that can go wrong with a request, mapped to an HTTP answer in one place.
//!
//! Every error answers `{"detail": <sentence>, "error": <code>}` (API.md §3): `detail` is what
//! the OpenHands clients read, `error` a stable code for machines.

use std::fmt;

use crate::kube::KubeError;
use crate::random::NoRandomness;
use crate::start_request::InvalidField;

#[derive(Debug)]
pub enum Error {
    /// A field of the request is missing or wrong.
    InvalidRequest(InvalidField),
    Unauthorized,
    RuntimeNotFound(String),
    SessionNotFound(String),
    /// No such path.
    NotFound,
    /// A known path with a method it does not serve.
    MethodNotAllowed {
        allow: &'static str,
    },
    /// Another session holds the same name up to case.
    SessionConflict {
        requested: String,
        existing: String,
    },
    PayloadTooLarge {
        limit: usize,
    },
    /// As many runtimes are not paused as `MAX_RUNNING_RUNTIMES` allows.
    AtCapacity {
        cap: usize,
    },
    /// The store has not been rebuilt from the cluster yet.
    NotReady,
    /// As many connections are open as `HTTP_MAX_CONNECTIONS` allows.
    Overloaded,
    /// SIGTERM arrived: the service finishes what it has and takes nothing new.
    ShuttingDown,
    /// The connection layer refused a request head before it reached the API.
    HeadRefused(HeadRefusal),
    /// An image's registry could not be asked.
    Registry(String),
    /// The API server refused or failed the call.
    Kubernetes(KubeError),
    Internal(String),
}

/// Why a request head was refused, each with its own status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadRefusal {
    Malformed,
    TimedOut,
    UriTooLong,
    ExpectationFailed,
    HeadersTooLarge,
    VersionNotSupported,
}

impl HeadRefusal {
    /// The refusal tiny_http answers with `code`.
    pub fn of_code(code: u16) -> HeadRefusal {
        match code {
            408 => HeadRefusal::TimedOut,
            414 => HeadRefusal::UriTooLong,
            417 => HeadRefusal::ExpectationFailed,
            431 => HeadRefusal::HeadersTooLarge,
            505 => HeadRefusal::VersionNotSupported,
            _ => HeadRefusal::Malformed,
        }
    }
}

impl Error {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Error {
        Error::InvalidRequest(InvalidField::new(field, message))
    }

    pub fn status_code(&self) -> u16 {
        match self {
            Error::InvalidRequest(_) => 400,
            Error::Unauthorized => 401,
            Error::RuntimeNotFound(_) | Error::SessionNotFound(_) | Error::NotFound => 404,
            Error::MethodNotAllowed { .. } => 405,
            Error::SessionConflict { .. } => 409,
            Error::PayloadTooLarge { .. } => 413,
            Error::AtCapacity { .. } => 429,
            Error::NotReady | Error::Overloaded | Error::ShuttingDown => 503,
            Error::HeadRefused(HeadRefusal::Malformed) => 400,
            Error::HeadRefused(HeadRefusal::TimedOut) => 408,
            Error::HeadRefused(HeadRefusal::UriTooLong) => 414,
            Error::HeadRefused(HeadRefusal::ExpectationFailed) => 417,
            Error::HeadRefused(HeadRefusal::HeadersTooLarge) => 431,
            Error::HeadRefused(HeadRefusal::VersionNotSupported) => 505,
            Error::Registry(_) => 502,
            Error::Kubernetes(error) if is_unavailable(error) => 503,
            // The API server judged an object built from the request invalid.
            Error::Kubernetes(KubeError::Invalid(_)) => 400,
            Error::Kubernetes(_) => 502,
            Error::Internal(_) => 500,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidRequest(_) => "invalid_request",
            Error::Unauthorized => "unauthorized",
            Error::RuntimeNotFound(_) => "runtime_not_found",
            Error::SessionNotFound(_) => "session_not_found",
            Error::NotFound => "not_found",
            Error::MethodNotAllowed { .. } => "method_not_allowed",
            Error::SessionConflict { .. } => "conflict",
            Error::PayloadTooLarge { .. } => "payload_too_large",
            Error::AtCapacity { .. } => "at_capacity",
            Error::NotReady => "not_ready",
            Error::Overloaded => "overloaded",
            Error::ShuttingDown => "shutting_down",
            Error::HeadRefused(HeadRefusal::Malformed) => "bad_request",
            Error::HeadRefused(HeadRefusal::TimedOut) => "request_timeout",
            Error::HeadRefused(HeadRefusal::UriTooLong) => "uri_too_long",
            Error::HeadRefused(HeadRefusal::ExpectationFailed) => "expectation_failed",
            Error::HeadRefused(HeadRefusal::HeadersTooLarge) => "headers_too_large",
            Error::HeadRefused(HeadRefusal::VersionNotSupported) => "http_version_not_supported",
            Error::Registry(_) => "registry_unavailable",
            Error::Kubernetes(error) if is_unavailable(error) => "kubernetes_unavailable",
            Error::Kubernetes(KubeError::Invalid(_)) => "invalid_request",
            Error::Kubernetes(_) => "kubernetes_error",
            Error::Internal(_) => "internal_error",
        }
    }

    /// The `Retry-After` to send, where waiting is the remedy.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Error::NotReady | Error::Overloaded | Error::ShuttingDown => Some(1),
            Error::Kubernetes(error) if is_unavailable(error) => {
                Some(error.retry_after().map_or(1, |d| d.as_secs().max(1)))
            }
            _ => None,
        }
    }
}

/// Failures that waiting may cure: the API server could not be reached, throttled us, or
/// failed for a moment.
fn is_unavailable(error: &KubeError) -> bool {
    error.is_transient()
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidRequest(invalid) => write!(f, "{invalid}"),
            Error::Unauthorized => write!(f, "missing or wrong X-API-Key header"),
            Error::RuntimeNotFound(id) => write!(f, "runtime {id} not found"),
            Error::SessionNotFound(id) => write!(f, "session {id} not found"),
            Error::NotFound => write!(f, "no such endpoint"),
            Error::MethodNotAllowed { allow } => write!(f, "method not allowed; use {allow}"),
            Error::SessionConflict { requested, existing } => write!(
                f,
                "session {requested} conflicts with session {existing}: session ids that differ only in case share one sandbox address"
            ),
            Error::PayloadTooLarge { limit } => write!(f, "the request body is larger than {limit} bytes"),
            Error::AtCapacity { cap } => write!(
                f,
                "{cap} runtimes are running, as many as MAX_RUNNING_RUNTIMES allows; pause or stop one first"
            ),
            Error::NotReady => write!(f, "the service is still loading its runtimes from the cluster"),
            Error::Overloaded => write!(f, "too many open connections; try again"),
            Error::ShuttingDown => write!(f, "the service is shutting down; try again"),
            Error::HeadRefused(HeadRefusal::Malformed) => write!(f, "the request line or a header is malformed"),
            Error::HeadRefused(HeadRefusal::TimedOut) => write!(f, "the request head did not arrive in time"),
            Error::HeadRefused(HeadRefusal::UriTooLong) => write!(f, "the request line is longer than 8 KiB"),
            Error::HeadRefused(HeadRefusal::ExpectationFailed) => write!(f, "the Expect header is not supported"),
            Error::HeadRefused(HeadRefusal::HeadersTooLarge) => {
                write!(f, "the headers are more than 100, or longer than 64 KiB in all")
            }
            Error::HeadRefused(HeadRefusal::VersionNotSupported) => write!(f, "only HTTP/1.0 and 1.1 are served"),
            Error::Registry(message) => write!(f, "cannot check the image: {message}"),
            Error::Kubernetes(error) => write!(f, "{error}"),
            Error::Internal(message) => write!(f, "{message}"),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    /// The JSON body every error answers with.
    pub fn body(&self) -> Vec<u8> {
        serde_json::json!({"detail": self.to_string(), "error": self.code()})
            .to_string()
            .into_bytes()
    }
}

impl From<KubeError> for Error {
    fn from(error: KubeError) -> Error {
        Error::Kubernetes(error)
    }
}

impl From<InvalidField> for Error {
    fn from(invalid: InvalidField) -> Error {
        Error::InvalidRequest(invalid)
    }
}

impl From<NoRandomness> for Error {
    fn from(error: NoRandomness) -> Error {
        Error::Internal(error.to_string())
    }
}
