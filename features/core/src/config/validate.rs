//! Whole-document validation and the rules for changing a live config.

use ipnet::IpNet;

use super::{ClusterConfig, ConfigError, Mtu, PoolRange};
use crate::FeatureId;

// === impl ClusterConfig ===

impl ClusterConfig {
    /// Checks every rule that a single document must satisfy.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_cidrs()?;
        self.validate_network()?;
        self.validate_dns()?;
        self.validate_load_balancer()?;
        self.validate_dependencies()
    }

    fn validate_cidrs(&self) -> Result<(), ConfigError> {
        for (key, list) in [
            ("pod-cidr", &self.pod_cidr),
            ("service-cidr", &self.service_cidr),
        ] {
            for net in list.cidrs() {
                let (min, max) = match (key, net) {
                    ("pod-cidr", IpNet::V4(_)) => (8, 24),
                    ("pod-cidr", IpNet::V6(_)) => (32, 112),
                    (_, IpNet::V4(_)) => (12, 28),
                    (_, IpNet::V6(_)) => (108, 124),
                };
                if net.prefix_len() < min || net.prefix_len() > max {
                    return Err(invalid(
                        key,
                        &list.to_string(),
                        format!("{net}: the prefix length must be between /{min} and /{max}"),
                    ));
                }
            }
        }
        for p in self.pod_cidr.cidrs() {
            for s in self.service_cidr.cidrs() {
                if p.contains(&s.network()) || s.contains(&p.network()) {
                    return Err(invalid(
                        "service-cidr",
                        &self.service_cidr.to_string(),
                        format!("{s} overlaps pod-cidr {p}; choose ranges that do not overlap"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_network(&self) -> Result<(), ConfigError> {
        let n = &self.network;
        if n.vxlan_port == 0 {
            return Err(invalid(
                "network.vxlan-port",
                "0",
                "use a UDP port between 1 and 65535".into(),
            ));
        }
        if let Mtu::Bytes(m) = n.mtu
            && !(1280..=65_535).contains(&m)
        {
            return Err(invalid(
                "network.mtu",
                &m.to_string(),
                "use auto, or a number of bytes between 1280 and 65535".into(),
            ));
        }
        if n.nodeport_addresses.is_empty() {
            return Err(invalid(
                "network.nodeport-addresses",
                "",
                "list at least one of all, primary or a CIDR (all is the default)".into(),
            ));
        }
        Ok(())
    }

    fn validate_dns(&self) -> Result<(), ConfigError> {
        let d = &self.dns;
        if !is_dns_name(&d.cluster_domain) {
            return Err(invalid(
                "dns.cluster-domain",
                &d.cluster_domain,
                "use a DNS name such as cluster.local (letters, digits, '-', dots)".into(),
            ));
        }
        if let Some(ip) = d.service_ip
            && !self.service_cidr.contains(&ip)
        {
            return Err(invalid(
                "dns.service-ip",
                &ip.to_string(),
                format!("it must lie inside service-cidr {}", self.service_cidr),
            ));
        }
        if d.ttl > 3600 {
            return Err(invalid(
                "dns.ttl",
                &d.ttl.to_string(),
                "use 0 to 3600 seconds".into(),
            ));
        }
        Ok(())
    }

    fn validate_load_balancer(&self) -> Result<(), ConfigError> {
        let lb = &self.load_balancer;
        for range in &lb.cidrs {
            let addr = match range {
                PoolRange::Cidr(n) => n.network(),
                PoolRange::Range { start, .. } => *start,
            };
            if self.pod_cidr.contains(&addr) || self.service_cidr.contains(&addr) {
                return Err(invalid(
                    "load-balancer.cidrs",
                    &range.to_string(),
                    "it overlaps the pod or service CIDR; use addresses of the node network".into(),
                ));
            }
        }
        for name in &lb.l2_interfaces {
            if name.is_empty()
                || name.len() > 15
                || name.contains('/')
                || name.contains(char::is_whitespace)
            {
                return Err(invalid(
                    "load-balancer.l2-interfaces",
                    name,
                    "interface names are 1-15 characters without '/' or spaces".into(),
                ));
            }
        }
        if lb.bgp_mode {
            if lb.bgp_local_asn == 0 {
                return Err(invalid(
                    "load-balancer.bgp-local-asn",
                    "0",
                    "bgp-mode needs our ASN, e.g. 64512".into(),
                ));
            }
            if lb.bgp_peer_address.is_none() {
                return Err(invalid(
                    "load-balancer.bgp-peer-address",
                    "",
                    "bgp-mode needs the peer's address".into(),
                ));
            }
            if lb.bgp_peer_asn == 0 {
                return Err(invalid(
                    "load-balancer.bgp-peer-asn",
                    "0",
                    "bgp-mode needs the peer's ASN".into(),
                ));
            }
        }
        if lb.bgp_peer_port == 0 {
            return Err(invalid(
                "load-balancer.bgp-peer-port",
                "0",
                "use a TCP port between 1 and 65535".into(),
            ));
        }
        Ok(())
    }

    fn validate_dependencies(&self) -> Result<(), ConfigError> {
        for f in FeatureId::ALL {
            if !self.enabled(f) {
                continue;
            }
            for dep in f.depends_on() {
                if !self.enabled(*dep) {
                    return Err(ConfigError::Dependency(format!(
                        "{f} needs {dep}: enable {dep} first (knet enable {dep}), or disable {f}"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Checks that `new` may replace `old` in a bootstrapped cluster.
pub fn check_update(old: &ClusterConfig, new: &ClusterConfig) -> Result<(), ConfigError> {
    if old.pod_cidr != new.pod_cidr {
        return Err(ConfigError::Immutable {
            key: "pod-cidr",
            current: old.pod_cidr.to_string(),
            wanted: new.pod_cidr.to_string(),
        });
    }
    if old.service_cidr != new.service_cidr {
        return Err(ConfigError::Immutable {
            key: "service-cidr",
            current: old.service_cidr.to_string(),
            wanted: new.service_cidr.to_string(),
        });
    }
    // Disabling a feature that an enabled one needs gets a message naming the dependant.
    for f in FeatureId::ALL {
        if old.enabled(f)
            && !new.enabled(f)
            && let Some(user) = FeatureId::ALL
                .into_iter()
                .find(|u| new.enabled(*u) && u.depends_on().contains(&f))
        {
            return Err(ConfigError::Dependency(format!(
                "{user} needs {f}: disable {user} first (knet disable {user}), then {f}"
            )));
        }
    }
    new.validate()
}

fn invalid(key: &str, value: &str, reason: String) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_owned(),
        value: value.to_owned(),
        reason,
    }
}

/// A DNS name: dot-separated labels of letters, digits and inner hyphens, each 1..=63 bytes.
pub(crate) fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}
