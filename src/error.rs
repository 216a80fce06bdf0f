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
    /// The store has not been rebuilt from the cluster yet.
    NotReady,
    /// An image's registry could not be asked.
    Registry(String),
    /// The API server refused or failed the call.
    Kubernetes(KubeError),
    Internal(String),
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
            Error::NotReady => 503,
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
            Error::NotReady => "not_ready",
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
            Error::NotReady => Some(1),
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
            Error::NotReady => write!(f, "the service is still loading its runtimes from the cluster"),
            Error::Registry(message) => write!(f, "cannot check the image: {message}"),
            Error::Kubernetes(error) => write!(f, "{error}"),
            Error::Internal(message) => write!(f, "{message}"),
        }
    }
}

impl std::error::Error for Error {}

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
