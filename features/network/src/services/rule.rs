//! The typed form of what the services table holds per Service: rules of the per-service
//! chains, affinity set declarations and verdict-map elements. Each prints as the `nft` text the
//! full transaction and the docs use ([`std::fmt::Display`]) and encodes as nf_tables netlink
//! expressions for incremental batches ([`crate::services::nfnl`]); the two must stay
//! equivalent (tests/services.rs compares `nft list table` after applying both ways).
//!
//! Only the shapes the renderer needs exist: a rule is a few matches and one action.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use super::model::{Family, Proto};

/// One condition of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// `fib saddr type local`: the packet comes from an address of this node.
    FibSaddrLocal,
    /// `ip saddr 10.1.0.0/16` (a single address prints without the prefix length).
    Saddr(IpNet),
    /// `ip saddr @set`.
    SaddrInSet(Family, String),
    /// `numgen random mod N == 0`.
    Numgen(u32),
    /// `meta l4proto tcp`.
    L4Proto(Proto),
}

/// What a rule does when its matches hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `jump <chain>`.
    Jump(String),
    /// `goto <chain>`.
    Goto(String),
    /// `drop`.
    Drop,
    /// `return`.
    Return,
    /// `update @set { ip saddr }`: add or refresh the source address in a timeout set.
    UpdateSaddr(Family, String),
    /// `dnat ip to 10.1.0.5:8080` (needs an [`Match::L4Proto`] before it).
    Dnat(SocketAddr),
    /// `meta mark set meta mark | <bits>`: set bits of the packet mark and go on with the
    /// chain (what `jump mark-for-masquerade` does, without a jump for the kernel to follow).
    OrMark(u32),
}

/// One rule of a per-service chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// All must hold.
    pub matches: Vec<Match>,
    /// Then this.
    pub action: Action,
}

/// A per-endpoint affinity set: `type ipv4_addr; flags dynamic,timeout; timeout <s>s;`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AffinitySet {
    /// Address family of the members.
    pub family: Family,
    /// Entry lifetime in seconds.
    pub timeout: u32,
}

/// The key of a verdict-map element: `addr . proto . port` (service maps) or `proto . port`
/// (NodePort maps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ElemKey {
    /// The destination address, absent in NodePort maps.
    pub addr: Option<IpAddr>,
    /// Transport protocol.
    pub proto: Proto,
    /// Destination port.
    pub port: u16,
}

/// The verdict of a map element: `goto <chain>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Goto(pub String);

// === impl Rule ===

impl Rule {
    /// A rule with no matches.
    pub fn always(action: Action) -> Rule {
        Rule {
            matches: Vec::new(),
            action,
        }
    }

    /// A rule with matches.
    pub fn when(matches: Vec<Match>, action: Action) -> Rule {
        Rule { matches, action }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for m in &self.matches {
            write!(f, "{m} ")?;
        }
        write!(f, "{}", self.action)
    }
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Match::FibSaddrLocal => f.write_str("fib saddr type local"),
            Match::Saddr(net) => {
                let fam = nft_family(Family::of(net.addr()));
                if net.prefix_len() == net.max_prefix_len() {
                    write!(f, "{fam} saddr {}", net.addr())
                } else {
                    write!(f, "{fam} saddr {net}")
                }
            }
            Match::SaddrInSet(family, set) => write!(f, "{} saddr @{set}", nft_family(*family)),
            Match::Numgen(n) => write!(f, "numgen random mod {n} == 0"),
            Match::L4Proto(p) => write!(f, "meta l4proto {}", p.nft()),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Jump(c) => write!(f, "jump {c}"),
            Action::Goto(c) => write!(f, "goto {c}"),
            Action::Drop => f.write_str("drop"),
            Action::Return => f.write_str("return"),
            Action::UpdateSaddr(family, set) => {
                write!(f, "update @{set} {{ {} saddr }}", nft_family(*family))
            }
            Action::Dnat(to) => write!(f, "dnat {} to {to}", nft_family(Family::of(to.ip()))),
            Action::OrMark(bits) => write!(f, "meta mark set meta mark | {bits:#x}"),
        }
    }
}

// === impl AffinitySet ===

impl fmt::Display for AffinitySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ty = match self.family {
            Family::V4 => "ipv4_addr",
            Family::V6 => "ipv6_addr",
        };
        write!(
            f,
            "type {ty}; flags dynamic,timeout; timeout {}s;",
            self.timeout
        )
    }
}

// === impl ElemKey ===

impl ElemKey {
    /// `addr . proto . port`.
    pub fn vip(addr: IpAddr, proto: Proto, port: u16) -> ElemKey {
        ElemKey {
            addr: Some(addr),
            proto,
            port,
        }
    }

    /// `proto . port`.
    pub fn node_port(proto: Proto, port: u16) -> ElemKey {
        ElemKey {
            addr: None,
            proto,
            port,
        }
    }
}

impl fmt::Display for ElemKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(a) = self.addr {
            write!(f, "{a} . ")?;
        }
        write!(f, "{} . {}", self.proto.nft(), self.port)
    }
}

// === impl Goto ===

impl fmt::Display for Goto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "goto {}", self.0)
    }
}

/// nft's name of a family in matches: `ip` or `ip6`.
pub fn nft_family(f: Family) -> &'static str {
    match f {
        Family::V4 => "ip",
        Family::V6 => "ip6",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_print_as_nft_text() {
        let cases = [
            (
                Rule::when(
                    vec![Match::Saddr("10.1.0.5/32".parse().expect("net"))],
                    Action::Jump("mark-for-masquerade".into()),
                ),
                "ip saddr 10.1.0.5 jump mark-for-masquerade",
            ),
            (
                Rule::when(
                    vec![Match::Saddr("fd00:10::/64".parse().expect("net"))],
                    Action::Goto("svc".into()),
                ),
                "ip6 saddr fd00:10::/64 goto svc",
            ),
            (
                Rule::when(vec![Match::Numgen(3)], Action::Goto("ep".into())),
                "numgen random mod 3 == 0 goto ep",
            ),
            (
                Rule::when(
                    vec![Match::L4Proto(Proto::Udp)],
                    Action::Dnat("[fd00::1]:53".parse().expect("addr")),
                ),
                "meta l4proto udp dnat ip6 to [fd00::1]:53",
            ),
            (
                Rule::always(Action::UpdateSaddr(Family::V4, "aff".into())),
                "update @aff { ip saddr }",
            ),
            (
                Rule::when(
                    vec![Match::SaddrInSet(Family::V6, "aff".into())],
                    Action::Goto("ep".into()),
                ),
                "ip6 saddr @aff goto ep",
            ),
            (
                Rule::when(vec![Match::FibSaddrLocal], Action::Drop),
                "fib saddr type local drop",
            ),
        ];
        for (rule, text) in cases {
            assert_eq!(rule.to_string(), text);
        }
        assert_eq!(
            ElemKey::vip("10.0.0.1".parse().expect("ip"), Proto::Tcp, 80).to_string(),
            "10.0.0.1 . tcp . 80"
        );
        assert_eq!(
            ElemKey::node_port(Proto::Udp, 30053).to_string(),
            "udp . 30053"
        );
        assert_eq!(
            AffinitySet {
                family: Family::V6,
                timeout: 7
            }
            .to_string(),
            "type ipv6_addr; flags dynamic,timeout; timeout 7s;"
        );
    }
}
