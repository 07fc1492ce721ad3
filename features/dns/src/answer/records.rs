//! Turning found entries into resource records for one query type (CoreDNS `backend_lookup.go`).

use std::collections::HashSet;
use std::net::IpAddr;

use hickory_server::proto::rr::rdata::{A, AAAA, CNAME, NS, SOA, SRV, TXT};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};

use super::find::{Entry, Target, dashed};
use super::shape::Shape;
use super::{Answer, DNS_SCHEMA_VERSION, DNS_VERSION_TTL, MAX_CNAME_CHAIN, ZoneConfig};
use crate::index::Index;

/// What record building needs: the index, the config and the zone in the question's case.
pub(super) struct Ctx<'a> {
    pub(super) index: &'a Index,
    pub(super) cfg: &'a ZoneConfig,
    pub(super) zone: &'a Name,
}

// === impl Ctx ===

impl Ctx<'_> {
    /// The zone's SOA, as CoreDNS builds it: TTL min(ttl, 300), minimum = ttl.
    pub(super) fn soa(&self) -> Record {
        let soa = SOA::new(
            self.prefixed(&["ns", "dns"]),
            self.prefixed(&["hostmaster"]),
            self.index.serial(),
            7200,
            1800,
            86400,
            self.cfg.ttl,
        );
        Record::from_rdata(self.zone.clone(), self.cfg.ttl.min(300), RData::SOA(soa))
    }

    /// `labels` + the zone. Falls back to the zone itself for over-long names (which cannot
    /// come from valid Kubernetes object names).
    fn prefixed(&self, labels: &[&str]) -> Name {
        self.join(labels).unwrap_or_else(|| self.zone.clone())
    }

    fn join(&self, labels: &[&str]) -> Option<Name> {
        Name::from_labels(labels.iter().map(|l| l.as_bytes()))
            .ok()?
            .append_domain(self.zone)
            .ok()
    }

    fn record(&self, name: Name, rdata: RData) -> Record {
        Record::from_rdata(name, self.cfg.ttl, rdata)
    }

    fn addr_record(&self, name: Name, ip: IpAddr) -> Record {
        match ip {
            IpAddr::V4(v4) => self.record(name, RData::A(A(v4))),
            IpAddr::V6(v6) => self.record(name, RData::AAAA(AAAA(v6))),
        }
    }

    /// Fills `a` with the records of type `qtype` for `qname`, from `entries`.
    pub(super) fn records(
        &self,
        qname: &Name,
        qtype: RecordType,
        shape: &Shape<'_>,
        entries: &[Entry<'_>],
        depth: usize,
        a: &mut Answer,
    ) {
        match qtype {
            RecordType::A | RecordType::AAAA => {
                self.addresses(qname, qtype == RecordType::A, entries, depth, a);
            }
            RecordType::TXT if *shape == Shape::DnsVersion => {
                let txt = TXT::new(vec![DNS_SCHEMA_VERSION.to_string()]);
                a.answers.push(Record::from_rdata(
                    qname.clone(),
                    DNS_VERSION_TTL,
                    RData::TXT(txt),
                ));
            }
            RecordType::SRV => self.srv(qname, entries, a),
            RecordType::CNAME => {
                if let Some(Entry::Cname(target)) = entries.first()
                    && let Some(target) = fqdn(target)
                {
                    a.answers
                        .push(self.record(qname.clone(), RData::CNAME(CNAME(target))));
                }
            }
            RecordType::SOA if *shape == Shape::Apex => a.answers.push(self.soa()),
            RecordType::NS if *shape == Shape::Apex => {
                let ns_name = self.prefixed(&["ns", "dns"]);
                a.answers
                    .push(self.record(qname.clone(), RData::NS(NS(ns_name.clone()))));
                for ip in &self.cfg.ns_ips {
                    a.additionals.push(self.addr_record(ns_name.clone(), *ip));
                }
            }
            _ => {}
        }
    }

    fn addresses(
        &self,
        qname: &Name,
        v4: bool,
        entries: &[Entry<'_>],
        depth: usize,
        a: &mut Answer,
    ) {
        let mut seen: HashSet<IpAddr> = HashSet::new();
        for entry in entries {
            match entry {
                Entry::Addr { ip, .. } if ip.is_ipv4() == v4 => {
                    if seen.insert(*ip) {
                        a.answers.push(self.addr_record(qname.clone(), *ip));
                    }
                }
                Entry::Addr { .. } => {}
                Entry::Cname(target) => self.follow_cname(qname, target, v4, depth, a),
            }
        }
    }

    /// An ExternalName on an address query: CNAME, then the target's addresses when the target
    /// is inside the zone; otherwise the server chases it upstream.
    fn follow_cname(&self, qname: &Name, target: &str, v4: bool, depth: usize, a: &mut Answer) {
        let Some(target) = fqdn(target) else {
            return;
        };
        // x CNAME x is a direct loop; long chains are cut, as in CoreDNS.
        if target == *qname || depth >= MAX_CNAME_CHAIN {
            return;
        }
        let cname = self.record(qname.clone(), RData::CNAME(CNAME(target.clone())));
        if self.cfg.zone.zone_of(&target) {
            let qtype = if v4 { RecordType::A } else { RecordType::AAAA };
            let sub = super::in_zone(self, &target, qtype, depth + 1);
            if !sub.answers.is_empty() {
                a.answers.push(cname);
                a.answers.extend(sub.answers);
                a.chase = a.chase.take().or(sub.chase);
            }
        } else {
            a.answers.push(cname);
            a.chase = Some(target);
        }
    }

    /// SRV records with CoreDNS's weights: priority 0, weight floor(100 / entries), minimum 1;
    /// duplicates (same target and port) dropped; target addresses in the additional section.
    fn srv(&self, qname: &Name, entries: &[Entry<'_>], a: &mut Answer) {
        let addrs: Vec<(IpAddr, Option<u16>, Target<'_>)> = entries
            .iter()
            .filter_map(|e| match e {
                Entry::Addr { ip, port, target } => Some((*ip, *port, *target)),
                Entry::Cname(_) => None,
            })
            .collect();
        if addrs.is_empty() {
            return;
        }
        let weight = u16::try_from(100 / addrs.len()).unwrap_or(1).max(1);
        let mut seen_srv: HashSet<(Name, u16)> = HashSet::new();
        let mut seen_addr: HashSet<(Name, IpAddr)> = HashSet::new();
        for (ip, port, target) in addrs {
            let Some(port) = port else {
                continue;
            };
            let Some(target) = self.target_name(target) else {
                continue;
            };
            if seen_srv.insert((target.clone(), port)) {
                let srv = SRV::new(0, weight, port, target.clone());
                a.answers.push(self.record(qname.clone(), RData::SRV(srv)));
            }
            if seen_addr.insert((target.clone(), ip)) {
                a.additionals.push(self.addr_record(target, ip));
            }
        }
    }

    fn target_name(&self, target: Target<'_>) -> Option<Name> {
        match target {
            Target::Service { ns, svc } => self.join(&[svc, ns, "svc"]),
            Target::Endpoint { ns, svc, host, ip } => match host {
                Some(host) => self.join(&[host, svc, ns, "svc"]),
                None => self.join(&[&dashed(ip), svc, ns, "svc"]),
            },
            Target::Other => None,
        }
    }
}

/// `ext.example.com` → the FQDN `ext.example.com.`.
fn fqdn(name: &str) -> Option<Name> {
    let mut name = Name::from_ascii(name).ok()?;
    name.set_fqdn(true);
    Some(name)
}
