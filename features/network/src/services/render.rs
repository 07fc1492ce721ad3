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
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use super::model::{Endpoint, Family, PortKey, ServicePort, ServiceTable, Target};
use super::rule::{Action, AffinitySet, ElemKey, Goto, Match, Rule};

/// The table (family `inet`).
pub const TABLE: &str = "knet-services";
/// The packet mark bit asking postrouting to masquerade (kube-proxy's value).
pub const MASQ_MARK: u32 = 0x4000;

/// Verdict maps holding the per-service elements.
pub const MAPS: [&str; 8] = [
    "service-ips-v4",
    "service-ips-v6",
    "service-nodeports-v4",
    "service-nodeports-v6",
    "no-endpoint-services-v4",
    "no-endpoint-services-v6",
    "no-endpoint-nodeports-v4",
    "no-endpoint-nodeports-v6",
];

/// Where Services without endpoints go (TCP reset, ICMP unreachable).
pub const REJECT_CHAIN: &str = "reject-chain";
/// Where a `Local` policy without local endpoints goes.
pub const DROP_CHAIN: &str = "drop-chain";
/// Sets the masquerade mark.
pub const MARK_CHAIN: &str = "mark-for-masquerade";

/// Chains every table has (hooked or jumped to from hooks).
pub const STATIC_CHAINS: [&str; 12] = [
    "nat-prerouting",
    "nat-output",
    "nat-postrouting",
    "filter-input",
    "filter-forward",
    "filter-output",
    "services",
    "endpoints-check",
    "mark-for-masquerade",
    "masquerading",
    "reject-chain",
    "drop-chain",
];

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
        Ruleset::render_ports(&table.ports, pod_cidrs)
    }

    /// Renders some service ports (one Service's, for an incremental update).
    pub fn render_ports(ports: &[ServicePort], pod_cidrs: &[IpNet]) -> Ruleset {
        let mut r = Ruleset::default();
        for m in MAPS {
            r.elements.insert(m, BTreeMap::new());
        }
        for p in ports {
            r.add_port(p, pod_cidrs);
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

    fn add_port(&mut self, p: &ServicePort, pod_cidrs: &[IpNet]) {
        let family = p.key.family;
        let proto = p.key.proto;
        let id = ident(&p.key);
        let svc = format!("svc{id}");
        let ext = format!("ext{id}");
        // Cluster traffic.
        if let Some(ip) = p.cluster_ip {
            let key = ElemKey::vip(ip, proto, p.port);
            match &p.cluster {
                Target::Reject => self.element(no_ep_map(family), key, REJECT_CHAIN),
                Target::Drop => self.element(svc_map(family), key, DROP_CHAIN),
                Target::Endpoints(eps) => {
                    self.balance(&svc, p, eps);
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
        if p.external == Target::Reject {
            return;
        }
        let mut rules = Vec::new();
        if p.external_local {
            // Node-originated traffic is masqueraded and may use any endpoint; so may pods.
            rules.push(Rule::when(
                vec![Match::FibSaddrLocal],
                Action::Jump(MARK_CHAIN.into()),
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
                    let svl = format!("svl{id}");
                    self.balance(&svl, p, eps);
                    rules.push(Rule::always(Action::Goto(svl)));
                }
                _ => rules.push(Rule::always(Action::Drop)),
            }
        } else {
            rules.push(Rule::always(Action::Jump(MARK_CHAIN.into())));
            match &p.external {
                Target::Endpoints(_) if p.cluster == p.external && p.cluster_ip.is_some() => {
                    rules.push(Rule::always(Action::Goto(svc)));
                }
                Target::Endpoints(eps) => {
                    let svx = format!("svx{id}");
                    self.balance(&svx, p, eps);
                    rules.push(Rule::always(Action::Goto(svx)));
                }
                _ => rules.push(Rule::always(Action::Drop)),
            }
        }
        self.chains.insert(ext, rules);
    }

    /// A chain `name` that picks one of `eps` (sticky with affinity) and the endpoint chains.
    fn balance(&mut self, name: &str, p: &ServicePort, eps: &[Endpoint]) {
        let family = p.key.family;
        let mut rules = Vec::new();
        let mut targets = Vec::new();
        for e in eps {
            let ep = format!("ep{}", ep_ident(&p.key, e));
            if let Some(timeout) = p.affinity {
                let set = format!("aff{}-{timeout}", ep_ident(&p.key, e));
                rules.push(Rule::when(
                    vec![Match::SaddrInSet(family, set.clone())],
                    Action::Goto(ep.clone()),
                ));
                self.sets.insert(set, AffinitySet { family, timeout });
            }
            self.endpoint_chain(&ep, p, e);
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

    fn endpoint_chain(&mut self, name: &str, p: &ServicePort, e: &Endpoint) {
        let family = p.key.family;
        let mut rules = vec![Rule::when(
            vec![Match::Saddr(IpNet::from(e.ip))],
            Action::Jump(MARK_CHAIN.into()),
        )];
        if let Some(timeout) = p.affinity {
            let set = format!("aff{}-{timeout}", ep_ident(&p.key, e));
            rules.push(Rule::always(Action::UpdateSaddr(family, set)));
        }
        rules.push(Rule::when(
            vec![Match::L4Proto(p.key.proto)],
            Action::Dnat(SocketAddr::new(e.ip, e.port)),
        ));
        self.chains.insert(name.to_owned(), rules);
    }
}

/// Named sets of the static part (NodePort addresses), when a [`StaticConfig`] asks for them.
pub const NODE_PORT_SETS: [&str; 2] = ["nodeport-ips-v4", "nodeport-ips-v6"];

/// What the static part of the table depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticConfig {
    /// The addresses NodePorts answer on; `None` means every local address but loopback
    /// (`fib daddr type local`), `Some` only these (sets `nodeport-ips-v4/v6`).
    pub node_port_ips: Option<Vec<IpAddr>>,
}

// === impl StaticConfig ===

impl StaticConfig {
    /// Whether `set` belongs to the static part under this config.
    pub fn owns_set(&self, set: &str) -> bool {
        self.node_port_ips.is_some() && NODE_PORT_SETS.contains(&set)
    }
}

/// The declarations of maps and static chains, and the static chains' rules (flushed first).
pub fn static_part(config: &StaticConfig) -> String {
    let mut s = format!("add table inet {TABLE}\n");
    if let Some(ips) = &config.node_port_ips {
        for (set, ty, family) in [
            (NODE_PORT_SETS[0], "ipv4_addr", Family::V4),
            (NODE_PORT_SETS[1], "ipv6_addr", Family::V6),
        ] {
            let _ = writeln!(s, "add set inet {TABLE} {set} {{ type {ty} ; }}");
            let _ = writeln!(s, "flush set inet {TABLE} {set}");
            let members: Vec<String> = ips
                .iter()
                .filter(|ip| Family::of(**ip) == family && !ip.is_loopback())
                .map(ToString::to_string)
                .collect();
            if !members.is_empty() {
                let _ = writeln!(
                    s,
                    "add element inet {TABLE} {set} {{ {} }}",
                    members.join(", ")
                );
            }
        }
    }
    for (m, ty) in [
        ("service-ips-v4", "ipv4_addr . inet_proto . inet_service"),
        ("service-ips-v6", "ipv6_addr . inet_proto . inet_service"),
        ("service-nodeports-v4", "inet_proto . inet_service"),
        ("service-nodeports-v6", "inet_proto . inet_service"),
        (
            "no-endpoint-services-v4",
            "ipv4_addr . inet_proto . inet_service",
        ),
        (
            "no-endpoint-services-v6",
            "ipv6_addr . inet_proto . inet_service",
        ),
        ("no-endpoint-nodeports-v4", "inet_proto . inet_service"),
        ("no-endpoint-nodeports-v6", "inet_proto . inet_service"),
    ] {
        let _ = writeln!(s, "add map inet {TABLE} {m} {{ type {ty} : verdict ; }}");
    }
    let hooks = [
        ("nat-prerouting", "nat", "prerouting", -100, "jump services"),
        ("nat-output", "nat", "output", -100, "jump services"),
        (
            "nat-postrouting",
            "nat",
            "postrouting",
            100,
            "jump masquerading",
        ),
        (
            "filter-input",
            "filter",
            "input",
            -1,
            "ct state new jump endpoints-check",
        ),
        (
            "filter-forward",
            "filter",
            "forward",
            -1,
            "ct state new jump endpoints-check",
        ),
        (
            "filter-output",
            "filter",
            "output",
            -1,
            "ct state new jump endpoints-check",
        ),
    ];
    for (name, ty, hook, prio, _) in hooks {
        let _ = writeln!(
            s,
            "add chain inet {TABLE} {name} {{ type {ty} hook {hook} priority {prio} ; policy accept ; }}"
        );
    }
    for name in &STATIC_CHAINS[6..] {
        let _ = writeln!(s, "add chain inet {TABLE} {name}");
    }
    for name in STATIC_CHAINS {
        let _ = writeln!(s, "flush chain inet {TABLE} {name}");
    }
    let mut rule = |chain: &str, r: &str| {
        let _ = writeln!(s, "add rule inet {TABLE} {chain} {r}");
    };
    for (name, _, _, _, r) in hooks {
        rule(name, r);
    }
    for (chain, prefix) in [("services", "service"), ("endpoints-check", "no-endpoint")] {
        rule(
            chain,
            &format!(
                "ip daddr . meta l4proto . th dport vmap @{prefix}-{}-v4",
                ips(prefix)
            ),
        );
        rule(
            chain,
            &format!(
                "ip6 daddr . meta l4proto . th dport vmap @{prefix}-{}-v6",
                ips(prefix)
            ),
        );
        if config.node_port_ips.is_some() {
            // NodePorts on the configured addresses only (kube-proxy's --nodeport-addresses).
            for (fam, set, v) in [("ip", NODE_PORT_SETS[0], 4), ("ip6", NODE_PORT_SETS[1], 6)] {
                rule(
                    chain,
                    &format!(
                        "{fam} daddr @{set} meta l4proto . th dport vmap @{prefix}-nodeports-v{v}"
                    ),
                );
            }
        } else {
            // NodePorts on every local address but loopback (no route_localnet,
            // CVE-2020-8558).
            rule(
                chain,
                &format!(
                    "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @{prefix}-nodeports-v4"
                ),
            );
            rule(
                chain,
                &format!(
                    "fib daddr type local ip6 daddr != ::1 meta l4proto . th dport vmap @{prefix}-nodeports-v6"
                ),
            );
        }
    }
    rule(
        "mark-for-masquerade",
        &format!("meta mark set meta mark | {MASQ_MARK:#x}"),
    );
    rule(
        "masquerading",
        &format!("meta mark & {MASQ_MARK:#x} == 0 return"),
    );
    rule(
        "masquerading",
        &format!("meta mark set meta mark ^ {MASQ_MARK:#x}"),
    );
    rule("masquerading", "masquerade fully-random");
    rule("reject-chain", "meta l4proto tcp reject with tcp reset");
    rule("reject-chain", "reject");
    rule("drop-chain", "drop");
    s
}

fn ips(prefix: &str) -> &'static str {
    if prefix == "service" {
        "ips"
    } else {
        "services"
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

fn no_ep_np_map(f: Family) -> &'static str {
    match f {
        Family::V4 => "no-endpoint-nodeports-v4",
        Family::V6 => "no-endpoint-nodeports-v6",
    }
}

/// `<4|6>-<hash>-<ns>/<name>/<proto>/<port name>`: unique (the hash) and readable (the rest).
fn ident(k: &PortKey) -> String {
    let f = if k.family == Family::V4 { '4' } else { '6' };
    let readable = format!(
        "{}/{}/{}/{}",
        k.namespace,
        k.name,
        k.proto.nft(),
        if k.port_name.is_empty() {
            "-"
        } else {
            &k.port_name
        }
    );
    let mut id = format!("{f}-{}-{readable}", hash(&readable));
    id.truncate(180);
    id
}

fn ep_ident(k: &PortKey, e: &Endpoint) -> String {
    let ep = format!("{}/{}", e.ip, e.port).replace(':', ".");
    format!("{}__{ep}", ident(k))
}

/// FNV-1a 32, 8 hex digits: stable across builds.
fn hash(s: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

#[cfg(test)]
mod tests;
