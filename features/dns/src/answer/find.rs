//! Finding what a parsed name refers to (CoreDNS `findServices` / `findPods`).
//!
//! Returns the list of "entries" (an address with an optional port and the name it belongs to,
//! or a CNAME target) or [`NotFound`] for NXDOMAIN. An empty list means the name exists with no
//! data of its own (NODATA for every type).

use std::net::IpAddr;

use super::shape::Shape;
use super::{PodMode, ZoneConfig};
use crate::index::{Index, ServiceKind};

/// The name does not exist: NXDOMAIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct NotFound;

/// One thing a name resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Entry<'a> {
    /// An address, with the port it serves (for SRV) and the name SRV targets point at.
    Addr {
        ip: IpAddr,
        /// `None`: no port (SRV skips these, but they count toward SRV weights, as in CoreDNS).
        port: Option<u16>,
        target: Target<'a>,
    },
    /// An ExternalName's CNAME target (lowercase, no trailing dot).
    Cname(&'a str),
}

/// The owner name of an address, used as SRV target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target<'a> {
    /// `<svc>.<ns>.svc.<zone>`.
    Service { ns: &'a str, svc: &'a str },
    /// `<host>.<svc>.<ns>.svc.<zone>`; `host` is the endpoint hostname, else its dashed IP.
    Endpoint {
        ns: &'a str,
        svc: &'a str,
        host: Option<&'a str>,
        ip: IpAddr,
    },
    /// Pod and NS addresses: not SRV targets.
    Other,
}

/// What `shape` refers to.
pub(super) fn entries<'a>(
    index: &'a Index,
    cfg: &ZoneConfig,
    shape: &Shape<'a>,
) -> Result<Vec<Entry<'a>>, NotFound> {
    match *shape {
        Shape::Apex | Shape::Root | Shape::DnsVersion => Ok(Vec::new()),
        Shape::NsName => Ok(cfg
            .ns_ips
            .iter()
            .map(|ip| Entry::Addr {
                ip: *ip,
                port: None,
                target: Target::Other,
            })
            .collect()),
        Shape::Namespace { ns, pod } => {
            if pod && cfg.pods == PodMode::Disabled {
                return Err(NotFound);
            }
            index.namespace(ns).map(|_| Vec::new()).ok_or(NotFound)
        }
        Shape::Pod { ns, pod } => find_pod(index, cfg.pods, ns, pod),
        Shape::Service {
            ns,
            svc,
            endpoint,
            port,
        } => find_service(index, ns, svc, endpoint, port),
        Shape::Invalid => Err(NotFound),
    }
}

fn find_service<'a>(
    index: &'a Index,
    ns: &'a str,
    svc: &str,
    endpoint: Option<&str>,
    port: Option<(&str, &str)>,
) -> Result<Vec<Entry<'a>>, NotFound> {
    let nse = index.namespace(ns).ok_or(NotFound)?;
    let (svc_key, entry) = nse.services.get_key_value(svc).ok_or(NotFound)?;
    let svc: &'a str = svc_key;
    let port_matches = |name: &str, proto: &str| {
        port.is_none_or(|(want_name, want_proto)| name == want_name && proto == want_proto)
    };
    let mut out = Vec::new();
    match &entry.kind {
        ServiceKind::Unanswerable => return Err(NotFound),
        ServiceKind::ExternalName(target) => {
            if endpoint.is_some() || port.is_some() {
                return Err(NotFound);
            }
            out.push(Entry::Cname(target));
        }
        ServiceKind::ClusterIp(ips) if endpoint.is_none() => {
            for p in &entry.ports {
                if !port_matches(&p.name, &p.protocol) {
                    continue;
                }
                for ip in ips {
                    out.push(Entry::Addr {
                        ip: *ip,
                        port: p.port,
                        target: Target::Service { ns, svc },
                    });
                }
            }
        }
        // Endpoint names work on ClusterIP Services too, as in CoreDNS.
        ServiceKind::ClusterIp(_) | ServiceKind::Headless => {
            let wanted_ip = endpoint.and_then(dashed_ip);
            for slice in nse.slices(svc) {
                for ep in &slice.endpoints {
                    if !(ep.ready || entry.publish_not_ready) {
                        continue;
                    }
                    if let Some(want) = endpoint {
                        let hit = match &ep.hostname {
                            Some(h) => **h == *want,
                            None => wanted_ip == Some(ep.ip),
                        };
                        if !hit {
                            continue;
                        }
                    }
                    for p in &slice.ports {
                        if !port_matches(&p.name, &p.protocol) {
                            continue;
                        }
                        out.push(Entry::Addr {
                            ip: ep.ip,
                            port: p.port,
                            target: Target::Endpoint {
                                ns,
                                svc,
                                host: ep.hostname.as_deref(),
                                ip: ep.ip,
                            },
                        });
                    }
                }
            }
        }
    }
    if out.is_empty() {
        // A headless Service with no ready endpoints, or no port of that name: NXDOMAIN.
        return Err(NotFound);
    }
    Ok(out)
}

fn find_pod<'a>(
    index: &'a Index,
    mode: PodMode,
    ns: &str,
    pod: &str,
) -> Result<Vec<Entry<'a>>, NotFound> {
    if mode == PodMode::Disabled || index.namespace(ns).is_none() {
        return Err(NotFound);
    }
    let ip = pod_ip(pod).ok_or(NotFound)?;
    if mode == PodMode::Verified && !index.pod_namespaces(&ip).iter().any(|n| &**n == ns) {
        return Err(NotFound);
    }
    Ok(vec![Entry::Addr {
        ip,
        port: None,
        target: Target::Other,
    }])
}

/// `10-0-0-1` → 10.0.0.1 and `fd00-1--5` → fd00:1::5, as CoreDNS reads pod names.
pub(super) fn pod_ip(label: &str) -> Option<IpAddr> {
    let text = if label.matches('-').count() == 3 && !label.contains("--") {
        label.replace('-', ".")
    } else {
        label.replace('-', ":")
    };
    text.parse().ok()
}

/// The endpoint IP a dashed-IP label names, if the label is exactly that IP's dashed form.
fn dashed_ip(label: &str) -> Option<IpAddr> {
    let ip = pod_ip(label)?;
    (dashed(ip) == label).then_some(ip)
}

/// The name CoreDNS gives an endpoint without a hostname: its IP with `.`/`:` turned into `-`
/// (and a trailing `-` completed to `-0`).
pub(super) fn dashed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => {
            let mut s = v6.to_string().replace(':', "-");
            if s.ends_with('-') {
                s.push('0');
            }
            s
        }
    }
}
