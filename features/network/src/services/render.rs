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
use std::net::IpAddr;

use ipnet::IpNet;

use super::model::{Endpoint, Family, PortKey, ServicePort, ServiceTable, Target};

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
    pub chains: BTreeMap<String, Vec<String>>,
    /// Affinity sets: name → declaration body.
    pub sets: BTreeMap<String, String>,
    /// Map name → key → verdict.
    pub elements: BTreeMap<&'static str, BTreeMap<String, String>>,
}

// === impl Ruleset ===

impl Ruleset {
    /// Renders `table` for a node whose pods live in `pod_cidrs` (pods reaching an
    /// externalTrafficPolicy-Local address are sent to every endpoint, like kube-proxy).
    pub fn render(table: &ServiceTable, pod_cidrs: &[IpNet]) -> Ruleset {
        let mut r = Ruleset::default();
        for m in MAPS {
            r.elements.insert(m, BTreeMap::new());
        }
        for p in &table.ports {
            r.add_port(p, pod_cidrs);
        }
        r
    }

    /// Number of map elements.
    pub fn element_count(&self) -> usize {
        self.elements.values().map(BTreeMap::len).sum()
    }

    fn element(&mut self, map: &'static str, key: String, verdict: String) {
        self.elements.entry(map).or_default().insert(key, verdict);
    }

    fn add_port(&mut self, p: &ServicePort, pod_cidrs: &[IpNet]) {
        let fam = fam(p.key.family);
        let proto = p.key.proto.nft();
        let id = ident(&p.key);
        let svc = format!("svc{id}");
        let ext = format!("ext{id}");
        // Cluster traffic.
        if let Some(ip) = p.cluster_ip {
            let key = format!("{ip} . {proto} . {}", p.port);
            match &p.cluster {
                Target::Reject => {
                    self.element(no_ep_map(p.key.family), key, "goto reject-chain".into())
                }
                Target::Drop => {
                    self.element(svc_map(p.key.family), key, "goto drop-chain".into());
                }
                Target::Endpoints(eps) => {
                    self.balance(&svc, p, eps);
                    self.element(svc_map(p.key.family), key, format!("goto {svc}"));
                }
            }
        }
        // External traffic: NodePorts, externalIPs, load-balancer IPs.
        if p.node_port.is_none() && p.external_ips.is_empty() {
            return;
        }
        let verdict = match &p.external {
            Target::Reject => "goto reject-chain".to_owned(),
            Target::Drop | Target::Endpoints(_) => format!("goto {ext}"),
        };
        let (ips_map, np_map) = match &p.external {
            Target::Reject => (no_ep_map(p.key.family), no_ep_np_map(p.key.family)),
            _ => (svc_map(p.key.family), np_map(p.key.family)),
        };
        for ip in &p.external_ips {
            self.element(
                ips_map,
                format!("{ip} . {proto} . {}", p.port),
                verdict.clone(),
            );
        }
        if let Some(np) = p.node_port {
            self.element(np_map, format!("{proto} . {np}"), verdict.clone());
        }
        if p.external == Target::Reject {
            return;
        }
        let mut rules = Vec::new();
        if p.external_local {
            // Node-originated traffic is masqueraded and may use any endpoint; so may pods.
            rules.push("fib saddr type local jump mark-for-masquerade".to_owned());
            let cluster_chain = match &p.cluster {
                Target::Endpoints(_) if p.cluster_ip.is_some() => format!("goto {svc}"),
                _ => "goto drop-chain".to_owned(),
            };
            rules.push(format!("fib saddr type local {cluster_chain}"));
            let pods: Vec<String> = pod_cidrs
                .iter()
                .filter(|c| Family::of(c.addr()) == p.key.family)
                .map(ToString::to_string)
                .collect();
            if !pods.is_empty() {
                rules.push(format!(
                    "{fam} saddr {{ {} }} {cluster_chain}",
                    pods.join(", ")
                ));
            }
            match &p.external {
                Target::Endpoints(eps) => {
                    let svl = format!("svl{id}");
                    self.balance(&svl, p, eps);
                    rules.push(format!("goto {svl}"));
                }
                _ => rules.push("drop".into()),
            }
        } else {
            rules.push("jump mark-for-masquerade".into());
            match &p.external {
                Target::Endpoints(_) if p.cluster == p.external && p.cluster_ip.is_some() => {
                    rules.push(format!("goto {svc}"));
                }
                Target::Endpoints(eps) => {
                    let svx = format!("svx{id}");
                    self.balance(&svx, p, eps);
                    rules.push(format!("goto {svx}"));
                }
                _ => rules.push("drop".into()),
            }
        }
        self.chains.insert(ext, rules);
    }

    /// A chain `name` that picks one of `eps` (sticky with affinity) and the endpoint chains.
    fn balance(&mut self, name: &str, p: &ServicePort, eps: &[Endpoint]) {
        let fam = fam(p.key.family);
        let mut rules = Vec::new();
        let mut targets = Vec::new();
        for e in eps {
            let ep = format!("ep{}", ep_ident(&p.key, e));
            if let Some(timeout) = p.affinity {
                let set = format!("aff{}-{timeout}", ep_ident(&p.key, e));
                rules.push(format!("{fam} saddr @{set} goto {ep}"));
                self.sets.insert(
                    set,
                    format!(
                        "type {}_addr; flags dynamic,timeout; timeout {timeout}s;",
                        if p.key.family == Family::V4 {
                            "ipv4"
                        } else {
                            "ipv6"
                        }
                    ),
                );
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
        for (i, t) in targets.iter().enumerate() {
            if i + 1 == n {
                rules.push(format!("goto {t}"));
            } else {
                rules.push(format!("numgen random mod {} == 0 goto {t}", n - i));
            }
        }
        self.chains.insert(name.to_owned(), rules);
    }

    fn endpoint_chain(&mut self, name: &str, p: &ServicePort, e: &Endpoint) {
        let fam = fam(p.key.family);
        let mut rules = vec![format!("{fam} saddr {} jump mark-for-masquerade", e.ip)];
        if let Some(timeout) = p.affinity {
            let set = format!("aff{}-{timeout}", ep_ident(&p.key, e));
            rules.push(format!("update @{set} {{ {fam} saddr }}"));
        }
        let to = match e.ip {
            IpAddr::V4(ip) => format!("{ip}:{}", e.port),
            IpAddr::V6(ip) => format!("[{ip}]:{}", e.port),
        };
        rules.push(format!(
            "meta l4proto {} dnat {fam} to {to}",
            p.key.proto.nft()
        ));
        self.chains.insert(name.to_owned(), rules);
    }
}

/// The declarations of maps and static chains, and the static chains' rules (flushed first).
pub fn static_part() -> String {
    let mut s = format!("add table inet {TABLE}\n");
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
        // NodePorts on every local address but loopback (no route_localnet, CVE-2020-8558).
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

fn fam(f: Family) -> &'static str {
    match f {
        Family::V4 => "ip",
        Family::V6 => "ip6",
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
