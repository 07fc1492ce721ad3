//! Builders for the Kubernetes objects the index reads, for tests here and in other crates.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Namespace, Pod, PodIP, PodStatus, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::index::{Index, Snapshot};

/// A port: (name, protocol, number).
pub type PortSpec<'a> = (&'a str, &'a str, i32);

fn meta(ns: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: ns.map(str::to_string),
        name: Some(name.to_string()),
        resource_version: Some("1".to_string()),
        ..ObjectMeta::default()
    }
}

/// A Namespace.
pub fn namespace(name: &str) -> Namespace {
    Namespace {
        metadata: meta(None, name),
        ..Namespace::default()
    }
}

fn service_ports(ports: &[PortSpec<'_>]) -> Option<Vec<ServicePort>> {
    Some(
        ports
            .iter()
            .map(|(name, proto, port)| ServicePort {
                name: (!name.is_empty()).then(|| name.to_string()),
                protocol: Some(proto.to_string()),
                port: *port,
                ..ServicePort::default()
            })
            .collect(),
    )
}

/// A ClusterIP Service with one IP per family.
pub fn cluster_ip(ns: &str, name: &str, ips: &[&str], ports: &[PortSpec<'_>]) -> Service {
    Service {
        metadata: meta(Some(ns), name),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: ips.first().map(|s| s.to_string()),
            cluster_ips: Some(ips.iter().map(|s| s.to_string()).collect()),
            ports: service_ports(ports),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// A headless Service (`clusterIP: None`).
pub fn headless(ns: &str, name: &str, ports: &[PortSpec<'_>]) -> Service {
    cluster_ip(ns, name, &["None"], ports)
}

/// A headless Service with `publishNotReadyAddresses: true`.
pub fn headless_publish_not_ready(ns: &str, name: &str) -> Service {
    let mut svc = headless(ns, name, &[]);
    if let Some(spec) = svc.spec.as_mut() {
        spec.publish_not_ready_addresses = Some(true);
    }
    svc
}

/// An ExternalName Service.
pub fn external_name(ns: &str, name: &str, target: &str) -> Service {
    Service {
        metadata: meta(Some(ns), name),
        spec: Some(ServiceSpec {
            type_: Some("ExternalName".into()),
            external_name: Some(target.to_string()),
            ports: service_ports(&[("http", "TCP", 80)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// A ready endpoint with one address.
pub fn ep(ip: &str) -> Endpoint {
    Endpoint {
        addresses: vec![ip.to_string()],
        conditions: Some(EndpointConditions {
            ready: Some(true),
            ..EndpointConditions::default()
        }),
        ..Endpoint::default()
    }
}

/// A ready endpoint with a hostname (a pod with `hostname`/`subdomain`, or a StatefulSet pod).
pub fn ep_host(ip: &str, hostname: &str) -> Endpoint {
    Endpoint {
        hostname: Some(hostname.to_string()),
        ..ep(ip)
    }
}

/// An endpoint whose pod is not ready.
pub fn ep_not_ready(ip: &str) -> Endpoint {
    Endpoint {
        conditions: Some(EndpointConditions {
            ready: Some(false),
            ..EndpointConditions::default()
        }),
        ..ep(ip)
    }
}

/// An EndpointSlice of Service `svc`. The address type follows the first endpoint's family.
pub fn slice(
    ns: &str,
    name: &str,
    svc: &str,
    ports: &[PortSpec<'_>],
    endpoints: Vec<Endpoint>,
) -> EndpointSlice {
    let v6 = endpoints
        .first()
        .and_then(|e| e.addresses.first())
        .is_some_and(|a| a.contains(':'));
    let mut m = meta(Some(ns), name);
    m.labels = Some(BTreeMap::from([(
        "kubernetes.io/service-name".to_string(),
        svc.to_string(),
    )]));
    EndpointSlice {
        metadata: m,
        address_type: if v6 { "IPv6" } else { "IPv4" }.into(),
        endpoints,
        ports: (!ports.is_empty()).then(|| {
            ports
                .iter()
                .map(|(name, proto, port)| EndpointPort {
                    name: Some(name.to_string()),
                    protocol: Some(proto.to_string()),
                    port: Some(*port),
                    ..EndpointPort::default()
                })
                .collect()
        }),
    }
}

/// A running Pod with IP `ip`.
pub fn pod(ns: &str, name: &str, ip: &str) -> Pod {
    Pod {
        metadata: meta(Some(ns), name),
        status: Some(PodStatus {
            pod_ip: Some(ip.to_string()),
            pod_ips: Some(vec![PodIP { ip: ip.to_string() }]),
            ..PodStatus::default()
        }),
        ..Pod::default()
    }
}

/// A synced index holding these objects.
pub fn index(
    namespaces: Vec<Namespace>,
    services: Vec<Service>,
    slices: Vec<EndpointSlice>,
    pods: Vec<Pod>,
) -> Index {
    let snap = Snapshot {
        namespaces: namespaces.into_iter().map(Arc::new).collect(),
        services: services.into_iter().map(Arc::new).collect(),
        slices: slices.into_iter().map(Arc::new).collect(),
        pods: Some(pods.into_iter().map(Arc::new).collect()),
    };
    let mut index = Index::new();
    index.sync(&snap);
    index.set_synced(true);
    index
}
