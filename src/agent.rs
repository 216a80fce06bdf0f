//! How the service reaches a sandbox's agent server: directly at its pod's address, as the
//! per-sandbox NetworkPolicy lets this service in, with no cluster DNS in between.

use std::net::IpAddr;

/// `http://{pod_ip}:{port}`, an IPv6 address in brackets; `None` for a pod without an address.
pub fn base_url(pod_ip: Option<&str>, port: u16) -> Option<String> {
    match pod_ip?.parse::<IpAddr>().ok()? {
        IpAddr::V4(ip) => Some(format!("http://{ip}:{port}")),
        IpAddr::V6(ip) => Some(format!("http://[{ip}]:{port}")),
    }
}

#[cfg(test)]
mod tests {
    use super::base_url;

    #[test]
    fn addresses_of_both_families() {
        assert_eq!(
            base_url(Some("10.244.1.7"), 60000).as_deref(),
            Some("http://10.244.1.7:60000")
        );
        assert_eq!(
            base_url(Some("fd00::7"), 60000).as_deref(),
            Some("http://[fd00::7]:60000")
        );
        assert_eq!(base_url(None, 60000), None);
        assert_eq!(base_url(Some("not an address"), 60000), None);
    }
}
