//! The static part of `table inet knet-services`: the verdict maps, the base chains hooked into
//! netfilter and the chains they jump to (kube-proxy's nftables layout). It changes only with
//! [`StaticConfig`] (the NodePort addresses), and is (re)written by every full transaction; the
//! per-Service part lives in [`crate::services::render`].
//!
//! ```text
//! filter-prerouting-pre-dnat / filter-output-pre-dnat (priority -110):
//!     ct state new jump firewall-check      (loadBalancerSourceRanges, vmap @firewall-ips-*)
//! nat-prerouting / nat-output (-100):       jump services   (vmap @service-ips-*, NodePorts)
//! filter-input / -forward / -output (-1):   ct state new jump endpoints-check (reject)
//! nat-postrouting (100):                    jump masquerading
//! ```

use std::fmt::Write as _;
use std::net::IpAddr;

use knet_core::config::NodePortAddress;

use super::model::Family;

/// The table (family `inet`).
pub const TABLE: &str = "knet-services";
/// The packet mark bit asking postrouting to masquerade (kube-proxy's value).
pub const MASQ_MARK: u32 = 0x4000;

/// Where Services without endpoints go (TCP reset, ICMP unreachable).
pub const REJECT_CHAIN: &str = "reject-chain";
/// Where a `Local` policy without local endpoints goes.
pub const DROP_CHAIN: &str = "drop-chain";

/// Verdict maps holding the per-service elements, with their key types.
const MAP_TYPES: [(&str, &str); 10] = [
    ("service-ips-v4", V4_KEY),
    ("service-ips-v6", V6_KEY),
    ("service-nodeports-v4", PORT_KEY),
    ("service-nodeports-v6", PORT_KEY),
    ("no-endpoint-services-v4", V4_KEY),
    ("no-endpoint-services-v6", V6_KEY),
    ("no-endpoint-nodeports-v4", PORT_KEY),
    ("no-endpoint-nodeports-v6", PORT_KEY),
    ("firewall-ips-v4", V4_KEY),
    ("firewall-ips-v6", V6_KEY),
];
const V4_KEY: &str = "ipv4_addr . inet_proto . inet_service";
const V6_KEY: &str = "ipv6_addr . inet_proto . inet_service";
const PORT_KEY: &str = "inet_proto . inet_service";

/// The verdict maps' names.
pub const MAPS: [&str; 10] = [
    MAP_TYPES[0].0,
    MAP_TYPES[1].0,
    MAP_TYPES[2].0,
    MAP_TYPES[3].0,
    MAP_TYPES[4].0,
    MAP_TYPES[5].0,
    MAP_TYPES[6].0,
    MAP_TYPES[7].0,
    MAP_TYPES[8].0,
    MAP_TYPES[9].0,
];

/// Base chains: name, type, hook, priority, the one rule.
const HOOKS: [(&str, &str, &str, i32, &str); 8] = [
    (
        "filter-prerouting-pre-dnat",
        "filter",
        "prerouting",
        -110,
        "ct state new jump firewall-check",
    ),
    (
        "filter-output-pre-dnat",
        "filter",
        "output",
        -110,
        "ct state new jump firewall-check",
    ),
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

/// Regular chains of the static part. (Per-service chains set the masquerade mark inline, not
/// with kube-proxy's `jump mark-for-masquerade`: every jump is one more chain for the kernel to
/// walk when it validates the table after a change.)
const REGULAR: [&str; 6] = [
    "services",
    "endpoints-check",
    "firewall-check",
    "masquerading",
    REJECT_CHAIN,
    DROP_CHAIN,
];

/// Every chain of the static part.
pub const STATIC_CHAINS: [&str; 14] = [
    HOOKS[0].0, HOOKS[1].0, HOOKS[2].0, HOOKS[3].0, HOOKS[4].0, HOOKS[5].0, HOOKS[6].0, HOOKS[7].0,
    REGULAR[0], REGULAR[1], REGULAR[2], REGULAR[3], REGULAR[4], REGULAR[5],
];

/// Named sets of the static part (NodePort addresses), when a [`StaticConfig`] asks for them.
pub const NODE_PORT_SETS: [&str; 2] = ["nodeport-ips-v4", "nodeport-ips-v6"];

/// What the static part of the table depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticConfig {
    /// The IPv4 addresses NodePorts answer on; `None` means every local address but loopback
    /// (`fib daddr type local`), `Some` only these (set `nodeport-ips-v4`).
    pub node_port_ips_v4: Option<Vec<IpAddr>>,
    /// The same for IPv6 (set `nodeport-ips-v6`).
    pub node_port_ips_v6: Option<Vec<IpAddr>>,
}

// === impl StaticConfig ===

impl StaticConfig {
    /// Whether `set` belongs to the static part under this config.
    pub fn owns_set(&self, set: &str) -> bool {
        (set == NODE_PORT_SETS[0] && self.node_port_ips_v4.is_some())
            || (set == NODE_PORT_SETS[1] && self.node_port_ips_v6.is_some())
    }

    /// The static part for `network.nodeport-addresses` on a node whose Node object lists
    /// `primary` as InternalIPs and that has `local` addresses. Per family, as kube-proxy:
    /// `all` (or no entry of the family) means every local address; otherwise the primary IPs
    /// of the family (with `primary`) and the local addresses inside the family's CIDRs.
    pub fn for_node_ports(
        list: &[NodePortAddress],
        primary: &[IpAddr],
        local: &[IpAddr],
    ) -> StaticConfig {
        let all = list.contains(&NodePortAddress::All);
        let pick = |family: Family| -> Option<Vec<IpAddr>> {
            let cidrs: Vec<_> = list
                .iter()
                .filter_map(|a| match a {
                    NodePortAddress::Cidr(n) if Family::of(n.addr()) == family => Some(*n),
                    _ => None,
                })
                .collect();
            let primaries: Vec<IpAddr> = if list.contains(&NodePortAddress::Primary) {
                primary
                    .iter()
                    .copied()
                    .filter(|ip| Family::of(*ip) == family)
                    .collect()
            } else {
                Vec::new()
            };
            if all || (cidrs.is_empty() && primaries.is_empty()) {
                return None;
            }
            let mut ips = primaries;
            ips.extend(
                local
                    .iter()
                    .filter(|ip| Family::of(**ip) == family)
                    .filter(|ip| cidrs.iter().any(|n| n.contains(*ip))),
            );
            ips.retain(|ip| !ip.is_loopback());
            ips.sort();
            ips.dedup();
            Some(ips)
        };
        StaticConfig {
            node_port_ips_v4: pick(Family::V4),
            node_port_ips_v6: pick(Family::V6),
        }
    }

    /// Whether computing this config needs the node's local addresses.
    pub fn needs_local_addresses(list: &[NodePortAddress]) -> bool {
        !list.contains(&NodePortAddress::All)
            && list.iter().any(|a| matches!(a, NodePortAddress::Cidr(_)))
    }

    fn node_port_ips(&self, family: Family) -> Option<&Vec<IpAddr>> {
        match family {
            Family::V4 => self.node_port_ips_v4.as_ref(),
            Family::V6 => self.node_port_ips_v6.as_ref(),
        }
    }
}

/// The declarations of maps, sets and static chains, and the static chains' rules (flushed
/// first), as `nft -f` text.
pub fn static_part(config: &StaticConfig) -> String {
    let mut s = format!("add table inet {TABLE}\n");
    for (m, ty) in MAP_TYPES {
        let _ = writeln!(s, "add map inet {TABLE} {m} {{ type {ty} : verdict ; }}");
    }
    for (family, set, ty) in [
        (Family::V4, NODE_PORT_SETS[0], "ipv4_addr"),
        (Family::V6, NODE_PORT_SETS[1], "ipv6_addr"),
    ] {
        let Some(ips) = config.node_port_ips(family) else {
            continue;
        };
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
    for (name, ty, hook, prio, _) in HOOKS {
        let _ = writeln!(
            s,
            "add chain inet {TABLE} {name} {{ type {ty} hook {hook} priority {prio} ; policy accept ; }}"
        );
    }
    for name in REGULAR {
        let _ = writeln!(s, "add chain inet {TABLE} {name}");
    }
    for name in STATIC_CHAINS {
        let _ = writeln!(s, "flush chain inet {TABLE} {name}");
    }
    let mut rule = |chain: &str, r: &str| {
        let _ = writeln!(s, "add rule inet {TABLE} {chain} {r}");
    };
    for (name, _, _, _, r) in HOOKS {
        rule(name, r);
    }
    let by_address = [
        ("services", "service-ips"),
        ("endpoints-check", "no-endpoint-services"),
        ("firewall-check", "firewall-ips"),
    ];
    for (chain, map) in by_address {
        rule(
            chain,
            &format!("ip daddr . meta l4proto . th dport vmap @{map}-v4"),
        );
        rule(
            chain,
            &format!("ip6 daddr . meta l4proto . th dport vmap @{map}-v6"),
        );
    }
    for (chain, map) in [
        ("services", "service-nodeports"),
        ("endpoints-check", "no-endpoint-nodeports"),
    ] {
        for (family, fam, v, set, loopback) in [
            (Family::V4, "ip", 4, NODE_PORT_SETS[0], "127.0.0.0/8"),
            (Family::V6, "ip6", 6, NODE_PORT_SETS[1], "::1"),
        ] {
            let dport = format!("meta l4proto . th dport vmap @{map}-v{v}");
            if config.node_port_ips(family).is_some() {
                // Only the configured addresses (kube-proxy's --nodeport-addresses).
                rule(chain, &format!("{fam} daddr @{set} {dport}"));
            } else {
                // Every local address but loopback (no route_localnet, CVE-2020-8558).
                rule(
                    chain,
                    &format!("fib daddr type local {fam} daddr != {loopback} {dport}"),
                );
            }
        }
    }
    rule(
        "masquerading",
        &format!("meta mark & {MASQ_MARK:#x} == 0 return"),
    );
    rule(
        "masquerading",
        &format!("meta mark set meta mark ^ {MASQ_MARK:#x}"),
    );
    rule("masquerading", "masquerade fully-random");
    rule(REJECT_CHAIN, "meta l4proto tcp reject with tcp reset");
    rule(REJECT_CHAIN, "reject");
    rule(DROP_CHAIN, "drop");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_part_hooks_every_path() {
        let s = static_part(&StaticConfig::default());
        for needle in [
            "add chain inet knet-services nat-prerouting { type nat hook prerouting priority -100 ; policy accept ; }",
            "add chain inet knet-services nat-output { type nat hook output priority -100 ; policy accept ; }",
            "add chain inet knet-services filter-prerouting-pre-dnat { type filter hook prerouting priority -110 ; policy accept ; }",
            "add rule inet knet-services filter-output-pre-dnat ct state new jump firewall-check",
            "add rule inet knet-services services ip daddr . meta l4proto . th dport vmap @service-ips-v4",
            "add rule inet knet-services endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services-v4",
            "add rule inet knet-services firewall-check ip6 daddr . meta l4proto . th dport vmap @firewall-ips-v6",
            "add rule inet knet-services services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports-v4",
            "add rule inet knet-services reject-chain meta l4proto tcp reject with tcp reset",
            "add rule inet knet-services masquerading masquerade fully-random",
        ] {
            assert!(s.contains(needle), "missing {needle:?} in\n{s}");
        }
        assert!(!s.contains("nodeport-ips"), "{s}");
    }

    #[test]
    fn node_port_addresses_restrict_each_family_on_its_own() {
        let config = StaticConfig {
            node_port_ips_v4: Some(vec![
                "192.168.1.5".parse().expect("ip"),
                "127.0.0.1".parse().expect("ip"),
            ]),
            node_port_ips_v6: None,
        };
        let s = static_part(&config);
        for needle in [
            "add set inet knet-services nodeport-ips-v4 { type ipv4_addr ; }",
            "add element inet knet-services nodeport-ips-v4 { 192.168.1.5 }",
            "add rule inet knet-services services ip daddr @nodeport-ips-v4 meta l4proto . th dport vmap @service-nodeports-v4",
            "add rule inet knet-services endpoints-check ip daddr @nodeport-ips-v4 meta l4proto . th dport vmap @no-endpoint-nodeports-v4",
            "add rule inet knet-services services fib daddr type local ip6 daddr != ::1 meta l4proto . th dport vmap @service-nodeports-v6",
        ] {
            assert!(s.contains(needle), "missing {needle:?} in\n{s}");
        }
        assert!(!s.contains("nodeport-ips-v6"), "{s}");
        assert!(config.owns_set("nodeport-ips-v4") && !config.owns_set("nodeport-ips-v6"));
    }

    #[test]
    fn nodeport_addresses_expand_like_kube_proxy() {
        let ip = |s: &str| -> IpAddr { s.parse().expect("ip") };
        let primary = [ip("192.168.1.5"), ip("fd00::5")];
        let local = [
            ip("192.168.1.5"),
            ip("10.9.0.1"),
            ip("10.9.0.2"),
            ip("172.16.0.1"),
            ip("fd00::5"),
            ip("fe80::1"),
        ];
        let cidr = |s: &str| NodePortAddress::Cidr(s.parse().expect("cidr"));
        let all = StaticConfig::for_node_ports(&[NodePortAddress::All], &primary, &local);
        assert_eq!(all, StaticConfig::default());
        let p = StaticConfig::for_node_ports(&[NodePortAddress::Primary], &primary, &local);
        assert_eq!(p.node_port_ips_v4, Some(vec![ip("192.168.1.5")]));
        assert_eq!(p.node_port_ips_v6, Some(vec![ip("fd00::5")]));
        // A CIDR of one family leaves the other family on all addresses.
        let c = StaticConfig::for_node_ports(&[cidr("10.9.0.0/16")], &primary, &local);
        assert_eq!(
            c.node_port_ips_v4,
            Some(vec![ip("10.9.0.1"), ip("10.9.0.2")])
        );
        assert_eq!(c.node_port_ips_v6, None);
        // No local address inside the CIDR: NodePorts answer nowhere in that family.
        let none = StaticConfig::for_node_ports(&[cidr("10.200.0.0/16")], &primary, &local);
        assert_eq!(none.node_port_ips_v4, Some(Vec::new()));
        let mixed = StaticConfig::for_node_ports(
            &[NodePortAddress::Primary, cidr("172.16.0.0/12")],
            &primary,
            &local,
        );
        assert_eq!(
            mixed.node_port_ips_v4,
            Some(vec![ip("172.16.0.1"), ip("192.168.1.5")])
        );
        assert!(StaticConfig::needs_local_addresses(&[cidr("10.0.0.0/8")]));
        assert!(!StaticConfig::needs_local_addresses(&[
            NodePortAddress::Primary
        ]));
    }
}
