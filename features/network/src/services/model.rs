//! The desired service table, computed from Services and EndpointSlices exactly as kube-proxy
//! does (pure: no kernel, no API calls).
//!
//! One [`ServicePort`] per (Service, port, IP family). Endpoints come from the EndpointSlices
//! labelled `kubernetes.io/service-name`, matched to the Service port by port name and protocol
//! (so `targetPort` by name resolves per endpoint, as the EndpointSlice controller wrote it).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Services carrying this label are handled by another proxy, never by us (kube-proxy's rule).
pub const SERVICE_PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";
/// kube-proxy's default ClientIP affinity timeout (3 h).
pub const DEFAULT_AFFINITY_SECONDS: u32 = 10_800;

/// An IP family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP (only programmed when the kernel has it).
    Sctp,
}

/// One backend address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    /// Pod (or other) address.
    pub ip: IpAddr,
    /// Target port, resolved per endpoint.
    pub port: u16,
    /// Whether it runs on this node.
    pub local: bool,
}

/// Where traffic of one kind (cluster or external) goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Load-balance over these endpoints (never empty).
    Endpoints(Vec<Endpoint>),
    /// The Service has no usable endpoint at all: reject (ICMP unreachable / TCP reset).
    Reject,
    /// A traffic policy `Local` with no local endpoint: drop, like kube-proxy.
    Drop,
}

/// Identity of a service port: namespace, name, port name, protocol, family.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortKey {
    /// Namespace.
    pub namespace: String,
    /// Service name.
    pub name: String,
    /// Port name ("" when the Service has a single unnamed port).
    pub port_name: String,
    /// Protocol.
    pub proto: Proto,
    /// IP family.
    pub family: Family,
}

/// Everything the dataplane needs for one (Service, port, family).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// Identity.
    pub key: PortKey,
    /// The ClusterIP of this family (None for a family the Service lacks a ClusterIP in but has
    /// external addresses for).
    pub cluster_ip: Option<IpAddr>,
    /// The Service port.
    pub port: u16,
    /// The NodePort, if any.
    pub node_port: Option<u16>,
    /// externalIPs and status.loadBalancer.ingress IPs of this family.
    pub external_ips: Vec<IpAddr>,
    /// The load-balancer ingress IPs among them.
    pub lb_ips: Vec<IpAddr>,
    /// `loadBalancerSourceRanges` of this family: traffic to the LB IPs from elsewhere is
    /// dropped. Empty means no restriction (also when a range is `0.0.0.0/0` or `::/0`).
    pub source_ranges: Vec<IpNet>,
    /// ClientIP affinity timeout, if affinity is on.
    pub affinity: Option<u32>,
    /// externalTrafficPolicy: Local.
    pub external_local: bool,
    /// internalTrafficPolicy: Local.
    pub internal_local: bool,
    /// healthCheckNodePort (LoadBalancer with externalTrafficPolicy Local).
    pub health_check_node_port: Option<u16>,
    /// Traffic to the ClusterIP.
    pub cluster: Target,
    /// Traffic to NodePorts, external and load-balancer IPs.
    pub external: Target,
    /// Local endpoints usable for external traffic (what the health check reports).
    pub local_endpoints: usize,
}

/// The whole desired table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceTable {
    /// Sorted by key.
    pub ports: Vec<ServicePort>,
    /// Ports skipped because the kernel lacks their protocol (for the log).
    pub skipped: Vec<PortKey>,
}

/// A raw endpoint with its conditions, before selection.
#[derive(Debug, Clone)]
struct Candidate {
    ep: Endpoint,
    ready: bool,
    serving: bool,
    terminating: bool,
}

// === impl Proto ===

impl Proto {
    /// Parses a Kubernetes protocol name (default TCP).
    pub fn parse(s: Option<&str>) -> Option<Proto> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Proto::Tcp),
            "UDP" => Some(Proto::Udp),
            "SCTP" => Some(Proto::Sctp),
            _ => None,
        }
    }

    /// nft's name.
    pub fn nft(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

// === impl Family ===

impl Family {
    /// The family of an address.
    pub fn of(ip: IpAddr) -> Family {
        if ip.is_ipv4() { Family::V4 } else { Family::V6 }
    }

    fn slice_type(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

// === impl ServiceTable ===

impl ServiceTable {
    /// Computes the table for node `node` from every Service and EndpointSlice. `sctp` says
    /// whether the kernel supports SCTP (ports of that protocol are skipped otherwise).
    pub fn build<'a>(
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
        node: &str,
        sctp: bool,
    ) -> ServiceTable {
        // (namespace, service) → slices.
        let mut by_service: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
        for s in slices {
            let labels = s.metadata.labels.as_ref();
            let (Some(ns), Some(svc)) = (
                s.metadata.namespace.clone(),
                labels.and_then(|l| l.get(SERVICE_NAME_LABEL)).cloned(),
            ) else {
                continue;
            };
            by_service.entry((ns, svc)).or_default().push(s);
        }
        let mut table = ServiceTable::default();
        for svc in services {
            let (Some(ns), Some(name)) = (&svc.metadata.namespace, &svc.metadata.name) else {
                continue;
            };
            let slices = by_service
                .get(&(ns.clone(), name.clone()))
                .map(Vec::as_slice)
                .unwrap_or_default();
            add_service(&mut table, svc, ns, name, slices, node, sctp);
        }
        table.ports.sort_by(|a, b| a.key.cmp(&b.key));
        table
    }
}

/// The service ports of one Service, computed from its EndpointSlices (an incremental update
/// recomputes only the Services whose objects changed).
pub fn service_ports(
    svc: &Service,
    slices: &[&EndpointSlice],
    node: &str,
    sctp: bool,
) -> ServiceTable {
    let mut table = ServiceTable::default();
    if let (Some(ns), Some(name)) = (&svc.metadata.namespace, &svc.metadata.name) {
        add_service(&mut table, svc, ns, name, slices, node, sctp);
    }
    table.ports.sort_by(|a, b| a.key.cmp(&b.key));
    table
}

impl<'a> IntoIterator for &'a ServiceTable {
    type Item = &'a ServicePort;
    type IntoIter = std::slice::Iter<'a, ServicePort>;

    fn into_iter(self) -> Self::IntoIter {
        self.ports.iter()
    }
}

fn add_service(
    table: &mut ServiceTable,
    svc: &Service,
    ns: &str,
    name: &str,
    slices: &[&EndpointSlice],
    node: &str,
    sctp: bool,
) {
    let Some(spec) = &svc.spec else { return };
    let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
    if ty == "ExternalName" {
        return;
    }
    // Like kube-proxy: a Service labelled with a service-proxy-name belongs to another proxy
    // (knet's own DNS Service is answered locally on every node).
    if svc
        .metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(SERVICE_PROXY_NAME_LABEL))
    {
        return;
    }
    let mut cluster_ips: Vec<IpAddr> = spec
        .cluster_ips
        .iter()
        .flatten()
        .chain(spec.cluster_ip.iter())
        .filter_map(|s| s.parse().ok())
        .collect();
    cluster_ips.dedup();
    // Headless: clusterIP None (unparseable) → no rules at all.
    if cluster_ips.is_empty() {
        return;
    }
    let mut externals: Vec<IpAddr> = spec
        .external_ips
        .iter()
        .flatten()
        .filter_map(|s| s.parse().ok())
        .collect();
    let mut lb_ips: Vec<IpAddr> = Vec::new();
    if ty == "LoadBalancer" {
        // Like kube-proxy, only VIP-style ingress: `ipMode: Proxy` means the load balancer
        // proxies to the nodes and its IP must not be captured here.
        lb_ips.extend(
            svc.status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .into_iter()
                .flatten()
                .filter(|i| i.ip_mode.as_deref() != Some("Proxy"))
                .filter_map(|i| i.ip.as_deref())
                .filter_map(|s| s.parse::<IpAddr>().ok()),
        );
        externals.extend(lb_ips.iter().copied());
    }
    // The API accepts whitespace around the ranges (kube-proxy trims it too).
    let ranges: Vec<IpNet> = spec
        .load_balancer_source_ranges
        .iter()
        .flatten()
        .filter_map(|r| r.trim().parse::<IpNet>().ok())
        .map(|r| r.trunc())
        .collect();
    let node_ports = matches!(ty, "NodePort" | "LoadBalancer");
    let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .filter(|t| *t > 0)
            .unwrap_or(DEFAULT_AFFINITY_SECONDS)
    });
    let external_local = spec.external_traffic_policy.as_deref() == Some("Local")
        && (node_ports || !externals.is_empty());
    let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let hc = spec
        .health_check_node_port
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0 && ty == "LoadBalancer" && external_local);
    for sp in spec.ports.iter().flatten() {
        let Some(proto) = Proto::parse(sp.protocol.as_deref()) else {
            continue;
        };
        let Ok(port) = u16::try_from(sp.port) else {
            continue;
        };
        let port_name = sp.name.clone().unwrap_or_default();
        let node_port = sp
            .node_port
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| node_ports && *p > 0);
        let families: BTreeSet<Family> = cluster_ips.iter().map(|ip| Family::of(*ip)).collect();
        for family in families {
            let key = PortKey {
                namespace: ns.to_owned(),
                name: name.to_owned(),
                port_name: port_name.clone(),
                proto,
                family,
            };
            if proto == Proto::Sctp && !sctp {
                table.skipped.push(key);
                continue;
            }
            let candidates = candidates(slices, family, &port_name, proto, node);
            let cluster_eps = usable(&candidates, false);
            let local_eps = usable(&candidates, true);
            let cluster = choose(internal_local, &cluster_eps, &local_eps);
            let external = choose(external_local, &cluster_eps, &local_eps);
            table.ports.push(ServicePort {
                cluster_ip: cluster_ips
                    .iter()
                    .copied()
                    .find(|ip| Family::of(*ip) == family),
                port,
                node_port,
                external_ips: externals
                    .iter()
                    .copied()
                    .filter(|ip| Family::of(*ip) == family)
                    .collect(),
                lb_ips: lb_ips
                    .iter()
                    .copied()
                    .filter(|ip| Family::of(*ip) == family)
                    .collect(),
                source_ranges: source_ranges(&ranges, family),
                affinity,
                external_local,
                internal_local,
                health_check_node_port: hc,
                cluster,
                external,
                local_endpoints: local_eps.len(),
                key,
            });
        }
    }
}

/// The ranges of `family`; none when one of them is the whole family (it allows everything).
fn source_ranges(ranges: &[IpNet], family: Family) -> Vec<IpNet> {
    let mine: Vec<IpNet> = ranges
        .iter()
        .copied()
        .filter(|r| Family::of(r.addr()) == family)
        .collect();
    if mine.iter().any(|r| r.prefix_len() == 0) {
        Vec::new()
    } else {
        mine
    }
}

/// kube-proxy's rule: ready endpoints; when none is ready, the serving-and-terminating ones.
fn usable(all: &[Candidate], local_only: bool) -> Vec<Endpoint> {
    let pick = |f: &dyn Fn(&Candidate) -> bool| -> Vec<Endpoint> {
        all.iter()
            .filter(|c| !local_only || c.ep.local)
            .filter(|c| f(c))
            .map(|c| c.ep.clone())
            .collect()
    };
    let ready = pick(&|c| c.ready);
    if !ready.is_empty() {
        return ready;
    }
    pick(&|c| c.serving && c.terminating)
}

fn choose(local_policy: bool, cluster: &[Endpoint], local: &[Endpoint]) -> Target {
    if cluster.is_empty() {
        return Target::Reject;
    }
    let eps = if local_policy { local } else { cluster };
    if eps.is_empty() {
        Target::Drop
    } else {
        Target::Endpoints(eps.to_vec())
    }
}

fn candidates(
    slices: &[&EndpointSlice],
    family: Family,
    port_name: &str,
    proto: Proto,
    node: &str,
) -> Vec<Candidate> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for s in slices {
        if s.address_type != family.slice_type() {
            continue;
        }
        let Some(port) = s
            .ports
            .iter()
            .flatten()
            .find(|p| {
                p.name.as_deref().unwrap_or("") == port_name
                    && Proto::parse(p.protocol.as_deref()) == Some(proto)
            })
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for e in &s.endpoints {
            let c = e.conditions.as_ref();
            // Unset conditions: ready = true, serving = ready, terminating = false.
            let ready = c.and_then(|c| c.ready).unwrap_or(true);
            let serving = c.and_then(|c| c.serving).unwrap_or(ready);
            let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
            let local = e.node_name.as_deref() == Some(node);
            for a in &e.addresses {
                let Ok(ip) = a.parse::<IpAddr>() else {
                    continue;
                };
                if Family::of(ip) != family || !seen.insert((ip, port)) {
                    continue;
                }
                out.push(Candidate {
                    ep: Endpoint { ip, port, local },
                    ready,
                    serving,
                    terminating,
                });
            }
        }
    }
    out.sort_by(|a, b| a.ep.cmp(&b.ep));
    out
}

#[cfg(test)]
mod tests;
