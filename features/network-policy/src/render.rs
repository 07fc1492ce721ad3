//! The renderer: a [`Plan`] as one nftables script that replaces `table inet
//! knet-network-policy` in a single transaction.
//!
//! ```text
//! chain forward (hook forward, priority filter, policy accept)
//!   ct state established,related accept          replies of admitted connections
//!   ip saddr vmap @egress_v4                      isolated local senders → egress/<ns>/<pod>
//!   ip daddr vmap @ingress_v4                     isolated local receivers → ingress/<ns>/<pod>
//! chain egress/<ns>/<pod>:  admitting rules `return` (go on to the ingress check), then drop
//! chain ingress/<ns>/<pod>: admitting rules `accept`, then drop
//! ```
//! Traffic the node itself sends to its pods (kubelet probes) uses the output hook, which the
//! table does not hook, so it is always allowed.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::compile::{AllowRule, Direction, PeerMatch, Plan, PodChain, PortMatch};
use crate::nft::TABLE;

/// The two address families, as nftables spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

// === impl Family ===

impl Family {
    fn of(ip: &IpAddr) -> Family {
        if ip.is_ipv4() { Family::V4 } else { Family::V6 }
    }

    fn proto(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }

    fn addr_type(self) -> &'static str {
        match self {
            Family::V4 => "ipv4_addr",
            Family::V6 => "ipv6_addr",
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Family::V4 => "v4",
            Family::V6 => "v6",
        }
    }
}

/// The script: create-if-missing, delete, and re-create the table with the plan's content.
pub fn render(plan: &Plan) -> String {
    let mut out =
        format!("table inet {TABLE} {{}}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n");
    sets(plan, &mut out);
    maps(plan, &mut out);
    for chain in &plan.chains {
        pod_chain(plan, chain, &mut out);
    }
    out.push_str(
        "  chain forward {\n    type filter hook forward priority filter; policy accept;\n",
    );
    out.push_str("    ct state established,related accept\n");
    for (dir, key) in [(Direction::Egress, "saddr"), (Direction::Ingress, "daddr")] {
        for fam in [Family::V4, Family::V6] {
            let _ = writeln!(
                out,
                "    {} {key} vmap @{}_{}",
                fam.proto(),
                dir.as_str(),
                fam.suffix()
            );
        }
    }
    out.push_str("  }\n}\n");
    out
}

/// The script that removes the table (fine if it is not there).
pub fn render_delete() -> String {
    format!("table inet {TABLE} {{}}\ndelete table inet {TABLE}\n")
}

fn sets(plan: &Plan, out: &mut String) {
    for s in &plan.sets {
        let v4: Vec<String> = s.v4.iter().map(ToString::to_string).collect();
        let v6: Vec<String> = s.v6.iter().map(ToString::to_string).collect();
        for (fam, elems) in [(Family::V4, v4), (Family::V6, v6)] {
            if !elems.is_empty() {
                let _ = writeln!(
                    out,
                    "  set {}_{} {{\n    type {}\n    elements = {{ {} }}\n  }}",
                    s.name,
                    fam.suffix(),
                    fam.addr_type(),
                    elems.join(", ")
                );
            }
        }
    }
    for b in &plan.blocks {
        let v4: Vec<String> = b.ranges.v4.iter().map(|(a, z)| range(a, z)).collect();
        let v6: Vec<String> = b.ranges.v6.iter().map(|(a, z)| range(a, z)).collect();
        for (fam, elems) in [(Family::V4, v4), (Family::V6, v6)] {
            if !elems.is_empty() {
                let _ = writeln!(
                    out,
                    "  set {}_{} {{\n    type {}\n    flags interval\n    elements = {{ {} }}\n  }}",
                    b.name,
                    fam.suffix(),
                    fam.addr_type(),
                    elems.join(", ")
                );
            }
        }
    }
}

fn range<T: PartialEq + std::fmt::Display>(a: &T, z: &T) -> String {
    if a == z {
        a.to_string()
    } else {
        format!("{a}-{z}")
    }
}

fn maps(plan: &Plan, out: &mut String) {
    for dir in [Direction::Egress, Direction::Ingress] {
        for fam in [Family::V4, Family::V6] {
            let mut seen = std::collections::BTreeSet::new();
            let elems: Vec<String> = plan
                .chains
                .iter()
                .filter(|c| c.direction == dir)
                .flat_map(|c| c.ips.iter().map(move |ip| (ip, c)))
                .filter(|(ip, _)| Family::of(ip) == fam)
                // Two pods claiming one address (a stale object): the first keeps it.
                .filter(|(ip, _)| seen.insert(**ip))
                .map(|(ip, c)| format!("{ip} : jump {}", c.name))
                .collect();
            let _ = write!(
                out,
                "  map {}_{} {{\n    type {} : verdict\n",
                dir.as_str(),
                fam.suffix(),
                fam.addr_type()
            );
            if !elems.is_empty() {
                let _ = writeln!(out, "    elements = {{ {} }}", elems.join(", "));
            }
            out.push_str("  }\n");
        }
    }
}

fn pod_chain(plan: &Plan, chain: &PodChain, out: &mut String) {
    let _ = writeln!(out, "  chain {} {{", chain.name);
    let verdict = match chain.direction {
        Direction::Ingress => "accept",
        Direction::Egress => "return",
    };
    for rule in &chain.rules {
        for line in rule_lines(plan, chain.direction, rule) {
            let _ = writeln!(
                out,
                "    {line}counter {verdict} comment \"{}\"",
                comment(&rule.origin)
            );
        }
    }
    let why = format!(
        "{} {}: no rule of {} allows",
        chain.pod,
        chain.direction.as_str(),
        chain.policies.join(", ")
    );
    let _ = writeln!(out, "    counter drop comment \"{}\"\n  }}", comment(&why));
}

/// The match part of a rule, one line per address family it needs (ending with a space).
fn rule_lines(plan: &Plan, dir: Direction, rule: &AllowRule) -> Vec<String> {
    let key = match dir {
        Direction::Ingress => "saddr",
        Direction::Egress => "daddr",
    };
    let port = match rule.port {
        PortMatch::Any => String::new(),
        PortMatch::Proto(p) => format!("meta l4proto {} ", p.as_str()),
        PortMatch::Range(p, a, z) => {
            format!("meta l4proto {} th dport {} ", p.as_str(), range(&a, &z))
        }
    };
    let mut lines = Vec::new();
    for fam in [Family::V4, Family::V6] {
        let peer = match &rule.peer {
            PeerMatch::Any => {
                if fam == Family::V4 {
                    lines.push(port.clone());
                }
                continue;
            }
            PeerMatch::Set(i) => {
                let s = &plan.sets[*i];
                let present = match fam {
                    Family::V4 => !s.v4.is_empty(),
                    Family::V6 => !s.v6.is_empty(),
                };
                if !present {
                    continue;
                }
                format!("{} {key} @{}_{} ", fam.proto(), s.name, fam.suffix())
            }
            PeerMatch::Block(i) => {
                let b = &plan.blocks[*i];
                let present = match fam {
                    Family::V4 => !b.ranges.v4.is_empty(),
                    Family::V6 => !b.ranges.v6.is_empty(),
                };
                if !present {
                    continue;
                }
                format!("{} {key} @{}_{} ", fam.proto(), b.name, fam.suffix())
            }
            PeerMatch::Endpoints(eps) => {
                let elems: Vec<String> = eps
                    .iter()
                    .filter(|(ip, _, _)| Family::of(ip) == fam)
                    .map(|(ip, p, n)| format!("{ip} . {} . {n}", p.as_str()))
                    .collect();
                if elems.is_empty() {
                    continue;
                }
                format!(
                    "{} {key} . meta l4proto . th dport {{ {} }} ",
                    fam.proto(),
                    elems.join(", ")
                )
            }
        };
        lines.push(format!("{peer}{port}"));
    }
    lines
}

/// A rule comment: no quotes, at most 120 bytes (nftables keeps 128).
fn comment(s: &str) -> String {
    let mut c: String = s.chars().filter(|c| *c != '"' && *c != '\\').collect();
    if c.len() > 120 {
        let mut cut = 117;
        while !c.is_char_boundary(cut) {
            cut -= 1;
        }
        c.truncate(cut);
        c.push_str("...");
    }
    c
}

#[cfg(test)]
mod tests;
