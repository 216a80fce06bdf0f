//! Test helpers: a fake Kubernetes API server that behaves like the real one, and the tools
//! to check what is sent to it.

// Each test crate uses its own part of these helpers.
#![allow(dead_code, unused_imports)]

pub mod agent_bed;
pub mod agent_stand_in;
pub mod cluster;
#[cfg(test)]
pub mod control_plane;
pub mod deploy;
pub mod fake_kube;
pub mod ingress;
pub mod kubelet;
pub mod names;
pub mod node;
pub mod owners;
pub mod registry;
pub mod release;
#[cfg(test)]
pub mod sandboxes;
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

/// A port for a server that a child process (the service, a registry) will listen on.
///
/// Not one from `bind(0)`: the kernel hands out those ports from the ephemeral range, which
/// also gives every outgoing connection its local port, and by the time the child binds one it
/// may be the local end of some test's connection; the child then cannot listen and exits.
/// These come from below that range, a different run of them in each test process, each
/// checked free before it is handed out.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Linux's ip_local_port_range starts at 32768 unless an administrator moved it.
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let first = (ephemeral_start / 2).max(1024);
    let span = ephemeral_start.saturating_sub(first).max(1);
    let offset = std::process::id().wrapping_mul(7919);
    loop {
        let port = first + offset.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = u16::try_from(port).expect("a port below the ephemeral range");
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
}
