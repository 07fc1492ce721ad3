//! NetworkPolicy objects parsed into what enforcement needs, with the API's defaults applied
//! (protocol TCP, inferred policyTypes, a peer's namespace) and anything malformed turned into
//! "matches nothing", so a bad object can only deny, never open.

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Selector;

/// A transport protocol a policy port can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// TCP (the default).
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

/// One policy, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Its namespace; it selects pods only there.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Which pods of the namespace it applies to.
    pub pod_selector: Selector,
    /// Ingress rules, if the policy isolates selected pods for ingress (an empty list denies
    /// all ingress).
    pub ingress: Option<Vec<Rule>>,
    /// Egress rules, if the policy isolates selected pods for egress.
    pub egress: Option<Vec<Rule>>,
}

/// One ingress or egress rule: traffic to or from any of `peers` on any of `ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Empty means every source (ingress) or destination (egress).
    pub peers: Vec<Peer>,
    /// Empty means every port and protocol.
    pub ports: Vec<PortSpec>,
}

/// Who a rule admits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Peer {
    /// Pods matching `pods` in the namespaces `namespaces` names.
    Pods {
        /// Which namespaces.
        namespaces: NsScope,
        /// Which pods there.
        pods: Selector,
    },
    /// Addresses in `cidr` but in none of `except`.
    Block(IpBlock),
    /// A peer the API would reject: matches nothing.
    Invalid(String),
}

/// The namespaces a pod peer looks in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum NsScope {
    /// Only the policy's own namespace (no namespaceSelector).
    Same(String),
    /// Every namespace whose labels match.
    Matching(Selector),
}

/// An ipBlock.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct IpBlock {
    /// The block.
    pub cidr: IpNet,
    /// Holes in it.
    pub except: Vec<IpNet>,
}

/// One entry of a rule's `ports`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortSpec {
    /// The protocol.
    pub proto: Proto,
    /// Which ports of it.
    pub port: PortRef,
}

/// The port part of a [`PortSpec`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PortRef {
    /// Every port of the protocol.
    Any,
    /// `port` to `endPort`, inclusive (a single port has both equal).
    Range(u16, u16),
    /// A named container port, resolved against the destination pod.
    Named(String),
    /// Malformed (bad number, unknown protocol): matches nothing.
    Never,
}

// === impl Proto ===

impl Proto {
    /// The nftables keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }

    /// Parses the API's spelling; `None` (unset) is TCP.
    pub fn from_api(s: Option<&str>) -> Option<Proto> {
        match s {
            None | Some("TCP") => Some(Proto::Tcp),
            Some("UDP") => Some(Proto::Udp),
            Some("SCTP") => Some(Proto::Sctp),
            Some(_) => None,
        }
    }
}

// === impl Policy ===

impl Policy {
    /// Parses an API object. Objects without a namespace or name are dropped.
    pub fn from_api(np: &NetworkPolicy) -> Option<Policy> {
        let namespace = np.metadata.namespace.clone()?;
        let name = np.metadata.name.clone()?;
        let spec = np.spec.clone().unwrap_or_default();
        let pod_selector = spec
            .pod_selector
            .as_ref()
            .map(Selector::from_api)
            .unwrap_or_default();
        // policyTypes as the API server defaults it: Ingress always, Egress when there are
        // egress rules.
        let types: Vec<String> = spec.policy_types.clone().unwrap_or_else(|| {
            let mut t = vec!["Ingress".to_owned()];
            if spec.egress.as_ref().is_some_and(|e| !e.is_empty()) {
                t.push("Egress".to_owned());
            }
            t
        });
        let ingress = types.iter().any(|t| t == "Ingress").then(|| {
            spec.ingress
                .iter()
                .flatten()
                .map(|r| Rule::parse(&namespace, r.from.as_deref(), r.ports.as_deref()))
                .collect()
        });
        let egress = types.iter().any(|t| t == "Egress").then(|| {
            spec.egress
                .iter()
                .flatten()
                .map(|r| Rule::parse(&namespace, r.to.as_deref(), r.ports.as_deref()))
                .collect()
        });
        Some(Policy {
            namespace,
            name,
            pod_selector,
            ingress,
            egress,
        })
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

// === impl Rule ===

impl Rule {
    fn parse(
        ns: &str,
        peers: Option<&[NetworkPolicyPeer]>,
        ports: Option<&[NetworkPolicyPort]>,
    ) -> Rule {
        Rule {
            peers: peers
                .unwrap_or_default()
                .iter()
                .map(|p| Peer::parse(ns, p))
                .collect(),
            ports: ports
                .unwrap_or_default()
                .iter()
                .map(PortSpec::parse)
                .collect(),
        }
    }
}

// === impl Peer ===

impl Peer {
    fn parse(ns: &str, p: &NetworkPolicyPeer) -> Peer {
        match (&p.ip_block, &p.namespace_selector, &p.pod_selector) {
            (Some(b), None, None) => IpBlock::parse(b).map_or_else(Peer::Invalid, Peer::Block),
            (Some(_), _, _) => Peer::Invalid("ipBlock combined with a selector".into()),
            (None, None, None) => Peer::Invalid("empty peer".into()),
            (None, nss, ps) => Peer::Pods {
                namespaces: match nss {
                    Some(s) => NsScope::Matching(Selector::from_api(s)),
                    None => NsScope::Same(ns.to_owned()),
                },
                pods: ps.as_ref().map(Selector::from_api).unwrap_or_default(),
            },
        }
    }
}

// === impl IpBlock ===

impl IpBlock {
    fn parse(b: &IPBlock) -> Result<IpBlock, String> {
        let net = |s: &str| {
            s.trim()
                .parse::<IpNet>()
                .map(|n| n.trunc())
                .map_err(|_| format!("ipBlock {s:?} is not a CIDR"))
        };
        let cidr = net(&b.cidr)?;
        let except = b
            .except
            .iter()
            .flatten()
            .map(|e| net(e))
            .collect::<Result<Vec<_>, _>>()?;
        if except
            .iter()
            .any(|e| e.addr().is_ipv4() != cidr.addr().is_ipv4())
        {
            return Err(format!("ipBlock {cidr}: except of another family"));
        }
        Ok(IpBlock { cidr, except })
    }
}

// === impl PortSpec ===

impl PortSpec {
    fn parse(p: &NetworkPolicyPort) -> PortSpec {
        let Some(proto) = Proto::from_api(p.protocol.as_deref()) else {
            return PortSpec {
                proto: Proto::Tcp,
                port: PortRef::Never,
            };
        };
        let number = |n: i32| u16::try_from(n).ok().filter(|n| *n > 0);
        let port = match (&p.port, p.end_port) {
            (None, _) => PortRef::Any,
            (Some(IntOrString::Int(n)), None) => {
                number(*n).map_or(PortRef::Never, |n| PortRef::Range(n, n))
            }
            (Some(IntOrString::Int(n)), Some(end)) => match (number(*n), number(end)) {
                (Some(a), Some(b)) if a <= b => PortRef::Range(a, b),
                _ => PortRef::Never,
            },
            (Some(IntOrString::String(name)), None) => PortRef::Named(name.clone()),
            // endPort with a named port is invalid.
            (Some(IntOrString::String(_)), Some(_)) => PortRef::Never,
        };
        PortSpec { proto, port }
    }
}
