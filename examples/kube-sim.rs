//! A simulated Kubernetes API server for trying the service without a cluster.
//!
//! It is the fake API server of the test suite, with its simulated kubelet, served on a local
//! port without authentication (like `kubectl proxy`):
//!
//! ```sh
//! cargo run --example kube-sim            # listens on 127.0.0.1:8001
//! API_KEY=dev KUBE_API_URL=http://127.0.0.1:8001 cargo run --release
//! ```
//!
//! Pods become Ready within a few seconds. Images whose name contains `crashloop`,
//! `no-such-image` or `unschedulable` fail the way a real cluster would.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use support::{FakeKube, PodFate};

fn main() {
    let mut port = 8001;
    let mut tick_ms = 1000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().and_then(|v| v.parse::<u64>().ok());
        match (arg.as_str(), value) {
            ("--port", Some(p)) if p <= u64::from(u16::MAX) => port = p as u16,
            ("--tick-ms", Some(t)) if t > 0 => tick_ms = t,
            _ => {
                eprintln!("usage: kube-sim [--port 8001] [--tick-ms 1000]");
                std::process::exit(2);
            }
        }
    }
    let fake = FakeKube::builder()
        .without_auth()
        .port(port)
        .tick(Duration::from_millis(tick_ms))
        .start();
    fake.kubelet_rule("crashloop", PodFate::crash_loop());
    fake.kubelet_rule("no-such-image", PodFate::ImagePullBackOff);
    fake.kubelet_rule("unschedulable", PodFate::unschedulable());
    println!(
        "simulated Kubernetes API server at {} (namespace {})",
        fake.url(),
        support::NAMESPACE
    );
    println!("pods move one step every {tick_ms} ms: Pending, ContainerCreating, Running, Ready");
    println!("images containing crashloop, no-such-image or unschedulable fail as on a real cluster");
    println!(
        "start the service with: API_KEY=dev KUBE_API_URL={} cargo run --release",
        fake.url()
    );
    loop {
        std::thread::park();
    }
}
