//! openhands-k8s-runtime: the OpenHands Remote Runtime API on Kubernetes.
//!
//! The binary (`src/main.rs`) wires these parts together; as a library they can be tested one
//! by one against the fake API server in `tests/support/`.
//!
//! - `config`: the environment, validated once at startup (SPEC §2)
//! - `http_client`: TLS and query strings, shared by the Kubernetes and registry clients
//! - `kube_rest`: a small synchronous Kubernetes REST client (SPEC §8)
//! - `runtime`: a runtime, its start request and the object clients see (SPEC §3)
//! - `pod_status`: what a pod's status means for clients (SPEC §4)
//! - `manifests`: the Kubernetes objects of a runtime (SPEC §5)
//! - `registry`: whether an image exists, asked of its registry (SPEC §9)
//! - `store`: the runtimes, indexed by runtime id and session id
//! - `controller`: start, stop, pause, resume and convergence (SPEC §6)
//! - `api`: the HTTP endpoints, and `error`: every failure mapped to one HTTP answer

pub mod api;
pub mod base64;
pub mod config;
pub mod controller;
pub mod error;
pub mod http_client;
pub mod kube_rest;
pub mod manifests;
pub mod pod_status;
pub mod registry;
pub mod runtime;
pub mod store;
