//! ipBlock arithmetic: a CIDR minus its `except` holes, as sorted disjoint address ranges (what an
//! nftables interval set holds).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Inclusive address ranges of one family.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ranges {
    /// IPv4 ranges, sorted and disjoint.
    pub v4: Vec<(Ipv4Addr, Ipv4Addr)>,
    /// IPv6 ranges, sorted and disjoint.
    pub v6: Vec<(Ipv6Addr, Ipv6Addr)>,
}

// === impl Ranges ===

impl Ranges {
    /// `cidr` minus every `except` network.
    pub fn block(cidr: IpNet, except: &[IpNet]) -> Ranges {
        let bounds = |n: &IpNet| -> (u128, u128) {
            match n {
                IpNet::V4(n) => (
                    u32::from(n.network()).into(),
                    u32::from(n.broadcast()).into(),
                ),
                IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
            }
        };
        let holes: Vec<(u128, u128)> = except
            .iter()
            .filter(|e| e.addr().is_ipv4() == cidr.addr().is_ipv4())
            .map(bounds)
            .collect();
        let left = subtract(bounds(&cidr), holes);
        let mut out = Ranges::default();
        match cidr {
            IpNet::V4(_) => {
                out.v4 = left
                    .into_iter()
                    .filter_map(|(a, b)| {
                        Some((
                            Ipv4Addr::from(u32::try_from(a).ok()?),
                            Ipv4Addr::from(u32::try_from(b).ok()?),
                        ))
                    })
                    .collect();
            }
            IpNet::V6(_) => {
                out.v6 = left
                    .into_iter()
                    .map(|(a, b)| (Ipv6Addr::from(a), Ipv6Addr::from(b)))
                    .collect();
            }
        }
        out
    }

    /// Whether no address is in the ranges.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Whether `ip` is in the ranges.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(ip) => self.v4.iter().any(|(a, b)| *a <= ip && ip <= *b),
            IpAddr::V6(ip) => self.v6.iter().any(|(a, b)| *a <= ip && ip <= *b),
        }
    }
}

/// `range` minus `holes`, sorted and disjoint.
fn subtract(range: (u128, u128), mut holes: Vec<(u128, u128)>) -> Vec<(u128, u128)> {
    holes.sort_unstable();
    let mut out = Vec::new();
    let (mut next, end) = range;
    let mut done = false;
    for (a, b) in holes {
        if done || b < next {
            continue;
        }
        if a > end {
            break;
        }
        if a > next {
            out.push((next, a - 1));
        }
        match b.checked_add(1) {
            Some(n) if b < end => next = n,
            _ => done = true,
        }
    }
    if !done {
        out.push((next, end));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("cidr")
    }

    fn v4(s: &str) -> Ipv4Addr {
        s.parse().expect("ip")
    }

    #[test]
    fn a_block_without_holes_is_one_range() {
        let r = Ranges::block(net("10.0.0.0/8"), &[]);
        assert_eq!(r.v4, vec![(v4("10.0.0.0"), v4("10.255.255.255"))]);
        assert!(r.v6.is_empty());
    }

    #[test]
    fn holes_are_cut_out() {
        let r = Ranges::block(
            net("10.0.0.0/24"),
            &[
                net("10.0.0.16/28"),
                net("10.0.0.0/30"),
                net("10.0.0.252/30"),
            ],
        );
        assert_eq!(
            r.v4,
            vec![
                (v4("10.0.0.4"), v4("10.0.0.15")),
                (v4("10.0.0.32"), v4("10.0.0.251")),
            ]
        );
        assert!(r.contains("10.0.0.5".parse().expect("ip")));
        assert!(!r.contains("10.0.0.17".parse().expect("ip")));
    }

    #[test]
    fn a_hole_covering_everything_leaves_nothing() {
        assert!(Ranges::block(net("10.0.0.1/32"), &[net("10.0.0.0/24")]).is_empty());
        assert!(Ranges::block(net("::/0"), &[net("::/0")]).is_empty());
    }

    #[test]
    fn ipv6_and_overlapping_holes() {
        let r = Ranges::block(net("fd00::/64"), &[net("fd00::/65"), net("fd00::/66")]);
        assert_eq!(
            r.v6,
            vec![(
                "fd00::8000:0:0:0".parse().expect("ip"),
                "fd00::ffff:ffff:ffff:ffff".parse().expect("ip")
            )]
        );
        let all = Ranges::block(net("0.0.0.0/0"), &[net("255.255.255.255/32")]);
        assert_eq!(all.v4, vec![(v4("0.0.0.0"), v4("255.255.255.254"))]);
    }
}
