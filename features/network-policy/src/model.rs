//! What enforcement reads from the cluster: pods (labels, IPs, node, named ports), namespace
//! labels and parsed policies. Built from the API objects; tests build it directly.

mod policy;
mod selector;

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use knet_core::slim_pod::SlimPod;

pub use policy::{IpBlock, NsScope, Peer, Policy, PortRef, PortSpec, Proto, Rule};
pub use selector::{Expr, Labels, Selector};

/// The label the API server puts on every namespace, holding its name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// One pod, as far as policy cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: Labels,
    /// Its IPs (IPv4 and/or IPv6); empty until the CNI gave it some.
    pub ips: Vec<IpAddr>,
    /// The node it runs on.
    pub node: Option<String>,
    /// Host-network pods share the node's IPs: never isolated, never a peer.
    pub host_network: bool,
    /// Named container ports.
    pub ports: Vec<NamedPort>,
}

/// A named container port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPort {
    /// The name policies use.
    pub name: String,
    /// Its protocol.
    pub proto: Proto,
    /// The number.
    pub port: u16,
}

/// The whole input of one compile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cluster {
    /// Every pod that can send or receive (running, with IPs, not host-network).
    pub pods: Vec<PodInfo>,
    /// Namespace name → labels.
    pub namespaces: BTreeMap<String, Labels>,
    /// Every policy.
    pub policies: Vec<Policy>,
}

// === impl PodInfo ===

impl PodInfo {
    /// Parses an API object; `None` for pods that cannot send or receive as themselves
    /// (finished, host-network, no IP yet).
    pub fn from_api(p: &SlimPod) -> Option<PodInfo> {
        let namespace = p.metadata.namespace.clone()?;
        let name = p.metadata.name.clone()?;
        let spec = p.spec.as_ref()?;
        let status = p.status.as_ref()?;
        if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
            return None;
        }
        let host_network = spec.host_network == Some(true);
        let mut ips: Vec<IpAddr> = status
            .pod_ips
            .iter()
            .flatten()
            .filter_map(|i| i.ip.parse().ok())
            .collect();
        if ips.is_empty() {
            ips.extend(
                status
                    .pod_ip
                    .as_deref()
                    .and_then(|i| i.parse::<IpAddr>().ok()),
            );
        }
        ips.sort();
        ips.dedup();
        let ports = spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|cp| {
                Some(NamedPort {
                    name: cp.name.clone()?,
                    proto: Proto::from_api(cp.protocol.as_deref())?,
                    port: u16::try_from(cp.container_port).ok()?,
                })
            })
            .collect();
        Some(PodInfo {
            namespace,
            name,
            labels: p.metadata.labels.clone().unwrap_or_default(),
            ips,
            node: spec.node_name.clone(),
            host_network,
            ports,
        })
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Whether policy can see this pod at all (as a target or a peer).
    pub fn addressable(&self) -> bool {
        !self.host_network && !self.ips.is_empty()
    }

    /// The number of the named port `name` for `proto`, if the pod has one.
    pub fn named_port(&self, name: &str, proto: Proto) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.name == name && p.proto == proto)
            .map(|p| p.port)
    }
}

// === impl Cluster ===

impl Cluster {
    /// Builds the model from API objects.
    pub fn from_api<'a>(
        policies: impl IntoIterator<Item = &'a NetworkPolicy>,
        pods: impl IntoIterator<Item = &'a SlimPod>,
        namespaces: impl IntoIterator<Item = &'a Namespace>,
    ) -> Cluster {
        let mut pods: Vec<PodInfo> = pods.into_iter().filter_map(PodInfo::from_api).collect();
        pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        let mut policies: Vec<Policy> = policies.into_iter().filter_map(Policy::from_api).collect();
        policies.sort_by_key(Policy::key);
        let namespaces = namespaces
            .into_iter()
            .filter_map(|n| {
                Some((
                    n.metadata.name.clone()?,
                    n.metadata.labels.clone().unwrap_or_default(),
                ))
            })
            .collect();
        Cluster {
            pods,
            namespaces,
            policies,
        }
    }

    /// The labels of namespace `ns`, always including [`NAMESPACE_NAME_LABEL`] (set by the API
    /// server; added here for namespaces not seen yet).
    pub fn namespace_labels(&self, ns: &str) -> Labels {
        let mut l = self.namespaces.get(ns).cloned().unwrap_or_default();
        l.entry(NAMESPACE_NAME_LABEL.to_owned())
            .or_insert_with(|| ns.to_owned());
        l
    }

    /// Whether pod `p` is a member of pod peer (`scope`, `pods`).
    pub fn in_pod_peer(&self, p: &PodInfo, scope: &NsScope, pods: &Selector) -> bool {
        let ns_ok = match scope {
            NsScope::Same(ns) => &p.namespace == ns,
            NsScope::Matching(sel) => sel.matches(&self.namespace_labels(&p.namespace)),
        };
        ns_ok && pods.matches(&p.labels)
    }
}
