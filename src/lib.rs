//! openhands-k8s-runtime: the OpenHands Remote Runtime API on Kubernetes.
//!
//! The binary (`src/main.rs`) serves the API; this library holds its parts so that the tests
//! can drive each of them against the fake API server in `tests/support/`.

pub mod kube_rest;
