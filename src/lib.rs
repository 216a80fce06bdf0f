//! openhands-k8s-runtime: the OpenHands Remote Runtime API on Kubernetes (the contract is
//! `docs/API.md`; sections are cited as `API.md §N`).
//!
//! # Words
//!
//! - **session**: the client's name for a conversation's sandbox; one runtime per session.
//! - **runtime**: one sandbox as the API knows it: a random id, a session key, the original
//!   start request and a desired state (running or paused).
//! - **sandbox pod**: the Pod running the OpenHands agent server for a runtime.
//! - **anchor**: the runtime's Secret `runtime-{id}`. It holds the key, the request and the
//!   desired state, and owns the runtime's other objects, so deleting it deletes them all.
//! - **view**: the runtime object clients receive, built from a runtime and its pod.
//! - **agent**: the OpenHands agent server in a sandbox pod, reached at its pod's address.
//!
//! # How a request flows
//!
//! A worker thread of `api` takes a request from `tiny_http`, checks its path, method and API
//! key, and either reads the `store` (every read: no Kubernetes call) or asks the `controller`
//! (writes, and `/image_exists`). The controller holds the session's guard, writes to the
//! cluster through `kube` (the anchor first, then what it owns), records what it did in the
//! store, and answers a `runtime` view. Meanwhile `background` keeps the store true to the
//! cluster (the pod and anchor watches) and the cluster true to each runtime's desired state
//! (convergence), so that a crash at any point ends where the client asked to go; it also
//! pauses runtimes whose agent is idle or that are stuck, and stops long-paused ones.
//!
//! # Modules
//!
//! - wiring: `service` (builds the parts, runs the threads), `config` (API.md §2)
//! - HTTP: `api` (endpoints, the `/list` encoding), `error` (every failure, one HTTP answer),
//!   `metrics` (`/metrics`)
//! - runtimes: `start_request` (what a client asks for), `runtime` (a runtime and its view),
//!   `pod_status` (what a pod's status means, API.md §4), `manifests` (a runtime's objects,
//!   API.md §5), `store` (what is known of the cluster)
//! - work: `controller` (start, stop, pause, resume), `background` (recovery, watches,
//!   convergence, the orphan sweep, the idle/stuck/dormant lifecycle), `events` (what the
//!   service did on its own, on the anchor), `agent` (reaching a sandbox's agent server),
//!   `image_check` and `registry` (`/image_exists`, API.md §9)
//! - Kubernetes and HTTP clients: `kube` (API.md §8), `http_client` (what `kube` and
//!   `registry` share)
//! - leaves, shared by all: `env` (settings from environment variables), `names` (name rules),
//!   `object` (object metadata), `timestamps`, `random`, `base64`, `sys` (the calls into libc;
//!   the only place `unsafe` is allowed)

#![deny(unsafe_code)]

mod agent;
mod api;
mod background;
mod base64;
mod config;
mod controller;
mod env;
mod error;
mod events;
mod http_client;
mod image_check;
mod kube;
mod manifests;
mod metrics;
mod names;
mod object;
mod pod_status;
mod random;
mod registry;
mod runtime;
mod service;
mod start_request;
mod store;
mod sys;
mod timestamps;
mod warm;

pub use config::Config;
pub use env::ConfigError;
pub use service::{StartError, run};
pub use sys::limit_malloc_arenas;

/// What the test suite drives directly besides the binary.
#[doc(hidden)]
pub mod testing {
    /// The Kubernetes client, tested call by call against the fake API server.
    pub mod kube {
        pub use crate::kube::{
            Client, Config, Deletion, KubeError, Resource, RetryPolicy, Timeouts, WatchEvent, owner_reference,
        };
    }
    /// The socket and TLS helpers the fake servers share with the service.
    pub use crate::api::bind_no_delay;
    pub use crate::http_client::{certificates_in, tls_trusting};
}

/// Entry points for the fuzz targets in `fuzz/`: everything that parses untrusted bytes. Each
/// must return, whatever the input, and never panic.
#[doc(hidden)]
pub mod fuzzing {
    use std::time::Duration;

    /// A request head as the service's HTTP front reads it, with the service's limits.
    #[cfg(unix)]
    pub fn request_head(input: &[u8]) -> usize {
        let limits = crate::config::HttpLimits {
            max_connections: 1,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        };
        tiny_http::fuzzing::serve_bytes(input, crate::api::server_limits(limits))
    }

    /// A `/start` body, parsed and validated.
    pub fn start_request(body: &[u8]) -> bool {
        serde_json::from_slice(body)
            .ok()
            .is_some_and(|body| crate::start_request::StartRequest::from_json(&body, "image:1").is_ok())
    }

    /// A request target: its path routed to an endpoint, its query strings decoded.
    pub fn request_target(target: &str) -> usize {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let routed = crate::api::Endpoint::parse(path).is_some();
        let values: usize = ["ids", "image", "include_paused"]
            .iter()
            .map(|name| crate::api::query::query_values(query, name).len())
            .sum();
        values + usize::from(routed)
    }

    /// An image reference, as `/image_exists` takes it.
    pub fn image_reference(text: &str) -> bool {
        crate::registry::ImageReference::parse(text).is_ok()
    }

    /// A registry's `WWW-Authenticate` challenge.
    pub fn www_authenticate(header: &str) -> bool {
        crate::registry::Challenge::parse(Some(header)).is_some()
    }

    /// An API server's error answer: a `Status` body, or plain text.
    pub fn kube_status(code: u16, body: &[u8]) -> usize {
        crate::kube::KubeError::from_response(code, None, body).message().len()
    }

    /// One line of a watch stream.
    pub fn watch_event(line: &str) -> bool {
        crate::kube::parse_watch_event(line).is_ok()
    }
}
