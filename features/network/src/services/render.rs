//! The nftables form of the service table: `table inet knet-services`, kube-proxy's nftables
//! design. Static chains hook prerouting/output (DNAT), postrouting (masquerade) and
//! input/forward/output (reject for Services without endpoints); per-packet dispatch is one
//! lookup in a verdict map keyed by `address . protocol . port`, so its cost does not grow with
//! the number of Services. Each service port gets its own chains (`svc*`, `ext*`, `svl*`, one
//! `ep*` per endpoint) and, with ClientIP affinity, one timeout set per endpoint.
//!
//! [`Ruleset`] is the dynamic part as data, so a sync can diff it against the last applied one
//! ([`crate::services::apply`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use super::base::{DROP_CHAIN, MAPS, MASQ_MARK, REJECT_CHAIN};
use super::fnv::hash_str;
use super::model::{Endpoint, Family, PortKey, ServicePort, ServiceTable, Target};
use super::rule::{Action, AffinitySet, ElemKey, Goto, Match, Rule};

/// The dynamic part of the table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// Per-service chains: name → rules.
    pub chains: BTreeMap<String, Vec<Rule>>,
    /// Affinity sets: name → declaration.
    pub sets: BTreeMap<String, AffinitySet>,
    /// Map name → key → verdict.
    pub elements: BTreeMap<&'static str, BTreeMap<ElemKey, Goto>>,
}

// === impl Ruleset ===

impl Ruleset {
    /// Renders `table` for a node whose pods live in `pod_cidrs` (pods reaching an
    /// externalTrafficPolicy-Local address are sent to every endpoint, like kube-proxy).
    pub fn render(table: &ServiceTable, pod_cidrs: &[IpNet]) -> Ruleset {
        Ruleset::render_ports(&table.ports, pod_cidrs, &[])
    }

    /// Renders some service ports (one Service's, for an incremental update). `node_ips` are
    /// the node's own addresses (a load balancer whose source ranges admit the node also
    /// admits its own IPs, which is how a node reaching a VIP bound locally appears).
    pub fn render_ports(
        ports: &[ServicePort],
        pod_cidrs: &[IpNet],
        node_ips: &[IpAddr],
    ) -> Ruleset {
        let mut r = Ruleset::default();
        for m in MAPS {
            r.elements.insert(m, BTreeMap::new());
        }
        for p in ports {
            r.add_port(p, pod_cidrs, node_ips);
        }
        r
    }

    /// Number of map elements.
    pub fn element_count(&self) -> usize {
        self.elements.values().map(BTreeMap::len).sum()
    }

    fn element(&mut self, map: &'static str, key: ElemKey, chain: &str) {
        self.elements
            .entry(map)
            .or_default()
            .insert(key, Goto(chain.to_owned()));
    }

    fn add_port(&mut self, p: &ServicePort, pod_cidrs: &[IpNet], node_ips: &[IpAddr]) {
        let family = p.key.family;
        let proto = p.key.proto;
        let names = Names::of(&p.key);
        let svc = names.chain("svc");
        let ext = names.chain("ext");
        // Cluster traffic.
        if let Some(ip) = p.cluster_ip {
            let key = ElemKey::vip(ip, proto, p.port);
            match &p.cluster {
                Target::Reject => self.element(no_ep_map(family), key, REJECT_CHAIN),
                Target::Drop => self.element(svc_map(family), key, DROP_CHAIN),
                Target::Endpoints(eps) => {
                    self.balance(&svc, p, &names, eps);
                    self.element(svc_map(family), key, &svc);
                }
            }
        }
        // External traffic: NodePorts, externalIPs, load-balancer IPs.
        if p.node_port.is_none() && p.external_ips.is_empty() {
            return;
        }
        let target = match &p.external {
            Target::Reject => REJECT_CHAIN,
            Target::Drop | Target::Endpoints(_) => ext.as_str(),
        };
        let (ips_map, np_map) = match &p.external {
            Target::Reject => (no_ep_map(family), no_ep_np_map(family)),
            _ => (svc_map(family), np_map(family)),
        };
        for ip in &p.external_ips {
            self.element(ips_map, ElemKey::vip(*ip, proto, p.port), target);
        }
        if let Some(np) = p.node_port {
            self.element(np_map, ElemKey::node_port(proto, np), target);
        }
        self.firewall(p, &names, node_ips);
        if p.external == Target::Reject {
            return;
        }
        let mut rules = Vec::new();
        if p.external_local {
            // Node-originated traffic is masqueraded and may use any endpoint; so may pods.
            rules.push(Rule::when(
                vec![Match::FibSaddrLocal],
                Action::OrMark(MASQ_MARK),
            ));
            let cluster_chain = match &p.cluster {
                Target::Endpoints(_) if p.cluster_ip.is_some() => svc.clone(),
                _ => DROP_CHAIN.to_owned(),
            };
            rules.push(Rule::when(
                vec![Match::FibSaddrLocal],
                Action::Goto(cluster_chain.clone()),
            ));
            for pods in pod_cidrs.iter().filter(|c| Family::of(c.addr()) == family) {
                rules.push(Rule::when(
                    vec![Match::Saddr(*pods)],
                    Action::Goto(cluster_chain.clone()),
                ));
            }
            match &p.external {
                Target::Endpoints(eps) => {
                    let svl = names.chain("svl");
                    self.balance(&svl, p, &names, eps);
                    rules.push(Rule::always(Action::Goto(svl)));
                }
                _ => rules.push(Rule::always(Action::Drop)),
            }
        } else {
            rules.push(Rule::always(Action::OrMark(MASQ_MARK)));
            match &p.external {
                Target::Endpoints(_) if p.cluster == p.external && p.cluster_ip.is_some() => {
                    rules.push(Rule::always(Action::Goto(svc)));
                }
                Target::Endpoints(eps) => {
                    let svx = names.chain("svx");
                    self.balance(&svx, p, &names, eps);
                    rules.push(Rule::always(Action::Goto(svx)));
                }
                _ => rules.push(Rule::always(Action::Drop)),
            }
        }
        self.chains.insert(ext, rules);
    }

    /// `loadBalancerSourceRanges` (kube-proxy's firewall): new connections to an LB IP from
    /// outside the ranges are dropped before DNAT; NodePorts and external IPs are not covered.
    fn firewall(&mut self, p: &ServicePort, names: &Names, node_ips: &[IpAddr]) {
        if p.source_ranges.is_empty() || p.lb_ips.is_empty() {
            return;
        }
        let fw = names.chain("fw");
        let mut rules: Vec<Rule> = p
            .source_ranges
            .iter()
            .map(|r| Rule::when(vec![Match::Saddr(*r)], Action::Return))
            .collect();
        // kube-proxy's allowFromNode: an LB IP bound on the node is reached from the node
        // with the LB IP as source.
        if node_ips
            .iter()
            .any(|ip| p.source_ranges.iter().any(|r| r.contains(ip)))
        {
            for ip in &p.lb_ips {
                rules.push(Rule::when(
                    vec![Match::Saddr(IpNet::from(*ip))],
                    Action::Return,
                ));
            }
        }
        rules.push(Rule::always(Action::Drop));
        for ip in &p.lb_ips {
            self.element(
                fw_map(p.key.family),
                ElemKey::vip(*ip, p.key.proto, p.port),
                &fw,
            );
        }
        self.chains.insert(fw, rules);
    }

    /// A chain `name` that picks one of `eps` (sticky with affinity) and the endpoint chains.
    fn balance(&mut self, name: &str, p: &ServicePort, names: &Names, eps: &[Endpoint]) {
        let family = p.key.family;
        let mut rules = Vec::with_capacity(eps.len() * (1 + usize::from(p.affinity.is_some())));
        let mut targets = Vec::with_capacity(eps.len());
        for e in eps {
            let ep = names.endpoint(e);
            if let Some(timeout) = p.affinity {
                let set = names.affinity(e, timeout);
                rules.push(Rule::when(
                    vec![Match::SaddrInSet(family, set.clone())],
                    Action::Goto(ep.clone()),
                ));
                self.sets.insert(set, AffinitySet { family, timeout });
            }
            self.endpoint_chain(&ep, p, names, e);
            targets.push(ep);
        }
        // A cascade (endpoint i taken with probability 1/(N-i)) rather than kube-proxy's
        // `numgen random mod N vmap { ... }`: every such vmap is an anonymous set, and the
        // kernel names each new anonymous set by scanning the table's sets, which made a cold
        // 10k-Service transaction take 46 s instead of ~2 s on this kernel. The cost moves to
        // the first packet of a connection: O(endpoints of this Service), never O(Services).
        let n = targets.len();
        for (i, t) in targets.into_iter().enumerate() {
            if i + 1 == n {
                rules.push(Rule::always(Action::Goto(t)));
            } else {
                let left = u32::try_from(n - i).unwrap_or(u32::MAX);
                rules.push(Rule::when(vec![Match::Numgen(left)], Action::Goto(t)));
            }
        }
        self.chains.insert(name.to_owned(), rules);
    }

    fn endpoint_chain(&mut self, name: &str, p: &ServicePort, names: &Names, e: &Endpoint) {
        let family = p.key.family;
        // Hairpin: a pod reaching itself through the Service is masqueraded.
        let mut rules = vec![Rule::when(
            vec![Match::Saddr(IpNet::from(e.ip))],
            Action::OrMark(MASQ_MARK),
        )];
        if let Some(timeout) = p.affinity {
            rules.push(Rule::always(Action::UpdateSaddr(
                family,
                names.affinity(e, timeout),
            )));
        }
        rules.push(Rule::when(
            vec![Match::L4Proto(p.key.proto)],
            Action::Dnat(SocketAddr::new(e.ip, e.port)),
        ));
        self.chains.insert(name.to_owned(), rules);
    }
}

fn svc_map(f: Family) -> &'static str {
    match f {
        Family::V4 => "service-ips-v4",
        Family::V6 => "service-ips-v6",
    }
}

fn np_map(f: Family) -> &'static str {
    match f {
        Family::V4 => "service-nodeports-v4",
        Family::V6 => "service-nodeports-v6",
    }
}

fn no_ep_map(f: Family) -> &'static str {
    match f {
        Family::V4 => "no-endpoint-services-v4",
        Family::V6 => "no-endpoint-services-v6",
    }
}

fn fw_map(f: Family) -> &'static str {
    match f {
        Family::V4 => "firewall-ips-v4",
        Family::V6 => "firewall-ips-v6",
    }
}

fn no_ep_np_map(f: Family) -> &'static str {
    match f {
        Family::V4 => "no-endpoint-nodeports-v4",
        Family::V6 => "no-endpoint-nodeports-v6",
    }
}

/// The names of one service port's chains and sets. Port-level chains are
/// `<kind><4|6>-<hash>-<ns>/<name>/<proto>/<port name>` (unique by the readable part, which is
/// cut at [`READABLE_MAX`]; the hash covers all of it); per-endpoint chains and affinity sets are
/// `ep<4|6>-<hash>-<ip>/<port>` and `aff<4|6>-<hash>-<ip>/<port>-<timeout>`: short, and unique as
/// long as no two service ports that share an endpoint share a hash (64 bits).
#[derive(Debug, Clone)]
pub struct Names {
    /// `<4|6>-<hash>`.
    tag: String,
    readable: String,
}

/// At most this many bytes of `<ns>/<name>/<proto>/<port name>` go into a chain name (nft's
/// names have at most 255).
const READABLE_MAX: usize = 160;

// === impl Names ===

impl Names {
    /// The names for service port `k`.
    pub fn of(k: &PortKey) -> Names {
        let f = if k.family == Family::V4 { '4' } else { '6' };
        let port = if k.port_name.is_empty() {
            "-"
        } else {
            &k.port_name
        };
        let mut readable = format!("{}/{}/{}/{port}", k.namespace, k.name, k.proto.nft());
        let tag = format!("{f}-{:016x}", hash_str(&readable));
        if readable.len() > READABLE_MAX {
            let mut end = READABLE_MAX;
            while !readable.is_char_boundary(end) {
                end -= 1;
            }
            readable.truncate(end);
        }
        Names { tag, readable }
    }

    /// A port-level chain: `svc`, `ext`, `svl`, `svx` or `fw`.
    pub fn chain(&self, kind: &str) -> String {
        format!("{kind}{}-{}", self.tag, self.readable)
    }

    /// The chain of endpoint `e`.
    pub fn endpoint(&self, e: &Endpoint) -> String {
        format!("ep{}-{}", self.tag, endpoint_text(e))
    }

    /// The affinity set of endpoint `e`.
    pub fn affinity(&self, e: &Endpoint, timeout: u32) -> String {
        format!("aff{}-{}-{timeout}", self.tag, endpoint_text(e))
    }
}

/// `<ip>/<port>`, with `.` for `:` in IPv6 addresses (nft takes neither `:` nor `[` in names).
fn endpoint_text(e: &Endpoint) -> String {
    let mut s = format!("{}/{}", e.ip, e.port);
    if e.ip.is_ipv6() {
        s = s.replace(':', ".");
    }
    s
}

#[cfg(test)]
mod tests;
