//! Converting Kubernetes objects into index entries, and feeding them in one at a time.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::{Endpoint, Index, Port, ServiceEntry, ServiceKind, Slice};

/// The label linking an EndpointSlice to its Service.
pub(crate) const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

// === impl Index ===

impl Index {
    /// Adds or replaces a Service.
    pub fn upsert_service(&mut self, svc: &Service) {
        let (Some(ns), Some(name)) = (&svc.metadata.namespace, &svc.metadata.name) else {
            return;
        };
        self.put_service(ns, name, service_entry(svc));
    }

    /// Adds or replaces an EndpointSlice. Slices without a `kubernetes.io/service-name` label
    /// belong to no Service and are ignored (and removed if they were known).
    pub fn upsert_slice(&mut self, slice: &EndpointSlice) {
        let (Some(ns), Some(name)) = (&slice.metadata.namespace, &slice.metadata.name) else {
            return;
        };
        match slice_service(slice) {
            Some(service) => self.put_slice(ns, name, service, slice_entry(slice)),
            None => self.remove_slice(ns, name),
        }
    }

    /// Adds or replaces a Namespace.
    pub fn upsert_namespace_object(&mut self, ns: &Namespace) {
        if let Some(name) = &ns.metadata.name {
            self.upsert_namespace(name, version(&ns.metadata.resource_version));
        }
    }

    /// Adds or replaces a Pod (used by `pods verified` mode only).
    pub fn upsert_pod(&mut self, pod: &Pod) {
        let (Some(ns), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
            return;
        };
        self.put_pod(
            ns,
            name,
            version(&pod.metadata.resource_version),
            pod_ips(pod),
        );
    }
}

pub(crate) fn version(rv: &Option<String>) -> &str {
    rv.as_deref().unwrap_or("")
}

/// The Service name an EndpointSlice belongs to.
pub(crate) fn slice_service(slice: &EndpointSlice) -> Option<&str> {
    slice
        .metadata
        .labels
        .as_ref()?
        .get(SERVICE_NAME_LABEL)
        .map(String::as_str)
        .filter(|s| !s.is_empty())
}

/// A Service as DNS sees it.
pub(crate) fn service_entry(svc: &Service) -> ServiceEntry {
    let spec = svc.spec.as_ref();
    let kind = match spec {
        None => ServiceKind::Unanswerable,
        Some(spec) if spec.type_.as_deref() == Some("ExternalName") => {
            let target = spec
                .external_name
                .as_deref()
                .unwrap_or("")
                .trim_end_matches('.');
            if target.is_empty() || target.parse::<IpAddr>().is_ok() {
                ServiceKind::Unanswerable
            } else {
                ServiceKind::ExternalName(target.to_ascii_lowercase().into())
            }
        }
        Some(spec) => {
            let ips: Vec<&str> = match (&spec.cluster_ips, &spec.cluster_ip) {
                (Some(ips), _) if !ips.is_empty() => ips.iter().map(String::as_str).collect(),
                (_, Some(ip)) => vec![ip.as_str()],
                _ => Vec::new(),
            };
            if ips
                .first()
                .is_some_and(|ip| ip.eq_ignore_ascii_case("None"))
            {
                ServiceKind::Headless
            } else {
                let parsed: Vec<IpAddr> = ips.iter().filter_map(|ip| ip.parse().ok()).collect();
                if parsed.is_empty() {
                    ServiceKind::Unanswerable
                } else {
                    ServiceKind::ClusterIp(parsed)
                }
            }
        }
    };
    let ports = spec
        .and_then(|s| s.ports.as_ref())
        .map(|ports| {
            ports
                .iter()
                .map(|p| Port {
                    name: lower(p.name.as_deref().unwrap_or("")),
                    protocol: lower(p.protocol.as_deref().unwrap_or("TCP")),
                    port: u16::try_from(p.port).ok(),
                })
                .collect()
        })
        .unwrap_or_default();
    ServiceEntry {
        kind,
        ports,
        publish_not_ready: spec
            .and_then(|s| s.publish_not_ready_addresses)
            .unwrap_or(false),
        version: version(&svc.metadata.resource_version).into(),
    }
}

/// An EndpointSlice as DNS sees it. FQDN slices carry no addresses DNS can serve.
pub(crate) fn slice_entry(slice: &EndpointSlice) -> Slice {
    let ports: Vec<Port> = match &slice.ports {
        Some(ports) if !ports.is_empty() => ports
            .iter()
            .map(|p| Port {
                name: lower(p.name.as_deref().unwrap_or("")),
                protocol: lower(p.protocol.as_deref().unwrap_or("TCP")),
                port: p.port.and_then(|p| u16::try_from(p).ok()),
            })
            .collect(),
        // CoreDNS adds a sentinel port so portless headless Services still answer A queries.
        _ => vec![Port {
            name: "".into(),
            protocol: "".into(),
            port: None,
        }],
    };
    let mut endpoints = Vec::new();
    if slice.address_type != "FQDN" {
        for ep in &slice.endpoints {
            let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            let hostname = ep.hostname.as_deref().filter(|h| !h.is_empty()).map(lower);
            for addr in &ep.addresses {
                if let Ok(ip) = addr.parse::<IpAddr>() {
                    endpoints.push(Endpoint {
                        ip,
                        hostname: hostname.clone(),
                        ready,
                    });
                }
            }
        }
    }
    Slice {
        ports,
        endpoints,
        version: version(&slice.metadata.resource_version).into(),
    }
}

/// A Pod's IPs (all families).
pub(crate) fn pod_ips(pod: &Pod) -> Vec<IpAddr> {
    let Some(status) = &pod.status else {
        return Vec::new();
    };
    let mut ips: Vec<IpAddr> = status
        .pod_ips
        .iter()
        .flatten()
        .filter_map(|p| p.ip.parse().ok())
        .collect();
    if ips.is_empty()
        && let Some(ip) = status.pod_ip.as_deref().and_then(|ip| ip.parse().ok())
    {
        ips.push(ip);
    }
    ips
}

fn lower(s: &str) -> Box<str> {
    s.to_ascii_lowercase().into()
}
