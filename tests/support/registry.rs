//! A real OCI registry for tests: Debian's `docker-registry` package (the CNCF distribution
//! registry) run on loopback, open, behind htpasswd, or behind a token service, over HTTP or
//! TLS. Images are pushed over its HTTP API as `docker push` would.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde_json::{Value, json};

use openhands_k8s_runtime::testing::{certificates_in, tls_trusting};

use super::fake_kube::query_params;
use super::tls::TestPki;

const BINARIES: [&str; 2] = ["/usr/bin/docker-registry", "/usr/local/bin/registry"];
const STARTUP: Duration = Duration::from_secs(20);
const SERVICE: &str = "test-registry";
const ISSUER: &str = "test-token-issuer";

/// Who may pull from the registry.
pub enum Access {
    /// Anyone.
    Open,
    /// Basic authentication against an htpasswd file with one user.
    Htpasswd { username: String, password: String },
    /// The distribution token flow: anonymous pulls of `public/...`; `username`/`password` at
    /// the token service may pull everything.
    Token { username: String, password: String },
}

pub struct LocalRegistry {
    child: Child,
    /// `127.0.0.1:PORT`, as an image reference names it.
    pub host: String,
    scheme: &'static str,
    /// The CA that signed the registry's certificate, when it serves TLS.
    pub ca_pem: Option<String>,
    dir: PathBuf,
    basic: Option<String>,
    token_service: Option<TokenService>,
    agent: ureq::Agent,
}

/// The registry binary, or a message saying why tests that need it cannot run.
pub fn binary() -> Result<PathBuf, String> {
    std::env::var_os("REGISTRY_BINARY")
        .map(PathBuf::from)
        .into_iter()
        .chain(BINARIES.iter().map(PathBuf::from))
        .find(|path| path.is_file())
        .ok_or_else(|| "no registry binary: install Debian's docker-registry package (or set REGISTRY_BINARY)".into())
}

impl LocalRegistry {
    /// Starts a registry; `Err` with the reason when the binary is not installed.
    pub fn start(access: Access, tls: bool) -> Result<LocalRegistry, String> {
        let binary = binary()?;
        let dir = super::temp_dir("registry");
        let port = super::free_port();
        let host = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: {host}\n  secret: test-secret\n",
            dir.join("data").display()
        );
        let mut ca_pem = None;
        if tls {
            let pki = TestPki::generate("test registry CA");
            fs::write(dir.join("registry.crt"), &pki.server_cert_pem).unwrap();
            fs::write(dir.join("registry.key"), &pki.server_key_pem).unwrap();
            config += &format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                dir.join("registry.crt").display(),
                dir.join("registry.key").display()
            );
            ca_pem = Some(pki.ca_pem);
        }
        let mut basic = None;
        let mut token_service = None;
        match &access {
            Access::Open => {}
            Access::Htpasswd { username, password } => {
                let hash = bcrypt::hash(password, 5).unwrap();
                fs::write(dir.join("htpasswd"), format!("{username}:{hash}\n")).unwrap();
                config += &format!(
                    "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                    dir.join("htpasswd").display()
                );
                basic = Some(basic_auth(username, password));
            }
            Access::Token { username, password } => {
                let service = TokenService::start(username, password);
                fs::write(dir.join("token.crt"), &service.certificate_pem).unwrap();
                config += &format!(
                    "auth:\n  token:\n    realm: {}/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    \
                     rootcertbundle: {}\n",
                    service.url,
                    dir.join("token.crt").display()
                );
                token_service = Some(service);
            }
        }
        fs::write(dir.join("config.yml"), config).unwrap();
        let log = fs::File::create(dir.join("registry.log")).unwrap();
        let child = Command::new(&binary)
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
        // Plain HTTP uses none of it; over TLS only the registry's own CA is trusted.
        let certificates = ca_pem.as_deref().map(|ca| certificates_in(ca.as_bytes()));
        let tls_config = tls_trusting(certificates.unwrap_or_default());
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .tls_config(tls_config)
            .build()
            .new_agent();
        let registry = LocalRegistry {
            child,
            host,
            scheme: if tls { "https" } else { "http" },
            ca_pem,
            dir,
            basic,
            token_service,
            agent,
        };
        registry.wait_until_serving();
        Ok(registry)
    }

    fn wait_until_serving(&self) {
        let deadline = Instant::now() + STARTUP;
        while self.agent.get(self.url("/v2/")).call().is_err() {
            assert!(Instant::now() < deadline, "the registry did not start:\n{}", self.log());
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.host)
    }

    /// Requests the service sent to the token service.
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.token_service
            .as_ref()
            .map_or_else(Vec::new, |s| s.requests.lock().unwrap().clone())
    }

    /// The Authorization header the pushing client sends for `repository`.
    fn push_authorization(&self, repository: &str) -> Option<String> {
        if let Some(service) = &self.token_service {
            return Some(format!("Bearer {}", service.mint(repository, &["pull", "push"])));
        }
        self.basic.clone()
    }

    /// Pushes a one-layer image to `repository:tag` as `docker push` would (config blob, layer
    /// blob, OCI manifest); returns the manifest's digest.
    pub fn push(&self, repository: &str, tag: &str) -> String {
        let authorization = self.push_authorization(repository);
        let layer = format!("layer of {repository}:{tag}").into_bytes();
        let config = json!({
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [digest(&layer)]},
            "config": {"Entrypoint": ["/usr/local/bin/openhands-agent-server"]},
        })
        .to_string()
        .into_bytes();
        for blob in [&config, &layer] {
            self.push_blob(repository, blob, authorization.as_deref());
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(&config), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(&layer), "size": layer.len()}],
        })
        .to_string()
        .into_bytes();
        let mut request = self
            .agent
            .put(self.url(&format!("/v2/{repository}/manifests/{tag}")))
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json");
        if let Some(authorization) = &authorization {
            request = request.header("Authorization", authorization);
        }
        let response = request.send(&manifest[..]).expect("PUT the manifest");
        assert_eq!(
            response.status(),
            201,
            "PUT manifest of {repository}:{tag}:\n{}",
            self.log()
        );
        digest(&manifest)
    }

    fn push_blob(&self, repository: &str, blob: &[u8], authorization: Option<&str>) {
        let mut start = self.agent.post(self.url(&format!("/v2/{repository}/blobs/uploads/")));
        if let Some(authorization) = authorization {
            start = start.header("Authorization", authorization);
        }
        let started = start.send_empty().expect("start a blob upload");
        assert_eq!(
            started.status(),
            202,
            "start an upload to {repository}:\n{}",
            self.log()
        );
        let location = started.headers()["Location"].to_str().unwrap().to_string();
        let location = if location.starts_with('/') {
            self.url(&location)
        } else {
            location
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        let mut put = self
            .agent
            .put(format!("{location}{separator}digest={}", digest(blob)))
            .header("Content-Type", "application/octet-stream");
        if let Some(authorization) = authorization {
            put = put.header("Authorization", authorization);
        }
        let finished = put.send(blob).expect("finish a blob upload");
        assert_eq!(finished.status(), 201, "upload a blob to {repository}:\n{}", self.log());
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn digest(bytes: &[u8]) -> String {
    let hash = ring::digest::digest(&ring::digest::SHA256, bytes);
    let hex: String = hash.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

pub fn basic_auth(username: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{username}:{password}")))
}

/// One token request: the scope and service asked for, and whether credentials came with it.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub query: String,
    pub authorization: Option<String>,
}

/// A token service as Docker Hub and GHCR run one: it signs JWTs (ES256, certificate in `x5c`)
/// that the registry verifies against `rootcertbundle`.
struct TokenService {
    url: String,
    certificate_pem: String,
    signer: Arc<Signer>,
    requests: Arc<Mutex<Vec<TokenRequest>>>,
    server: Arc<tiny_http::Server>,
}

struct Signer {
    key: EcdsaKeyPair,
    certificate_der: Vec<u8>,
}

impl Signer {
    fn mint(&self, repository: &str, actions: &[&str]) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let header = json!({"alg": "ES256", "typ": "JWT", "x5c": [STANDARD.encode(&self.certificate_der)]});
        let access = if actions.is_empty() {
            json!([])
        } else {
            json!([{"type": "repository", "name": repository, "actions": actions}])
        };
        let claims = json!({
            "iss": ISSUER, "sub": "", "aud": SERVICE, "exp": now + 300, "nbf": now - 10, "iat": now,
            "jti": format!("{now}-{repository}"), "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.key.sign(&SystemRandom::new(), signing_input.as_bytes()).unwrap();
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

impl TokenService {
    fn start(username: &str, password: &str) -> TokenService {
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, ISSUER);
        let certificate = params.self_signed(&key_pair).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &key_pair.serialize_der(),
            &SystemRandom::new(),
        )
        .unwrap();
        let signer = Arc::new(Signer {
            key,
            certificate_der: certificate.der().to_vec(),
        });
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let url = format!("http://{}", server.server_addr().to_ip().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let credentials = basic_auth(username, password);
        {
            let (server, signer, requests) = (server.clone(), signer.clone(), requests.clone());
            thread::spawn(move || {
                for request in server.incoming_requests() {
                    let query = request.url().split_once('?').map_or("", |(_, q)| q).to_string();
                    let authorization = request
                        .headers()
                        .iter()
                        .find(|h| h.field.equiv("Authorization"))
                        .map(|h| h.value.to_string());
                    requests.lock().unwrap().push(TokenRequest {
                        query: query.clone(),
                        authorization: authorization.clone(),
                    });
                    let scope = query_params(&query).remove("scope").unwrap_or_default();
                    let repository = scope.split(':').nth(1).unwrap_or_default().to_string();
                    let response = match authorization {
                        Some(given) if given != credentials => {
                            tiny_http::Response::from_string(r#"{"details":"incorrect username or password"}"#)
                                .with_status_code(401)
                        }
                        Some(_) => token_response(&signer.mint(&repository, &["pull"])),
                        // Anonymous: pulls of public repositories only; others get a token
                        // without access, as Docker Hub does.
                        None if repository.starts_with("public/") => {
                            token_response(&signer.mint(&repository, &["pull"]))
                        }
                        None => token_response(&signer.mint(&repository, &[])),
                    };
                    let _ = request.respond(response);
                }
            });
        }
        TokenService {
            url,
            certificate_pem: certificate.pem(),
            signer,
            requests,
            server,
        }
    }

    fn mint(&self, repository: &str, actions: &[&str]) -> String {
        self.signer.mint(repository, actions)
    }
}

impl Drop for TokenService {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

fn token_response(token: &str) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let header = tiny_http::Header::from_bytes("Content-Type", "application/json").unwrap();
    tiny_http::Response::from_string(json!({"token": token, "expires_in": 300}).to_string()).with_header(header)
}
