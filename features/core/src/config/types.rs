//! The configuration document's types and their defaults.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{CidrList, ConfigError, NodePortAddress, PoolRange};
use crate::FeatureId;

/// The whole cluster configuration. Omitted keys take their defaults; unknown keys are errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct ClusterConfig {
    /// Pod CIDR(s), immutable after bootstrap.
    pub pod_cidr: CidrList,
    /// Service CIDR(s), immutable after bootstrap.
    pub service_cidr: CidrList,
    /// The `network` feature.
    pub network: NetworkConfig,
    /// The `network-policy` feature.
    pub network_policy: NetworkPolicyConfig,
    /// The `dns` feature.
    pub dns: DnsConfig,
    /// The `load-balancer` feature.
    pub load_balancer: LoadBalancerConfig,
    /// The `ingress` feature.
    pub ingress: IngressConfig,
    /// The `gateway` feature.
    pub gateway: GatewayConfig,
}

/// How pods on different nodes reach each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkMode {
    /// Native routes where the peer node is on-link, VXLAN otherwise.
    Auto,
    /// Direct routes via the peer's node IP (all nodes on one L2 segment).
    Native,
    /// VXLAN overlay to every peer.
    Vxlan,
}

/// An upstream DNS server: `IP` (port 53) or `IP:port` (`[IPv6]:port`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nameserver(pub SocketAddr);

/// Pod interface MTU: detected from the underlay, or fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mtu {
    /// The underlay's MTU minus encapsulation overhead.
    Auto,
    /// A fixed MTU in bytes.
    Bytes(u32),
}

/// `network.*`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct NetworkConfig {
    /// Whether the feature runs.
    pub enabled: bool,
    /// Cross-node routing mode.
    pub mode: NetworkMode,
    /// UDP port of the VXLAN overlay.
    pub vxlan_port: u16,
    /// Pod MTU.
    pub mtu: Mtu,
    /// The node addresses that accept NodePort traffic.
    pub nodeport_addresses: Vec<NodePortAddress>,
}

/// `network-policy.*`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct NetworkPolicyConfig {
    /// Whether the feature runs.
    pub enabled: bool,
}

/// `dns.*`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct DnsConfig {
    /// Whether the feature runs.
    pub enabled: bool,
    /// The cluster domain.
    pub cluster_domain: String,
    /// The cluster DNS Service IP; unset means the 10th address of the (first) service CIDR.
    pub service_ip: Option<IpAddr>,
    /// Upstream resolvers for names outside the cluster; empty means each node's resolv.conf.
    pub upstream_nameservers: Vec<Nameserver>,
    /// TTL of cluster records, in seconds.
    pub ttl: u32,
}

/// `load-balancer.*`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct LoadBalancerConfig {
    /// Whether the feature runs.
    pub enabled: bool,
    /// Address pool: CIDRs and/or `start-stop` ranges.
    pub cidrs: Vec<PoolRange>,
    /// Announce addresses with ARP/NDP.
    pub l2_mode: bool,
    /// Interfaces to announce on; empty means all.
    pub l2_interfaces: Vec<String>,
    /// Announce addresses over BGP.
    pub bgp_mode: bool,
    /// Our ASN.
    pub bgp_local_asn: u32,
    /// The BGP peer.
    pub bgp_peer_address: Option<IpAddr>,
    /// The peer's ASN.
    pub bgp_peer_asn: u32,
    /// The peer's TCP port.
    pub bgp_peer_port: u16,
}

/// `ingress.*`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct IngressConfig {
    /// Whether the feature runs.
    pub enabled: bool,
    /// Name of a TLS Secret in kube-system used when an Ingress names none.
    pub default_tls_secret: String,
    /// Expect the PROXY protocol on the ingress listeners.
    pub enable_proxy_protocol: bool,
}

/// `gateway.*`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct GatewayConfig {
    /// Whether the feature runs.
    pub enabled: bool,
}

// === impl ClusterConfig ===

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            pod_cidr: "10.1.0.0/16".parse().expect("valid default pod CIDR"),
            service_cidr: "10.152.183.0/24"
                .parse()
                .expect("valid default service CIDR"),
            network: NetworkConfig::default(),
            network_policy: NetworkPolicyConfig::default(),
            dns: DnsConfig::default(),
            load_balancer: LoadBalancerConfig::default(),
            ingress: IngressConfig::default(),
            gateway: GatewayConfig::default(),
        }
    }
}

impl ClusterConfig {
    /// Parses a YAML document strictly (unknown keys fail) and validates it.
    pub fn from_yaml(text: &str) -> Result<ClusterConfig, ConfigError> {
        let cfg: ClusterConfig = if text.trim().is_empty() {
            ClusterConfig::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// The document as YAML.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_default()
    }

    /// Whether a feature is switched on.
    pub fn enabled(&self, id: FeatureId) -> bool {
        match id {
            FeatureId::Network => self.network.enabled,
            FeatureId::NetworkPolicy => self.network_policy.enabled,
            FeatureId::Dns => self.dns.enabled,
            FeatureId::LoadBalancer => self.load_balancer.enabled,
            FeatureId::Ingress => self.ingress.enabled,
            FeatureId::Gateway => self.gateway.enabled,
        }
    }

    /// Switches a feature on or off (validate afterwards).
    pub fn set_enabled(&mut self, id: FeatureId, on: bool) {
        match id {
            FeatureId::Network => self.network.enabled = on,
            FeatureId::NetworkPolicy => self.network_policy.enabled = on,
            FeatureId::Dns => self.dns.enabled = on,
            FeatureId::LoadBalancer => self.load_balancer.enabled = on,
            FeatureId::Ingress => self.ingress.enabled = on,
            FeatureId::Gateway => self.gateway.enabled = on,
        }
    }

    /// The cluster DNS Service IP: `dns.service-ip`, or the 10th address of the first service CIDR.
    pub fn dns_service_ip(&self) -> IpAddr {
        if let Some(ip) = self.dns.service_ip {
            return ip;
        }
        nth_address(self.service_cidr.cidrs()[0], 10)
    }

    /// The `kubernetes` Service's ClusterIP: the first address of the first service CIDR.
    pub fn kubernetes_service_ip(&self) -> IpAddr {
        nth_address(self.service_cidr.cidrs()[0], 1)
    }
}

/// The `n`th address of a network (0 is the network address itself).
pub(crate) fn nth_address(net: ipnet::IpNet, n: u32) -> IpAddr {
    match net {
        ipnet::IpNet::V4(v4) => IpAddr::V4(std::net::Ipv4Addr::from(
            u32::from(v4.network()).saturating_add(n),
        )),
        ipnet::IpNet::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(
            u128::from(v6.network()).saturating_add(u128::from(n)),
        )),
    }
}

// === defaults ===

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            enabled: true,
            mode: NetworkMode::Auto,
            vxlan_port: 8472,
            mtu: Mtu::Auto,
            nodeport_addresses: vec![NodePortAddress::All],
        }
    }
}

impl Default for NetworkPolicyConfig {
    fn default() -> Self {
        NetworkPolicyConfig { enabled: true }
    }
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            enabled: true,
            cluster_domain: "cluster.local".into(),
            service_ip: None,
            upstream_nameservers: Vec::new(),
            ttl: 30,
        }
    }
}

impl Default for LoadBalancerConfig {
    fn default() -> Self {
        LoadBalancerConfig {
            enabled: false,
            cidrs: Vec::new(),
            l2_mode: true,
            l2_interfaces: Vec::new(),
            bgp_mode: false,
            bgp_local_asn: 0,
            bgp_peer_address: None,
            bgp_peer_asn: 0,
            bgp_peer_port: 179,
        }
    }
}

// === impl Mtu ===

impl Serialize for Mtu {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Mtu::Auto => s.serialize_str("auto"),
            Mtu::Bytes(n) => s.serialize_u32(*n),
        }
    }
}

impl<'de> Deserialize<'de> for Mtu {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(u32),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) => Ok(Mtu::Bytes(n)),
            Raw::Text(t) if t == "auto" => Ok(Mtu::Auto),
            Raw::Text(t) => t.parse().map(Mtu::Bytes).map_err(|_| {
                serde::de::Error::custom(format!(
                    "{t:?} is not an MTU: use auto or a number of bytes"
                ))
            }),
        }
    }
}

// === impl Nameserver ===

impl FromStr for Nameserver {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Nameserver(SocketAddr::new(ip, 53)));
        }
        s.parse::<SocketAddr>().map(Nameserver).map_err(|_| {
            format!("{s:?} is not a nameserver: use an IP (9.9.9.9) or IP:port ([2620:fe::fe]:53)")
        })
    }
}

impl fmt::Display for Nameserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.port() == 53 {
            write!(f, "{}", self.0.ip())
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl Serialize for Nameserver {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Nameserver {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
