//! `/image_exists` against a real registry (API.md §9): Debian's `docker-registry`, the CNCF
//! distribution registry, run on loopback, open, behind htpasswd, behind a token service, and
//! over TLS. The answer must be the registry's, never a guess.

mod support;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use support::registry::{Access, LocalRegistry};
use support::service::Answer;
use support::{FakeKube, Service};

/// The registry, or `None` with a message when it is not installed. CI sets
/// `REQUIRE_REGISTRY=1` so that a missing registry fails instead of skipping.
fn registry(access: Access, tls: bool) -> Option<LocalRegistry> {
    match LocalRegistry::start(access, tls) {
        Ok(registry) => Some(registry),
        Err(why) if std::env::var_os("REQUIRE_REGISTRY").is_none() => {
            eprintln!("skipping: {why}");
            None
        }
        Err(why) => panic!("{why}"),
    }
}

fn ask(service: &Service, image: &str) -> Answer {
    let encoded: String = image
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'/' => char::from(b).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect();
    service.get(&format!("/image_exists?image={encoded}"))
}

fn exists(service: &Service, image: &str) -> bool {
    let answer = ask(service, image);
    assert_eq!(answer.code, 200, "{image}: {:#}\n{}", answer.body, service.log());
    assert_eq!(answer.body.as_object().map(|o| o.len()), Some(1), "{:#}", answer.body);
    answer.body["exists"]
        .as_bool()
        .unwrap_or_else(|| panic!("{image}: exists is not a boolean: {:#}", answer.body))
}

/// A `kubernetes.io/dockerconfigjson` secret as `kubectl create secret docker-registry` makes it.
fn pull_secret(name: &str, registry: &str, username: &str, password: &str) -> Value {
    let config = json!({"auths": {registry: {
        "username": username,
        "password": password,
        "auth": STANDARD.encode(format!("{username}:{password}")),
    }}});
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": STANDARD.encode(config.to_string())},
    })
}

const MISSING_DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

#[test]
fn an_open_registry_answers_for_tags_and_digests() {
    let Some(registry) = registry(Access::Open, false) else {
        return;
    };
    let digest = registry.push("team/agent-server", "1.0");
    let fake = FakeKube::start();
    let service = Service::start(&fake, &[("INSECURE_REGISTRIES", &registry.host)]);
    let host = &registry.host.clone();

    assert!(exists(&service, &format!("{host}/team/agent-server:1.0")));
    assert!(exists(&service, &format!("{host}/team/agent-server@{digest}")));
    assert!(!exists(&service, &format!("{host}/team/agent-server:2.0")));
    assert!(!exists(&service, &format!("{host}/team/agent-server@{MISSING_DIGEST}")));
    assert!(!exists(&service, &format!("{host}/team/no-such-image:1.0")));
    // No tag means latest, as for docker pull. A client that heard `false` builds and pushes
    // the image, then asks again: it must hear `true` at once.
    assert!(!exists(&service, &format!("{host}/team/agent-server")));
    registry.push("team/agent-server", "latest");
    assert!(exists(&service, &format!("{host}/team/agent-server")));

    // An image found is remembered for a while: a registry that just went away does not fail
    // a start checked a moment ago; an image not found before is a clear 502.
    drop(registry);
    assert!(exists(&service, &format!("{host}/team/agent-server:1.0")));
    let unreachable = ask(&service, &format!("{host}/team/agent-server:3.0"));
    assert_eq!(unreachable.code, 502, "{:#}", unreachable.body);
    assert_eq!(unreachable.body["error"], "registry_unavailable");
    let detail = unreachable.body["detail"].as_str().unwrap();
    assert!(detail.contains(host.as_str()), "{detail}");
    assert_eq!(fake.schema_violations(), Vec::<String>::new());
}

#[test]
fn htpasswd_credentials_come_from_the_image_pull_secrets() {
    let access = Access::Htpasswd {
        username: "robot".into(),
        password: "s3cret-pull".into(),
    };
    let Some(registry) = registry(access, false) else {
        return;
    };
    registry.push("private/agent", "1.0");
    let host = registry.host.clone();
    let image = format!("{host}/private/agent:1.0");
    let fake = FakeKube::start();
    // The first secret is for another registry and must be passed over; `regcred` does not
    // exist yet, as on a cluster where the operator has not created it.
    fake.insert(
        "secrets",
        &pull_secret("hub-cred", "https://index.docker.io/v1/", "hub", "x"),
    );
    let service = Service::start(
        &fake,
        &[
            ("INSECURE_REGISTRIES", &host),
            ("IMAGE_PULL_SECRETS", "hub-cred,regcred"),
        ],
    );

    // Without credentials the cluster could not pull it either.
    assert!(!exists(&service, &image));
    fake.insert("secrets", &pull_secret("regcred", &host, "robot", "s3cret-pull"));
    assert!(exists(&service, &image), "{}", registry.log());
    assert!(!exists(&service, &format!("{host}/private/agent:2.0")));

    // Credentials the registry refuses: the image cannot be pulled with them.
    let wrong = pull_secret("regcred", &host, "intruder", "guess");
    fake.merge_patch("secrets", "regcred", &json!({"data": wrong["data"]}));
    assert!(!exists(&service, &image));
    let log = service.log();
    assert!(
        !log.contains("s3cret-pull") && !log.contains("guess"),
        "a password reached the log:\n{log}"
    );
}

#[test]
fn the_token_flow_is_followed_anonymously_and_with_credentials() {
    let access = Access::Token {
        username: "robot".into(),
        password: "token-pass".into(),
    };
    let Some(registry) = registry(access, false) else {
        return;
    };
    registry.push("public/agent", "1.0");
    registry.push("private/agent", "1.0");
    let host = registry.host.clone();
    let fake = FakeKube::start();
    let service = Service::start(
        &fake,
        &[("INSECURE_REGISTRIES", &host), ("IMAGE_PULL_SECRETS", "regcred")],
    );

    assert!(
        exists(&service, &format!("{host}/public/agent:1.0")),
        "{}",
        registry.log()
    );
    assert!(!exists(&service, &format!("{host}/public/agent:9.9")));
    assert!(!exists(&service, &format!("{host}/private/agent:1.0")));
    let anonymous = registry.token_requests();
    assert!(anonymous.iter().all(|r| r.authorization.is_none()), "{anonymous:?}");
    assert!(
        anonymous
            .iter()
            .any(|r| r.query.contains("scope=repository%3Apublic%2Fagent%3Apull")
                && r.query.contains("service=test-registry")),
        "{anonymous:?}"
    );

    fake.insert("secrets", &pull_secret("regcred", &host, "robot", "token-pass"));
    assert!(
        exists(&service, &format!("{host}/private/agent:1.0")),
        "{}",
        registry.log()
    );
    let with_credentials = registry.token_requests();
    assert_eq!(
        with_credentials.last().and_then(|r| r.authorization.clone()),
        Some(support::registry::basic_auth("robot", "token-pass"))
    );
}

#[test]
fn a_tls_registry_is_trusted_through_registry_ca_file() {
    let Some(registry) = registry(Access::Open, true) else {
        return;
    };
    registry.push("team/agent", "1.0");
    let host = registry.host.clone();
    let dir = support::temp_dir("registry-ca");
    let ca_file = dir.join("registry-ca.crt");
    std::fs::write(&ca_file, registry.ca_pem.as_deref().unwrap()).unwrap();
    let fake = FakeKube::start();

    let trusting = Service::start(&fake, &[("REGISTRY_CA_FILE", ca_file.to_str().unwrap())]);
    assert!(exists(&trusting, &format!("{host}/team/agent:1.0")));
    assert!(!exists(&trusting, &format!("{host}/team/agent:2.0")));

    // A certificate nobody vouched for is not an answer.
    let untrusting = Service::start(&fake, &[]);
    let refused = ask(&untrusting, &format!("{host}/team/agent:1.0"));
    assert_eq!(refused.code, 502, "{:#}", refused.body);
    assert_eq!(refused.body["error"], "registry_unavailable");
}

#[test]
fn a_reference_that_is_not_an_image_is_a_bad_request() {
    let fake = FakeKube::start();
    let service = Service::start(&fake, &[]);
    for image in ["Upper/Case:1", "ghcr.io/a//b", "ghcr.io/a/b:", "a b"] {
        let answer = ask(&service, image);
        assert_eq!(answer.code, 400, "{image}: {:#}", answer.body);
        assert_eq!(answer.body["error"], "invalid_request");
        assert!(
            answer.body["detail"].as_str().unwrap().starts_with("image"),
            "{:#}",
            answer.body
        );
    }
}

#[test]
fn an_unreachable_registry_is_a_502_that_says_so() {
    let fake = FakeKube::start();
    let service = Service::start(&fake, &[("INSECURE_REGISTRIES", "127.0.0.1:9")]);
    let answer = ask(&service, "127.0.0.1:9/team/agent:1.0");
    assert_eq!(answer.code, 502, "{:#}", answer.body);
    assert_eq!(answer.body["error"], "registry_unavailable");
    let detail = answer.body["detail"].as_str().unwrap();
    assert!(detail.contains("127.0.0.1:9"), "{detail}");
}
