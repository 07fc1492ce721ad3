//! `network.nodeport-addresses`: which node addresses accept NodePort traffic, as kube-proxy's
//! `--nodeport-addresses`: `all` (every local address but loopback), `primary` (the Node's
//! InternalIPs) and CIDRs (the local addresses inside them). A family the list names no CIDR
//! or keyword for keeps all its addresses, as in kube-proxy.

use std::fmt;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One entry of `network.nodeport-addresses`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodePortAddress {
    /// Every local address except loopback.
    All,
    /// The Node object's InternalIP addresses.
    Primary,
    /// The local addresses inside this CIDR.
    Cidr(IpNet),
}

const HINT: &str = "use all, primary or a CIDR such as 192.168.1.0/24";

// === impl NodePortAddress ===

impl FromStr for NodePortAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        match s {
            "all" => return Ok(NodePortAddress::All),
            "primary" => return Ok(NodePortAddress::Primary),
            "localhost" => return Err(loopback(s)),
            _ => {}
        }
        let net: IpNet = s
            .parse()
            .map_err(|_| format!("{s:?} is not a node-port address: {HINT}"))?;
        if net.network().is_loopback() {
            return Err(loopback(s));
        }
        if net.prefix_len() == 0 {
            return Ok(NodePortAddress::All);
        }
        Ok(NodePortAddress::Cidr(net.trunc()))
    }
}

fn loopback(s: &str) -> String {
    format!("{s:?}: NodePorts on loopback addresses are not supported (CVE-2020-8558); {HINT}")
}

impl fmt::Display for NodePortAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodePortAddress::All => f.write_str("all"),
            NodePortAddress::Primary => f.write_str("primary"),
            NodePortAddress::Cidr(n) => write!(f, "{n}"),
        }
    }
}

impl Serialize for NodePortAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NodePortAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
