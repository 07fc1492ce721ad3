//! PTR answers for ClusterIPs and endpoint IPs (CoreDNS `reverse.go`).
//!
//! As kubeadm configures CoreDNS (`fallthrough in-addr.arpa ip6.arpa`), a reverse name we hold
//! no record for is not answered here but forwarded upstream, as is every other question outside
//! the cluster zone.

use std::collections::HashSet;
use std::net::IpAddr;

use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::rdata::PTR;
use hickory_server::proto::rr::{Name, RData, Record, RecordType};

use super::find::dashed;
use super::{Answer, Lookup, ZoneConfig};
use crate::index::{Index, ReverseKind};

/// Answers a PTR question for an IP the cluster owns, or says to forward.
pub(super) fn lookup(index: &Index, cfg: &ZoneConfig, qname: &Name, qtype: RecordType) -> Lookup {
    if qtype != RecordType::PTR || !index.synced() {
        return Lookup::Forward;
    }
    let Some(ip) = reverse_ip(qname) else {
        return Lookup::Forward;
    };
    let targets = targets(index, cfg, ip);
    if targets.is_empty() {
        return Lookup::Forward;
    }
    let mut a = Answer::new(ResponseCode::NoError);
    for target in targets {
        a.answers.push(Record::from_rdata(
            qname.clone(),
            cfg.ttl,
            RData::PTR(PTR(target)),
        ));
    }
    Lookup::Answer(a)
}

/// The full address a reverse name spells, e.g. `1.0.0.10.in-addr.arpa.` → 10.0.0.1. Partial
/// names (a /24's `0.0.10.in-addr.arpa.`) give `None`.
pub(crate) fn reverse_ip(qname: &Name) -> Option<IpAddr> {
    let net = qname.parse_arpa_name().ok()?;
    let full = match net.addr() {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    (net.prefix_len() == full).then_some(net.addr())
}

/// The names `ip` belongs to: its Service if it is a ClusterIP, else `<host>.<svc>` for every
/// Service whose ready endpoint it is.
fn targets(index: &Index, cfg: &ZoneConfig, ip: IpAddr) -> Vec<Name> {
    let join = |labels: &[&str]| {
        Name::from_labels(labels.iter().map(|l| l.as_bytes()))
            .ok()?
            .append_domain(&cfg.zone)
            .ok()
    };
    let entries = index.reverse(&ip);
    if let Some(e) = entries.iter().find(|e| e.kind == ReverseKind::ClusterIp) {
        return join(&[&e.service, &e.namespace, "svc"])
            .into_iter()
            .collect();
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for e in entries {
        let ReverseKind::Endpoint {
            hostname, ready, ..
        } = &e.kind
        else {
            continue;
        };
        let publish = index
            .service(&e.namespace, &e.service)
            .is_some_and(|s| s.publish_not_ready);
        if !(*ready || publish) {
            continue;
        }
        let host = hostname
            .as_deref()
            .map_or_else(|| dashed(ip), str::to_string);
        if let Some(name) = join(&[&host, &e.service, &e.namespace, "svc"])
            && seen.insert(name.clone())
        {
            out.push(name);
        }
    }
    out
}
