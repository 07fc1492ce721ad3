//! Finding the node's real upstream resolvers in resolv.conf.
//!
//! The node's `/etc/resolv.conf` often names a local stub (systemd-resolved's 127.0.0.53) rather
//! than the resolvers it forwards to. Forwarding to a stub adds a hop and a second cache, and can
//! loop if the stub was itself pointed at the cluster DNS. So when `/etc/resolv.conf` names only
//! loopback addresses, the real list is read from systemd-resolved's
//! `/run/systemd/resolve/resolv.conf`; loopback resolvers are used only when nothing else exists.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

/// The node's resolv.conf.
pub const ETC_RESOLV_CONF: &str = "/etc/resolv.conf";
/// systemd-resolved's list of the upstreams it uses (not its stub).
pub const SYSTEMD_RESOLV_CONF: &str = "/run/systemd/resolve/resolv.conf";
/// CoreDNS's forward plugin reads at most this many.
pub const MAX_UPSTREAMS: usize = 15;

/// The `nameserver` addresses of a resolv.conf, in order (port 53).
pub fn parse(text: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        // `fe80::1%eth0`: the zone id is dropped; link-local upstreams are not supported.
        let Some(addr) = words.next().map(|a| a.split('%').next().unwrap_or(a)) else {
            continue;
        };
        if let Ok(ip) = addr.parse::<IpAddr>() {
            let sa = SocketAddr::new(ip, 53);
            if !out.contains(&sa) {
                out.push(sa);
            }
        }
    }
    out.truncate(MAX_UPSTREAMS);
    out
}

/// The upstreams to use given the two files' contents (either may be missing).
pub fn choose(etc: Option<&str>, systemd: Option<&str>) -> Vec<SocketAddr> {
    let etc = etc.map(parse).unwrap_or_default();
    let (loopback, real): (Vec<SocketAddr>, Vec<SocketAddr>) =
        etc.iter().partition(|a| a.ip().is_loopback());
    if loopback.is_empty() {
        return real;
    }
    let from_systemd: Vec<SocketAddr> = systemd
        .map(parse)
        .unwrap_or_default()
        .into_iter()
        .filter(|a| !a.ip().is_loopback())
        .collect();
    if !from_systemd.is_empty() {
        return from_systemd;
    }
    if !real.is_empty() {
        return real;
    }
    // Only a local resolver exists: better than nothing (knet runs in the host network
    // namespace, so 127.0.0.53 is reachable, unlike from a DNS pod).
    loopback
}

/// Reads the node's upstreams from the standard locations.
pub fn node_upstreams() -> Vec<SocketAddr> {
    node_upstreams_from(Path::new(ETC_RESOLV_CONF), Path::new(SYSTEMD_RESOLV_CONF))
}

/// Reads upstreams from the given files (for tests).
pub fn node_upstreams_from(etc: &Path, systemd: &Path) -> Vec<SocketAddr> {
    let etc = std::fs::read_to_string(etc).ok();
    let systemd = std::fs::read_to_string(systemd).ok();
    choose(etc.as_deref(), systemd.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter()
            .map(|a| SocketAddr::new(a.parse().expect("ip"), 53))
            .collect()
    }

    #[test]
    fn parses_nameservers() {
        let text = "# comment\nsearch example.com\nnameserver 10.0.0.2 # office\nnameserver fe80::1%eth0\n\
                    nameserver  2001:db8::53\nnameserver bogus\noptions edns0\nnameserver 10.0.0.2\n";
        assert_eq!(parse(text), addrs(&["10.0.0.2", "fe80::1", "2001:db8::53"]));
    }

    #[test]
    fn skips_the_systemd_stub_for_real_upstreams() {
        let stub = "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n";
        let real = "nameserver 192.0.2.1\nnameserver 192.0.2.2\n";
        assert_eq!(
            choose(Some(stub), Some(real)),
            addrs(&["192.0.2.1", "192.0.2.2"])
        );
        // No systemd file: keep the stub rather than nothing.
        assert_eq!(choose(Some(stub), None), addrs(&["127.0.0.53"]));
        // Mixed: the stub is dropped.
        assert_eq!(
            choose(Some("nameserver 127.0.0.53\nnameserver 192.0.2.9\n"), None),
            addrs(&["192.0.2.9"])
        );
        // No stub: /etc wins even when systemd has a file.
        assert_eq!(
            choose(Some("nameserver 192.0.2.7\n"), Some(real)),
            addrs(&["192.0.2.7"])
        );
        assert_eq!(choose(None, Some(real)), Vec::<SocketAddr>::new());
    }

    #[test]
    fn reads_files() {
        let dir = tempfile::tempdir().expect("tmp");
        let etc = dir.path().join("resolv.conf");
        let sd = dir.path().join("sd.conf");
        std::fs::write(&etc, "nameserver 127.0.0.53\n").expect("write");
        std::fs::write(&sd, "nameserver 198.51.100.1\n").expect("write");
        assert_eq!(node_upstreams_from(&etc, &sd), addrs(&["198.51.100.1"]));
    }
}
