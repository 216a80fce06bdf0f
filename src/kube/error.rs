//! What can go wrong with a call to the API server, read from its `Status` answer, and which
//! failures are worth trying again, how soon.

use std::fmt;
use std::time::Duration;

use serde_json::Value;

/// What went wrong with a call, with the API server's own message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeError {
    BadRequest(String),
    Unauthorized(String),
    Forbidden(String),
    NotFound(String),
    AlreadyExists(String),
    /// A write lost a race on `resourceVersion`.
    Conflict(String),
    /// A `resourceVersion` or `continue` token the server no longer has (410).
    Expired(String),
    Invalid(String),
    TooManyRequests {
        message: String,
        retry_after: Option<Duration>,
    },
    /// 5xx: the server failed or timed out; the call may or may not have taken effect.
    Server {
        code: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// Any other status code.
    Unexpected {
        code: u16,
        message: String,
    },
    /// The connection failed or broke (refused, reset, TLS refused).
    Transport(String),
    Timeout(String),
    /// A success answer whose body is not the JSON it should be.
    InvalidResponse(String),
}

impl KubeError {
    /// Builds the error for a non-2xx answer, from its `Status` body where there is one (429
    /// throttling and unknown paths answer in plain text).
    pub(crate) fn from_response(code: u16, retry_after_header: Option<Duration>, body: &[u8]) -> KubeError {
        let status: Option<Value> = serde_json::from_slice(body).ok();
        let field = |name: &str| status.as_ref().and_then(|s| s.get(name));
        let message = match field("message").and_then(Value::as_str) {
            Some(message) => message.to_string(),
            None => {
                let text = String::from_utf8_lossy(body).trim().to_string();
                if text.is_empty() { format!("HTTP {code}") } else { text }
            }
        };
        let retry_after = retry_after_header.or_else(|| {
            field("details")
                .and_then(|details| details.get("retryAfterSeconds"))
                .and_then(Value::as_u64)
                .map(Duration::from_secs)
        });
        let reason = field("reason").and_then(Value::as_str);
        match code {
            400 => KubeError::BadRequest(message),
            401 => KubeError::Unauthorized(message),
            403 => KubeError::Forbidden(message),
            404 => KubeError::NotFound(message),
            409 if reason == Some("AlreadyExists") => KubeError::AlreadyExists(message),
            409 => KubeError::Conflict(message),
            410 => KubeError::Expired(message),
            422 => KubeError::Invalid(message),
            429 => KubeError::TooManyRequests { message, retry_after },
            500..=599 => KubeError::Server {
                code,
                message,
                retry_after,
            },
            _ => KubeError::Unexpected { code, message },
        }
    }

    pub(super) fn from_transport(error: ureq::Error) -> KubeError {
        match error {
            ureq::Error::Timeout(which) => {
                KubeError::Timeout(format!("the API server did not answer in time ({which})"))
            }
            other => KubeError::Transport(other.to_string()),
        }
    }

    /// The API server's message (or the transport's).
    pub fn message(&self) -> &str {
        match self {
            KubeError::BadRequest(m)
            | KubeError::Unauthorized(m)
            | KubeError::Forbidden(m)
            | KubeError::NotFound(m)
            | KubeError::AlreadyExists(m)
            | KubeError::Conflict(m)
            | KubeError::Expired(m)
            | KubeError::Invalid(m)
            | KubeError::Transport(m)
            | KubeError::Timeout(m)
            | KubeError::InvalidResponse(m) => m,
            KubeError::TooManyRequests { message, .. }
            | KubeError::Server { message, .. }
            | KubeError::Unexpected { message, .. } => message,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            KubeError::TooManyRequests { retry_after, .. } | KubeError::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether the same call may succeed if simply tried again.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            KubeError::TooManyRequests { .. }
                | KubeError::Server { .. }
                | KubeError::Transport(_)
                | KubeError::Timeout(_)
        )
    }
}

impl fmt::Display for KubeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            KubeError::BadRequest(_) => "bad request",
            KubeError::Unauthorized(_) => "unauthorized",
            KubeError::Forbidden(_) => "forbidden",
            KubeError::NotFound(_) => "not found",
            KubeError::AlreadyExists(_) => "already exists",
            KubeError::Conflict(_) => "conflict",
            KubeError::Expired(_) => "expired",
            KubeError::Invalid(_) => "invalid",
            KubeError::TooManyRequests { .. } => "too many requests",
            KubeError::Server { .. } => "server error",
            KubeError::Unexpected { .. } => "unexpected answer",
            KubeError::Transport(_) => "connection failed",
            KubeError::Timeout(_) => "timeout",
            KubeError::InvalidResponse(_) => "invalid response",
        };
        write!(f, "Kubernetes API {what}: {}", self.message())
    }
}

impl std::error::Error for KubeError {}

/// How throttling (429), server errors (5xx) and broken connections are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// A longer `Retry-After` is not waited for: the error goes back to the caller, whose own
    /// client would give up first.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            first_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// How long to wait before retry number `retry` (0-based) after `error`, or `None` when the
    /// error is final.
    pub(super) fn delay(&self, error: &KubeError, retry: u32) -> Option<Duration> {
        if !error.is_transient() || retry + 1 >= self.max_attempts {
            return None;
        }
        match error.retry_after() {
            Some(wait) if wait > self.max_retry_after => None,
            Some(wait) => Some(wait),
            None => Some(
                self.first_backoff
                    .saturating_mul(1 << retry.min(16))
                    .min(self.max_backoff),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_come_from_status_bodies_and_plain_text() {
        let status = br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \"a\" already exists","reason":"AlreadyExists","details":{"name":"a","kind":"pods"},"code":409}"#;
        assert_eq!(
            KubeError::from_response(409, None, status),
            KubeError::AlreadyExists("pods \"a\" already exists".into())
        );
        let throttled = KubeError::from_response(
            429,
            Some(Duration::from_secs(3)),
            b"Too many requests, please try again later.\n",
        );
        assert_eq!(
            throttled,
            KubeError::TooManyRequests {
                message: "Too many requests, please try again later.".into(),
                retry_after: Some(Duration::from_secs(3))
            }
        );
        let server_timeout = br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"The create operation against pods could not be completed at this time, please try again.","reason":"ServerTimeout","details":{"name":"create","kind":"pods","retryAfterSeconds":2},"code":500}"#;
        assert_eq!(
            KubeError::from_response(500, None, server_timeout).retry_after(),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            KubeError::from_response(502, None, b""),
            KubeError::Server {
                code: 502,
                message: "HTTP 502".into(),
                retry_after: None
            }
        );
    }

    #[test]
    fn any_error_body_gives_an_error_not_a_panic() {
        for body in [
            &b"\xff\xfe not utf-8"[..],
            b"[1,2]",
            b"null",
            b"{\"message\": 7}",
            b"{\"details\": []}",
            b"",
        ] {
            for code in [400, 401, 404, 409, 410, 418, 422, 429, 500, 599] {
                let error = KubeError::from_response(code, None, body);
                assert!(!error.message().is_empty(), "{code} {body:?}");
            }
        }
    }

    #[test]
    fn retry_delays_grow_honour_retry_after_and_stop() {
        let policy = RetryPolicy::default();
        let server = KubeError::Server {
            code: 503,
            message: String::new(),
            retry_after: None,
        };
        assert_eq!(policy.delay(&server, 0), Some(Duration::from_millis(200)));
        assert_eq!(policy.delay(&server, 1), Some(Duration::from_millis(400)));
        assert_eq!(policy.delay(&server, 3), None, "four attempts in all");
        let throttled = |secs| KubeError::TooManyRequests {
            message: String::new(),
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(policy.delay(&throttled(1), 0), Some(Duration::from_secs(1)));
        assert_eq!(
            policy.delay(&throttled(60), 0),
            None,
            "too long a wait goes back to the caller"
        );
        assert_eq!(policy.delay(&KubeError::NotFound(String::new()), 0), None);
    }
}
