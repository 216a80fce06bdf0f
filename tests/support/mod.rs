//! Test helpers: a fake Kubernetes API server that behaves like the real one, and the tools
//! to check what is sent to it.

// Each test crate uses its own part of these helpers.
#![allow(dead_code, unused_imports)]

pub mod cluster;
pub mod deploy;
pub mod fake_kube;
pub mod kubelet;
pub mod names;
pub mod registry;
pub mod schema;
pub mod selector;
// Only integration tests have the service binary to run (examples share the rest).
#[cfg(test)]
pub mod service;
pub mod tls;

pub use fake_kube::{FakeKube, Fault, FaultRule, NAMESPACE, TOKEN};
pub use kubelet::PodFate;
#[cfg(test)]
pub use service::{API_KEY, BASE_DOMAIN, Service};

/// A fresh directory for one test's files.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = option_env!("CARGO_TARGET_TMPDIR")
        .map_or_else(std::env::temp_dir, std::path::PathBuf::from)
        .join(format!(
            "{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    dir
}
