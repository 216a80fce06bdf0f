//! Does an image exist? Its registry is asked (API.md §9): a `HEAD` of the manifest over the OCI
//! distribution API, after the registry's own authentication dance. Never guessed.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;
use ureq::http::{self, Method};

use crate::base64;
use crate::env::ConfigError;
use crate::http_client::{agent_config, certificates_in, query_string, tls_trusting};

/// Every manifest type a runtime could pull: OCI and Docker, single-platform and multi-platform.
const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// Where the system's CA bundle usually is (Debian/Alpine, then Fedora/RHEL).
const SYSTEM_CA_BUNDLES: [&str; 2] = ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"];
/// How long an image that was found is taken to still exist: a client asks right before each
/// start, and images are rarely deleted.
const REMEMBER_FOR: Duration = Duration::from_secs(30);
const REMEMBER_LIMIT: usize = 10_000;
const MAX_TOKEN_BYTES: u64 = 1 << 20;

/// An image reference, resolved as Docker resolves it (`ubuntu` is `docker.io/library/ubuntu:latest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference {
    /// `host[:port]`, as in a pull secret.
    pub registry: String,
    pub repository: String,
    /// A tag, or a digest (`sha256:...`).
    pub reference: String,
}

impl ImageReference {
    pub fn parse(image: &str) -> Result<ImageReference, String> {
        let (name, reference) = match image.split_once('@') {
            Some((name, digest)) => (name, digest.to_string()),
            None => {
                let last_slash = image.rfind('/').map_or(0, |i| i + 1);
                match image[last_slash..].split_once(':') {
                    Some((_, tag)) => (&image[..image.len() - tag.len() - 1], tag.to_string()),
                    None => (image, "latest".to_string()),
                }
            }
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        let path_component = |c: &str| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        };
        let valid_reference = !reference.is_empty()
            && reference.len() <= 128
            && reference
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-:".contains(&b));
        let valid_registry = registry
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:".contains(&b));
        if !valid_registry || !repository.split('/').all(path_component) || !valid_reference {
            return Err(format!("{image:?} is not an image reference"));
        }
        Ok(ImageReference {
            registry,
            repository,
            reference,
        })
    }

    fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }
}

/// Credentials for one registry, from a `kubernetes.io/dockerconfigjson` pull secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    username: String,
    password: String,
}

impl Credentials {
    /// The credentials for `registry` in an image pull secret: `kubernetes.io/dockerconfigjson`,
    /// or the older `kubernetes.io/dockercfg` whose document is the `auths` map itself.
    pub fn from_pull_secret(secret: &Value, registry: &str) -> Option<Credentials> {
        let decoded = |key: &str| -> Option<Value> {
            let bytes = base64::decode(secret["data"][key].as_str()?)?;
            serde_json::from_slice(&bytes).ok()
        };
        let config = match decoded(".dockerconfigjson") {
            Some(config) => config,
            None => serde_json::json!({ "auths": decoded(".dockercfg")? }),
        };
        Credentials::from_docker_config(&config, registry)
    }

    /// The entry of a `.dockerconfigjson` document that serves `registry`.
    pub fn from_docker_config(config: &Value, registry: &str) -> Option<Credentials> {
        let auths = config["auths"].as_object()?;
        let names: Vec<String> = if registry == DOCKER_HUB {
            [
                "https://index.docker.io/v1/",
                "index.docker.io",
                "docker.io",
                DOCKER_HUB_API,
            ]
            .map(str::to_string)
            .to_vec()
        } else {
            vec![
                registry.to_string(),
                format!("https://{registry}"),
                format!("http://{registry}"),
            ]
        };
        let entry = names.iter().find_map(|name| {
            auths
                .get(name)
                .or_else(|| auths.get(&format!("{name}/")))
                .or_else(|| auths.get(&format!("{name}/v1/")))
        })?;
        if let (Some(username), Some(password)) = (entry["username"].as_str(), entry["password"].as_str()) {
            return Some(Credentials {
                username: username.to_string(),
                password: password.to_string(),
            });
        }
        let decoded = String::from_utf8(base64::decode(entry["auth"].as_str()?)?).ok()?;
        let (username, password) = decoded.split_once(':')?;
        Some(Credentials {
            username: username.to_string(),
            password: password.to_string(),
        })
    }

    fn basic(&self) -> String {
        format!(
            "Basic {}",
            base64::encode(format!("{}:{}", self.username, self.password).as_bytes())
        )
    }
}

/// Why the registry could not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryUnavailable(pub String);

/// Registry settings (`INSECURE_REGISTRIES`, `REGISTRY_CA_FILE`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Registries (`host[:port]`) spoken to over plain HTTP.
    pub insecure: Vec<String>,
    /// A CA trusted for registries besides the system's.
    pub ca_file: Option<PathBuf>,
}

pub struct Registries {
    agent: ureq::Agent,
    insecure: Vec<String>,
    /// When each image was last found, by user and reference.
    found: Mutex<HashMap<String, Instant>>,
}

impl Registries {
    pub fn new(config: &RegistryConfig) -> Result<Registries, ConfigError> {
        let mut certificates = Vec::new();
        let system = std::env::var("SSL_CERT_FILE")
            .ok()
            .map(PathBuf::from)
            .into_iter()
            .chain(SYSTEM_CA_BUNDLES.iter().map(PathBuf::from))
            .find(|path| path.is_file());
        if let Some(path) = &system {
            certificates.extend(read_certificates(path).unwrap_or_default());
        }
        if let Some(path) = &config.ca_file {
            let invalid = |why: String| ConfigError::new("REGISTRY_CA_FILE", format!("{}: {why}", path.display()));
            let extra = read_certificates(path).map_err(|e| invalid(format!("cannot be read: {e}")))?;
            if extra.is_empty() {
                return Err(invalid("holds no PEM certificate".into()));
            }
            certificates.extend(extra);
        }
        if certificates.is_empty() {
            log::warn!(
                "no CA certificates found (system bundle or REGISTRY_CA_FILE): HTTPS registries cannot be checked"
            );
        }
        let tls = tls_trusting(certificates);
        let agent = agent_config()
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(Duration::from_secs(15)))
            .tls_config(tls)
            .build()
            .new_agent();
        Ok(Registries {
            agent,
            insecure: config.insecure.clone(),
            found: Mutex::new(HashMap::new()),
        })
    }

    /// Whether `image` exists. 404 is `false`; so is a registry that refuses the credentials
    /// (the cluster could not pull it either). A registry that cannot be reached is an error.
    ///
    /// Only `true` is remembered: a client that hears `false` typically builds and pushes the
    /// image, then asks again, and must then hear `true`.
    pub fn image_exists(
        &self,
        image: &ImageReference,
        credentials: Option<&Credentials>,
    ) -> Result<bool, RegistryUnavailable> {
        // Per user: what one set of credentials may not see, another may.
        let user = credentials.map_or("", |c| c.username.as_str());
        let key = format!("{user}@{}/{}:{}", image.registry, image.repository, image.reference);
        let found_at = self
            .found
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .copied();
        if let Some(at) = found_at.filter(|at| at.elapsed() < REMEMBER_FOR) {
            log::debug!("{key} exists (found {:?} ago)", at.elapsed());
            return Ok(true);
        }
        let exists = self.ask(image, credentials)?;
        if exists {
            let mut found = self.found.lock().unwrap_or_else(PoisonError::into_inner);
            if found.len() >= REMEMBER_LIMIT {
                found.retain(|_, at| at.elapsed() < REMEMBER_FOR);
                if found.len() >= REMEMBER_LIMIT {
                    found.clear();
                }
            }
            found.insert(key, Instant::now());
        }
        Ok(exists)
    }

    fn ask(&self, image: &ImageReference, credentials: Option<&Credentials>) -> Result<bool, RegistryUnavailable> {
        let scheme = if self.insecure.contains(&image.registry) {
            "http"
        } else {
            "https"
        };
        let url = format!(
            "{scheme}://{}/v2/{}/manifests/{}",
            image.api_host(),
            image.repository,
            image.reference
        );
        let first = self.head(&url, None)?;
        let authorization = match first.code {
            401 => match Challenge::parse(first.challenge.as_deref()) {
                Some(Challenge::Bearer { realm, service, scope }) => {
                    let scope = scope.unwrap_or_else(|| format!("repository:{}:pull", image.repository));
                    match self.token(&realm, service.as_deref(), &scope, credentials)? {
                        Some(token) => format!("Bearer {token}"),
                        None => return Ok(self.denied(image, "the token service refused")),
                    }
                }
                Some(Challenge::Basic) => match credentials {
                    Some(credentials) => credentials.basic(),
                    None => return Ok(self.denied(image, "it asks for credentials and no pull secret has any")),
                },
                None => return Ok(self.denied(image, "it asks for an unknown authentication")),
            },
            _ => return self.verdict(image, first.code),
        };
        let second = self.head(&url, Some(&authorization))?;
        self.verdict(image, second.code)
    }

    fn verdict(&self, image: &ImageReference, code: u16) -> Result<bool, RegistryUnavailable> {
        match code {
            200..=299 => Ok(true),
            404 => Ok(false),
            401 | 403 => Ok(self.denied(image, "the credentials were refused")),
            code => Err(RegistryUnavailable(format!(
                "the registry {} answered HTTP {code} for {}",
                image.registry, image.repository
            ))),
        }
    }

    fn denied(&self, image: &ImageReference, why: &str) -> bool {
        log::warn!(
            "{}/{}: the registry denies access ({why}); answering that it does not exist",
            image.registry,
            image.repository
        );
        false
    }

    fn head(&self, url: &str, authorization: Option<&str>) -> Result<Answer, RegistryUnavailable> {
        let mut request = http::Request::builder()
            .method(Method::HEAD)
            .uri(url)
            .header("Accept", MANIFEST_TYPES);
        if let Some(authorization) = authorization {
            request = request.header("Authorization", authorization);
        }
        let request = request.body(()).map_err(|e| RegistryUnavailable(e.to_string()))?;
        let response = self
            .agent
            .run(request)
            .map_err(|e| RegistryUnavailable(format!("cannot reach {}: {e}", host_of(url))))?;
        Ok(Answer {
            code: response.status().as_u16(),
            challenge: response
                .headers()
                .get("WWW-Authenticate")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        })
    }

    /// The anonymous (or credentialed) token flow of the distribution spec; `None` when refused.
    fn token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        credentials: Option<&Credentials>,
    ) -> Result<Option<String>, RegistryUnavailable> {
        let mut query = vec![("scope", scope.to_string())];
        if let Some(service) = service {
            query.push(("service", service.to_string()));
        }
        let separator = if realm.contains('?') { '&' } else { '?' };
        let url = format!("{realm}{separator}{}", query_string(&query));
        let mut request = http::Request::builder().method(Method::GET).uri(&url);
        if let Some(credentials) = credentials {
            request = request.header("Authorization", credentials.basic());
        }
        let request = request.body(()).map_err(|e| RegistryUnavailable(e.to_string()))?;
        let mut response = self
            .agent
            .run(request)
            .map_err(|e| RegistryUnavailable(format!("cannot reach the token service {}: {e}", host_of(realm))))?;
        match response.status().as_u16() {
            200 => {
                let body: Value = response
                    .body_mut()
                    .with_config()
                    .limit(MAX_TOKEN_BYTES)
                    .read_to_vec()
                    .ok()
                    .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                    .ok_or_else(|| {
                        RegistryUnavailable(format!("the token service {} answered no JSON", host_of(realm)))
                    })?;
                let token = body["token"].as_str().or(body["access_token"].as_str());
                Ok(token.map(str::to_string))
            }
            401 | 403 => Ok(None),
            code => Err(RegistryUnavailable(format!(
                "the token service {} answered HTTP {code}",
                host_of(realm)
            ))),
        }
    }
}

struct Answer {
    code: u16,
    challenge: Option<String>,
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    Basic,
}

impl Challenge {
    /// `Bearer realm="https://auth.example/token",service="registry",scope="repository:a/b:pull"`.
    pub(crate) fn parse(header: Option<&str>) -> Option<Challenge> {
        let header = header?.trim();
        let (scheme, parameters) = header.split_once(' ').unwrap_or((header, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let mut values = HashMap::new();
        let mut rest = parameters;
        while let Some((key, after)) = rest.split_once('=') {
            let key = key.trim().trim_start_matches(',').trim().to_lowercase();
            let (value, remaining) = match after.strip_prefix('"') {
                Some(quoted) => quoted.split_once('"').unwrap_or((quoted, "")),
                None => after.split_once(',').unwrap_or((after, "")),
            };
            values.insert(key, value.to_string());
            rest = remaining;
        }
        Some(Challenge::Bearer {
            realm: values.remove("realm")?,
            service: values.remove("service"),
            scope: values.remove("scope"),
        })
    }
}

fn read_certificates(path: &Path) -> std::io::Result<Vec<ureq::tls::Certificate<'static>>> {
    Ok(certificates_in(&fs::read(path)?))
}

fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(image: &str) -> (String, String, String) {
        let r = ImageReference::parse(image).unwrap();
        (r.registry, r.repository, r.reference)
    }

    #[test]
    fn references_resolve_like_docker() {
        let t = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
        assert_eq!(parse("ubuntu"), t("docker.io", "library/ubuntu", "latest"));
        assert_eq!(parse("python:3.12-slim"), t("docker.io", "library/python", "3.12-slim"));
        assert_eq!(
            parse("openhands/runtime:0.59"),
            t("docker.io", "openhands/runtime", "0.59")
        );
        assert_eq!(
            parse("ghcr.io/openhands/agent-server:latest-python"),
            t("ghcr.io", "openhands/agent-server", "latest-python")
        );
        assert_eq!(
            parse("registry.internal:5000/team/app"),
            t("registry.internal:5000", "team/app", "latest")
        );
        assert_eq!(parse("localhost/app:1"), t("localhost", "app", "1"));
        let digest = "sha256:5b0e3c5f0a0d6a0c2f4e1d9b8a7c6e5d4c3b2a1908f7e6d5c4b3a29180706050";
        assert_eq!(parse(&format!("ghcr.io/a/b@{digest}")), t("ghcr.io", "a/b", digest));
        for bad in ["", "UPPER/case", "a//b", "ghcr.io/a/b:", "a b"] {
            assert!(ImageReference::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn challenges_are_read() {
        assert_eq!(
            Challenge::parse(Some(
                r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:a/b:pull""#
            )),
            Some(Challenge::Bearer {
                realm: "https://ghcr.io/token".into(),
                service: Some("ghcr.io".into()),
                scope: Some("repository:a/b:pull".into())
            })
        );
        assert_eq!(
            Challenge::parse(Some(r#"Basic realm="Registry Realm""#)),
            Some(Challenge::Basic)
        );
        assert_eq!(Challenge::parse(Some("Negotiate")), None);
        assert_eq!(Challenge::parse(None), None);
    }

    #[test]
    fn pull_secrets_match_their_registry() {
        let config = json!({"auths": {
            "https://index.docker.io/v1/": {"auth": base64::encode(b"hub-user:hub-pass")},
            "registry.internal:5000": {"username": "u", "password": "p"},
        }});
        let hub = Credentials::from_docker_config(&config, "docker.io").unwrap();
        assert_eq!((hub.username.as_str(), hub.password.as_str()), ("hub-user", "hub-pass"));
        let internal = Credentials::from_docker_config(&config, "registry.internal:5000").unwrap();
        assert_eq!(internal.basic(), format!("Basic {}", base64::encode(b"u:p")));
        assert!(Credentials::from_docker_config(&config, "ghcr.io").is_none());
    }

    #[test]
    fn pull_secrets_of_both_types_are_read() {
        let auths = json!({"registry.internal:5000": {"auth": base64::encode(b"u:p")}});
        let encode = |v: &Value| base64::encode(v.to_string().as_bytes());
        let json_secret = json!({"type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": encode(&json!({"auths": auths}))}});
        let legacy_secret = json!({"type": "kubernetes.io/dockercfg", "data": {".dockercfg": encode(&auths)}});
        for secret in [json_secret, legacy_secret] {
            let credentials = Credentials::from_pull_secret(&secret, "registry.internal:5000").unwrap();
            assert_eq!(credentials.basic(), format!("Basic {}", base64::encode(b"u:p")));
        }
        assert!(Credentials::from_pull_secret(&json!({"data": {"token": "eA=="}}), "registry.internal:5000").is_none());
    }
}
