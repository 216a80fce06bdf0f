//! Where the API server is and how to reach it: in a cluster, the service account's token, CA and
//! namespace, as client-go's `InClusterConfig` finds them; elsewhere, `KUBE_*` variables.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use ureq::tls::TlsConfig;

use super::error::RetryPolicy;
use crate::env::{ConfigError, Env};
use crate::http_client::{certificates_in, tls_trusting};
use crate::names::is_dns_label;

const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const DEFAULT_NAMESPACE: &str = "openhands";
/// Projected service-account tokens rotate hourly; client-go re-reads them every minute.
const TOKEN_REFRESH: Duration = Duration::from_secs(60);

/// Where the API server is and how to talk to it.
#[derive(Debug, Clone)]
pub struct Config {
    /// Base URL without a trailing slash, `https://host:port` or `http://` behind `kubectl proxy`.
    pub api_url: String,
    /// Bearer token file; re-read every `token_refresh`. A missing file sends no token.
    pub token_file: PathBuf,
    /// PEM bundle of the only CAs trusted for the API server (used with `https://`).
    pub ca_file: PathBuf,
    /// The one namespace every call goes to.
    pub namespace: String,
    pub token_refresh: Duration,
    pub timeouts: Timeouts,
    pub retry: RetryPolicy,
}

impl Config {
    /// Reads `KUBE_API_URL`, `KUBE_TOKEN_FILE`, `KUBE_CA_FILE` and `NAMESPACE`, falling back to
    /// the in-cluster service account the way client-go's `InClusterConfig` does.
    ///
    pub fn from_env(env: &Env) -> Result<Config, ConfigError> {
        let set = |name: &str| env.get(name);
        let api_url = match set("KUBE_API_URL") {
            Some(url) => parse_api_url(&url)?,
            None => in_cluster_api_url(set("KUBERNETES_SERVICE_HOST"), set("KUBERNETES_SERVICE_PORT"))?,
        };
        let service_account_file = |name: &str| PathBuf::from(format!("{SERVICE_ACCOUNT_DIR}/{name}"));
        let namespace = match set("NAMESPACE") {
            Some(namespace) => namespace,
            None => fs::read_to_string(service_account_file("namespace"))
                .map(|text| text.trim().to_string())
                .ok()
                .filter(|namespace| !namespace.is_empty())
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
        };
        if !is_dns_label(&namespace) {
            return Err(ConfigError::new(
                "NAMESPACE",
                format!("{namespace:?} is not a valid namespace name (a lowercase RFC 1123 label)"),
            ));
        }
        Ok(Config {
            api_url,
            token_file: set("KUBE_TOKEN_FILE").map_or_else(|| service_account_file("token"), PathBuf::from),
            ca_file: set("KUBE_CA_FILE").map_or_else(|| service_account_file("ca.crt"), PathBuf::from),
            namespace,
            token_refresh: TOKEN_REFRESH,
            timeouts: Timeouts::default(),
            retry: RetryPolicy::default(),
        })
    }
}

fn parse_api_url(url: &str) -> Result<String, ConfigError> {
    let url = url.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| ConfigError::new("KUBE_API_URL", format!("{url:?} must start with https:// or http://")))?;
    if rest.is_empty() || rest.contains(['?', '#', ' ']) {
        return Err(ConfigError::new("KUBE_API_URL", format!("{url:?} is not a base URL")));
    }
    Ok(url.to_string())
}

fn in_cluster_api_url(host: Option<String>, port: Option<String>) -> Result<String, ConfigError> {
    let (Some(host), Some(port)) = (host, port) else {
        return Err(ConfigError::new(
            "KUBE_API_URL",
            "not set, and not running in a cluster (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are unset)",
        ));
    };
    if port.parse::<u16>().is_err() {
        return Err(ConfigError::new(
            "KUBERNETES_SERVICE_PORT",
            format!("{port:?} is not a port number"),
        ));
    }
    // Like Go's net.JoinHostPort: an IPv6 address needs brackets in a URL.
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    Ok(format!("https://{host}:{port}"))
}

/// Every call is bounded: a hung API server must not hang a client of ours.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    /// The whole call, from connecting to the last byte of the response.
    pub call: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(5),
            call: Duration::from_secs(20),
        }
    }
}

/// A TLS configuration that trusts the CAs in `config.ca_file` and nothing else: the API
/// server's certificate is issued by the cluster's own CA, never by a public one.
pub(super) fn tls_trusting_only(config: &Config) -> Result<TlsConfig, ConfigError> {
    let path = config.ca_file.display();
    let pem =
        fs::read(&config.ca_file).map_err(|e| ConfigError::new("KUBE_CA_FILE", format!("cannot read {path}: {e}")))?;
    let certificates = certificates_in(&pem);
    if certificates.is_empty() {
        return Err(ConfigError::new(
            "KUBE_CA_FILE",
            format!("{path} holds no PEM certificate"),
        ));
    }
    Ok(tls_trusting(certificates))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_env(&Env::new(&|name| vars.get(name).cloned()))
    }

    #[test]
    fn in_cluster_url_comes_from_the_service_env() {
        let c = config(&[
            ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
        ])
        .unwrap();
        assert_eq!(c.api_url, "https://10.0.0.1:443");
        let c = config(&[
            ("KUBERNETES_SERVICE_HOST", "fd00::1"),
            ("KUBERNETES_SERVICE_PORT", "6443"),
        ])
        .unwrap();
        assert_eq!(c.api_url, "https://[fd00::1]:6443");
        assert_eq!(
            c.token_file,
            PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount/token")
        );
        assert_eq!(
            c.ca_file,
            PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
        );
    }

    #[test]
    fn overrides_win_and_bad_values_name_their_variable() {
        let c = config(&[
            ("KUBE_API_URL", "http://127.0.0.1:8001/"),
            ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
            ("KUBE_TOKEN_FILE", "/tmp/t"),
            ("NAMESPACE", "sandboxes"),
        ])
        .unwrap();
        assert_eq!(c.api_url, "http://127.0.0.1:8001");
        assert_eq!(c.token_file, PathBuf::from("/tmp/t"));
        assert_eq!(c.namespace, "sandboxes");

        assert_eq!(config(&[]).unwrap_err().variable, "KUBE_API_URL");
        assert_eq!(
            config(&[("KUBE_API_URL", "127.0.0.1:8001")]).unwrap_err().variable,
            "KUBE_API_URL"
        );
        let bad_port = config(&[("KUBERNETES_SERVICE_HOST", "h"), ("KUBERNETES_SERVICE_PORT", "https")]);
        assert_eq!(bad_port.unwrap_err().variable, "KUBERNETES_SERVICE_PORT");
        let bad_namespace = config(&[("KUBE_API_URL", "http://h"), ("NAMESPACE", "Open_Hands")]);
        assert_eq!(bad_namespace.unwrap_err().variable, "NAMESPACE");
    }
}
