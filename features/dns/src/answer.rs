//! The cluster zone's answer logic: a pure function from (index, question) to a DNS answer.
//!
//! Implements the Kubernetes DNS-Based Service Discovery spec 1.1.0 plus the pod A records that
//! conformance still probes, deciding NXDOMAIN versus NODATA the way CoreDNS's kubernetes plugin
//! does (see `docs/features/dns.md` for the few deliberate differences). No I/O happens here: an
//! ExternalName whose target lies outside the cluster zone is returned as a CNAME plus a
//! [`Answer::chase`] name, which the server resolves through its upstreams.

mod find;
mod records;
mod reverse;
mod shape;

use std::net::IpAddr;

use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::{DNSClass, Name, Record, RecordType};

use crate::index::Index;
use shape::Shape;

/// Which `<a-b-c-d>.<ns>.pod.<zone>` records are served (CoreDNS's `pods` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PodMode {
    /// No pod records.
    Disabled,
    /// Echo any well-formed dashed IP in an existing namespace (kubeadm's default).
    #[default]
    Insecure,
    /// Only IPs of Pods that exist in that namespace (needs the Pod watch).
    Verified,
}

/// The zone being served and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneConfig {
    /// The cluster domain, e.g. `cluster.local.` (any case; compared case-insensitively).
    pub zone: Name,
    /// TTL of cluster records, and the SOA minimum (negative-caching time).
    pub ttl: u32,
    /// The addresses the zone's NS name (`ns.dns.<zone>`) resolves to: the DNS Service IP(s).
    pub ns_ips: Vec<IpAddr>,
    /// Pod record mode.
    pub pods: PodMode,
}

/// A complete answer for the cluster zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The response code.
    pub rcode: ResponseCode,
    /// The AA flag: set on every answer for the cluster zone.
    pub authoritative: bool,
    /// Answer section.
    pub answers: Vec<Record>,
    /// Authority section: the zone SOA on negative answers, as RFC 2308 wants.
    pub authority: Vec<Record>,
    /// Additional section: addresses of SRV targets and NS names.
    pub additionals: Vec<Record>,
    /// An ExternalName target outside the zone: resolve it upstream with the same type and
    /// append its answers after the CNAME.
    pub chase: Option<Name>,
}

/// What to do with a question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Answer with this.
    Answer(Answer),
    /// Not ours (outside the zone, or a reverse name we hold no record for): forward it.
    Forward,
}

/// The CoreDNS label for the DNS schema version record.
const DNS_SCHEMA_VERSION: &str = "1.1.0";
/// CoreDNS hard-codes this TTL for `dns-version.<zone>`.
const DNS_VERSION_TTL: u32 = 28800;
/// How many in-zone CNAME hops are followed (CoreDNS `maxCnameChainLength`).
const MAX_CNAME_CHAIN: usize = 10;

// === impl ZoneConfig ===

impl ZoneConfig {
    /// A config for `zone` (e.g. `cluster.local`), with `ttl` and the DNS Service IP.
    pub fn new(zone: &str, ttl: u32, ns_ips: Vec<IpAddr>) -> Result<ZoneConfig, crate::Error> {
        let mut zone = Name::from_ascii(zone)
            .map_err(|e| crate::Error::Config(format!("cluster domain {zone:?}: {e}")))?
            .to_lowercase();
        zone.set_fqdn(true);
        Ok(ZoneConfig {
            zone,
            ttl,
            ns_ips,
            pods: PodMode::default(),
        })
    }
}

// === impl Answer ===

impl Answer {
    fn new(rcode: ResponseCode) -> Answer {
        Answer {
            rcode,
            authoritative: true,
            answers: Vec::new(),
            authority: Vec::new(),
            additionals: Vec::new(),
            chase: None,
        }
    }
}

/// Answers one question. `qname` keeps the client's case: owner names echo it.
pub fn answer(
    index: &Index,
    cfg: &ZoneConfig,
    qname: &Name,
    qtype: RecordType,
    qclass: DNSClass,
) -> Lookup {
    let mut qname = qname.clone();
    qname.set_fqdn(true);
    if !cfg.zone.zone_of(&qname) {
        return reverse::lookup(index, cfg, &qname, qtype);
    }
    if !matches!(qclass, DNSClass::IN | DNSClass::ANY) {
        return Lookup::Answer(Answer::new(ResponseCode::Refused));
    }
    let zone_labels = cfg.zone.iter().len();
    // The zone as the client spelled it, so SOA/NS/SRV names echo the question's case.
    let zone = qname.trim_to(zone_labels);
    let ctx = records::Ctx {
        index,
        cfg,
        zone: &zone,
    };
    if !index.synced() {
        let mut a = Answer::new(ResponseCode::ServFail);
        a.authority.push(ctx.soa());
        return Lookup::Answer(a);
    }
    if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
        return Lookup::Answer(Answer::new(ResponseCode::Refused));
    }
    Lookup::Answer(in_zone(&ctx, &qname, qtype, 0))
}

/// Answers a name known to lie inside the zone. `depth` counts CNAME hops.
fn in_zone(ctx: &records::Ctx<'_>, qname: &Name, qtype: RecordType, depth: usize) -> Answer {
    let lower = qname.to_lowercase();
    let labels: Vec<&[u8]> = lower.iter().collect();
    let base_len = labels.len().saturating_sub(ctx.cfg.zone.iter().len());
    let shape = Shape::parse(&labels[..base_len]);
    let found = find::entries(ctx.index, ctx.cfg, &shape);
    let mut a = Answer::new(ResponseCode::NoError);
    match found {
        Err(find::NotFound) => {
            a.rcode = ResponseCode::NXDomain;
            a.authority.push(ctx.soa());
        }
        Ok(entries) => {
            ctx.records(qname, qtype, &shape, &entries, depth, &mut a);
            if a.answers.is_empty() {
                a.authority.push(ctx.soa());
            }
        }
    }
    a
}

#[cfg(test)]
mod tests;
