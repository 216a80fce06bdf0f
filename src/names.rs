//! The rules names must follow: Kubernetes object names, environment variable names, session ids,
//! and how a session id appears in host names.

/// Environment variables the service sets in every sandbox and never lets a request override.
pub const RESERVED_ENV: [&str; 3] = ["OH_SESSION_API_KEYS_0", "SESSION_API_KEY", "OH_RUNTIME_ID"];

/// The longest session id: `work-1-{session}` must fit a 63-character DNS label.
pub const MAX_SESSION_ID: usize = 56;

/// A lowercase RFC 1123 subdomain, as Kubernetes names most objects.
pub fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}

/// A lowercase RFC 1123 label, as Kubernetes names namespaces.
pub fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    let alphanumeric = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    (1..=63).contains(&bytes.len())
        && bytes.iter().all(|b| alphanumeric(b) || *b == b'-')
        && bytes.first().is_some_and(alphanumeric)
        && bytes.last().is_some_and(alphanumeric)
}

/// A name every Kubernetes version accepts for a container's environment variable.
pub fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b'-' || b == b'.')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// API.md §3: 1-56 letters, digits or `-`, not starting or ending with `-`.
pub fn is_session_id(session_id: &str) -> bool {
    (1..=MAX_SESSION_ID).contains(&session_id.len())
        && session_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !session_id.starts_with('-')
        && !session_id.ends_with('-')
}

/// The session id as host names carry it: DNS is case-insensitive, so session ids equal up to
/// case share one sandbox address, and the service tells sessions apart by this form too.
pub fn session_host(session_id: &str) -> String {
    session_id.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_names() {
        assert!(is_dns_label("openhands") && is_dns_label("a-1"));
        assert!(!is_dns_label("Open") && !is_dns_label("-a") && !is_dns_label("a_b") && !is_dns_label(""));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert!(is_dns_subdomain("sandbox.example.com") && !is_dns_subdomain("a..b"));
    }

    #[test]
    fn session_ids_fit_every_host_of_the_sandbox() {
        assert!(is_session_id("agent-server-0f8fad5b-d9cb-469f-a165-70867728950e"));
        assert!(is_session_id(&"x".repeat(MAX_SESSION_ID)));
        for bad in ["", "-x", "x-", "a_b", "a.b", &"x".repeat(MAX_SESSION_ID + 1)] {
            assert!(!is_session_id(bad), "{bad}");
        }
        assert!(is_dns_label(&format!(
            "work-1-{}",
            session_host(&"X".repeat(MAX_SESSION_ID))
        )));
    }

    #[test]
    fn environment_names() {
        assert!(is_env_name("OH_SESSION_API_KEYS_0") && is_env_name("a.b-c"));
        assert!(!is_env_name("A=B") && !is_env_name("1A") && !is_env_name(""));
    }
}
