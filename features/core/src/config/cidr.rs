//! CIDR lists (one per IP family) and load-balancer pool ranges.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One or two CIDRs, at most one per IP family, written `10.1.0.0/16` or `10.1.0.0/16,fd01::/108`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidrList(Vec<IpNet>);

/// A load-balancer pool entry: a CIDR or an inclusive `start-stop` range of one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolRange {
    /// Every address of a CIDR.
    Cidr(IpNet),
    /// An inclusive range.
    Range {
        /// First address.
        start: IpAddr,
        /// Last address (not below `start`).
        stop: IpAddr,
    },
}

// === impl CidrList ===

impl CidrList {
    /// The CIDRs, in the order given (the first is the primary family).
    pub fn cidrs(&self) -> &[IpNet] {
        &self.0
    }

    /// The IPv4 CIDR, if any.
    pub fn v4(&self) -> Option<IpNet> {
        self.0.iter().copied().find(|n| matches!(n, IpNet::V4(_)))
    }

    /// The IPv6 CIDR, if any.
    pub fn v6(&self) -> Option<IpNet> {
        self.0.iter().copied().find(|n| matches!(n, IpNet::V6(_)))
    }

    /// Whether any CIDR of the list contains `ip`.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }
}

impl FromStr for CidrList {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut nets = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            nets.push(parse_cidr(part)?);
        }
        match nets.as_slice() {
            [] => Err("expected one CIDR, or two (one IPv4, one IPv6) separated by a comma".into()),
            [_] => Ok(CidrList(nets)),
            [a, b] if a.addr().is_ipv4() != b.addr().is_ipv4() => Ok(CidrList(nets)),
            [_, _] => Err("two CIDRs must be of different families (one IPv4, one IPv6)".into()),
            _ => Err("at most two CIDRs (one IPv4, one IPv6)".into()),
        }
    }
}

/// Parses a CIDR and insists that host bits are zero, suggesting the network address if not.
pub(crate) fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let net: IpNet = s
        .parse()
        .map_err(|_| format!("{s:?} is not a CIDR such as 10.1.0.0/16 or fd01::/108"))?;
    if net.trunc() != net {
        return Err(format!(
            "{s} has host bits set; did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
}

impl fmt::Display for CidrList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

impl Serialize for CidrList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CidrList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

// === impl PoolRange ===

impl PoolRange {
    /// Whether this entry is IPv4.
    pub fn is_ipv4(&self) -> bool {
        match self {
            PoolRange::Cidr(n) => n.addr().is_ipv4(),
            PoolRange::Range { start, .. } => start.is_ipv4(),
        }
    }
}

impl FromStr for PoolRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.contains('/') {
            return parse_cidr(s).map(PoolRange::Cidr);
        }
        let Some((a, b)) = s.split_once('-') else {
            return Err(format!(
                "{s:?} is neither a CIDR (192.0.2.0/28) nor a range (192.0.2.10-192.0.2.20)"
            ));
        };
        let start: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("{a:?} is not an IP address"))?;
        let stop: IpAddr = b
            .trim()
            .parse()
            .map_err(|_| format!("{b:?} is not an IP address"))?;
        if start.is_ipv4() != stop.is_ipv4() {
            return Err(format!("range {s} mixes IPv4 and IPv6"));
        }
        if stop < start {
            return Err(format!("range {s} ends before it starts"));
        }
        Ok(PoolRange::Range { start, stop })
    }
}

impl fmt::Display for PoolRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolRange::Cidr(n) => write!(f, "{n}"),
            PoolRange::Range { start, stop } => write!(f, "{start}-{stop}"),
        }
    }
}

impl Serialize for PoolRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PoolRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
