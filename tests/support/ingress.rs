//! An ingress controller's stand-in: routes `Host: {session}.{BASE_DOMAIN}` (and `vscode-`,
//! `work-1-`, `work-2-`) by the cluster's Ingress rules to the Service's ready pod, at
//! `podIP:targetPort`, as ingress-nginx would, so tests use the URLs the service returns.
//!
//! Each connection is routed by the Host of its first request and then relayed byte for byte
//! both ways (so streaming and WebSocket upgrades pass). A host no Ingress names answers 404, a
//! Service without a ready pod 503, as ingress-nginx does.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use serde_json::Value;

use super::cluster::Cluster;
use super::node::named_port;

/// Where a host's requests go, or the status and reason to answer instead.
pub type Route = Result<SocketAddr, (u16, String)>;

/// The pod behind `host` by the cluster's Ingresses, Services and pods.
pub fn route(cluster: &Cluster, host: &str) -> Route {
    let host = host
        .rsplit_once(':')
        .map_or(host, |(name, _)| name)
        .to_ascii_lowercase();
    let backend = cluster.objects("ingresses").into_iter().find_map(|ingress| {
        let rules = ingress["spec"]["rules"].as_array()?.clone();
        let rule = rules.into_iter().find(|rule| rule["host"] == host.as_str())?;
        let namespace = ingress["metadata"]["namespace"].as_str()?.to_string();
        Some((namespace, rule["http"]["paths"][0]["backend"]["service"].clone()))
    });
    let Some((namespace, backend)) = backend else {
        return Err((404, format!("no Ingress has the host {host}")));
    };
    let service_name = backend["name"].as_str().unwrap_or_default();
    let Some(service) = cluster.object("services", &namespace, service_name) else {
        return Err((503, format!("the Service {service_name} does not exist")));
    };
    let port = service["spec"]["ports"].as_array().into_iter().flatten().find(|port| {
        backend["port"]["number"] == port["port"]
            || (backend["port"]["name"].is_string() && backend["port"]["name"] == port["name"])
    });
    let Some(port) = port else {
        return Err((503, format!("the Service {service_name} has no such port")));
    };
    let target = if port["targetPort"].is_null() {
        port["port"].clone()
    } else {
        port["targetPort"].clone()
    };
    let selector = service["spec"]["selector"].as_object().cloned().unwrap_or_default();
    let endpoint = cluster.objects("pods").into_iter().find_map(|pod| {
        let labels = &pod["metadata"]["labels"];
        let selected = !selector.is_empty() && selector.iter().all(|(k, v)| labels[k] == *v);
        let serving = pod["metadata"]["namespace"] == namespace.as_str()
            && pod["metadata"]["deletionTimestamp"].is_null()
            && is_ready(&pod);
        if !(selected && serving) {
            return None;
        }
        let port = named_port(&pod["spec"]["containers"][0], &target)?;
        let ip: std::net::IpAddr = pod["status"]["podIP"].as_str()?.parse().ok()?;
        Some(SocketAddr::new(ip, port))
    });
    endpoint.ok_or_else(|| (503, format!("the Service {service_name} has no ready endpoint")))
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// The stand-in, listening on 127.0.0.1; stops when dropped.
pub struct IngressStandIn {
    pub addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl IngressStandIn {
    pub fn start(port: u16, route: impl Fn(&str) -> Route + Send + Sync + 'static) -> IngressStandIn {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the ingress stand-in");
        let addr = listener.local_addr().expect("the stand-in's address");
        let stopping = Arc::new(AtomicBool::new(false));
        let route = Arc::new(route);
        let thread = {
            let stopping = stopping.clone();
            thread::spawn(move || {
                for client in listener.incoming() {
                    if stopping.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let route = route.clone();
                    thread::spawn(move || relay(client, &*route));
                }
            })
        };
        IngressStandIn {
            addr,
            stopping,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:port`, where a sandbox URL's requests are sent with its Host.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for IngressStandIn {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn relay(mut client: TcpStream, route: &dyn Fn(&str) -> Route) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    let mut head = Vec::new();
    let mut buffer = [0u8; 8192];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match client.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
        }
        if head.len() > 64 * 1024 {
            return answer(&mut client, 431, "request head too large");
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let host = text
        .lines()
        .skip(1)
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("host")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_default();
    let upstream = match route(&host) {
        Ok(addr) => TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| (502, e.to_string())),
        Err(refusal) => Err(refusal),
    };
    let mut upstream = match upstream {
        Ok(upstream) => upstream,
        Err((code, why)) => return answer(&mut client, code, &why),
    };
    let _ = client.set_read_timeout(None);
    if upstream.write_all(&one_request_per_connection(&head)).is_err() {
        return;
    }
    let (Ok(mut from_upstream), Ok(mut to_client)) = (upstream.try_clone(), client.try_clone()) else {
        return;
    };
    let back = thread::spawn(move || {
        let _ = std::io::copy(&mut from_upstream, &mut to_client);
        let _ = to_client.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut client, &mut upstream);
    let _ = upstream.shutdown(Shutdown::Write);
    let _ = back.join();
}

/// nginx routes each request by its Host: a connection the client keeps alive may carry the
/// next request to another sandbox. A relay routes per connection, so it asks the upstream to
/// close after its answer (the client then opens a new connection for the next request), but
/// for a WebSocket upgrade, which keeps the connection.
fn one_request_per_connection(head: &[u8]) -> Vec<u8> {
    let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
        return head.to_vec();
    };
    let text = String::from_utf8_lossy(&head[..end]);
    let is_header = |line: &str, name: &str| {
        line.split_once(':')
            .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
    };
    if text.lines().any(|line| is_header(line, "upgrade")) {
        return head.to_vec();
    }
    let mut rewritten: Vec<u8> = text
        .lines()
        .filter(|line| !is_header(line, "connection"))
        .flat_map(|line| [line.as_bytes(), b"\r\n"].concat())
        .collect();
    rewritten.extend_from_slice(b"Connection: close\r\n\r\n");
    rewritten.extend_from_slice(&head[end + 4..]);
    rewritten
}

fn answer(client: &mut TcpStream, code: u16, why: &str) {
    let reason = match code {
        404 => "Not Found",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        _ => "Service Temporarily Unavailable",
    };
    let body = format!("{code} {reason}: {why}\n");
    let _ = write!(
        client,
        "HTTP/1.1 {code} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}
