//! What the service's two HTTP clients (the Kubernetes API, image registries) share: TLS on
//! rustls with ring, trusting exactly the certificates given, the agent's configuration, and
//! query strings.

use std::sync::Arc;

use ureq::config::ConfigBuilder;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, TlsProvider};
use ureq::typestate::AgentScope;

/// Each connection's read and write buffer. ureq's default, 128 KiB each, is sized for bulk
/// transfers; ours carry JSON objects of a few KiB, read through the buffer in pieces. Every open
/// connection (the two watches, the idle pool) keeps both buffers zeroed and resident: at the
/// default they were 0.8 MiB of the idle service's 5 MiB. A response's header must fit in the
/// read buffer; the API server's and registries' headers are a few hundred bytes to 2 KiB.
const CONNECTION_BUFFER_BYTES: usize = 16 * 1024;

/// An agent configuration both clients start from: an HTTP error status is an answer for the
/// caller to read, not an error, and connections keep small buffers.
pub fn agent_config() -> ConfigBuilder<AgentScope> {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .input_buffer_size(CONNECTION_BUFFER_BYTES)
        .output_buffer_size(CONNECTION_BUFFER_BYTES)
}

/// The certificates of a PEM document; keys and anything unreadable are skipped.
pub fn certificates_in(pem: &[u8]) -> Vec<Certificate<'static>> {
    ureq::tls::parse_pem(pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(certificate)) => Some(certificate),
            _ => None,
        })
        .collect()
}

/// A TLS configuration that trusts `certificates` and nothing else.
pub fn tls_trusting(certificates: Vec<Certificate<'static>>) -> TlsConfig {
    TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(RootCerts::Specific(Arc::new(certificates)))
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .build()
}

/// `key=value&...`, the values percent-encoded.
pub fn query_string(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(key, value)| format!("{key}={}", percent_encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            query_string(&[("labelSelector", "app in (a,b),!gone".into())]),
            "labelSelector=app%20in%20%28a%2Cb%29%2C%21gone"
        );
    }
}
