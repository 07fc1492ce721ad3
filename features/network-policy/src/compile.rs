//! The compiler: from the [`Cluster`] model to a [`Plan`], the per-pod allow lists of this node.
//!
//! Only pods on this node are isolated by this node's rules: egress is judged on the source's
//! node, ingress on the destination's. A pod selected by no policy of a direction is not isolated
//! in it and gets no chain. A selected pod gets one chain holding the union of every rule of
//! every policy selecting it; what no rule admits is dropped. Peers become named address sets
//! (one per distinct selector), ipBlocks become interval sets, and named ports are resolved per
//! destination pod: against the local pod itself for ingress, against every matching destination
//! pod for egress (which yields address . protocol . port tuples).

mod ranges;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use ranges::Ranges;

use crate::model::{
    Cluster, IpBlock, NsScope, Peer, PodInfo, Policy, PortRef, PortSpec, Proto, Rule, Selector,
};

/// Longest chain name we generate (nftables allows 255 bytes).
const MAX_CHAIN_NAME: usize = 200;

/// Everything this node enforces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// How many policies exist (cluster-wide).
    pub policies: usize,
    /// Per-pod chains of isolated local pods, ingress and egress, sorted by name.
    pub chains: Vec<PodChain>,
    /// Named address sets of pod peers, indexed by [`PeerMatch::Set`].
    pub sets: Vec<AddrSet>,
    /// Interval sets of ipBlocks, indexed by [`PeerMatch::Block`].
    pub blocks: Vec<BlockSet>,
}

/// Which way a chain judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// Traffic to the pod.
    Ingress,
    /// Traffic from the pod.
    Egress,
}

/// The chain of one isolated local pod in one direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodChain {
    /// The direction.
    pub direction: Direction,
    /// `namespace/name` of the pod.
    pub pod: String,
    /// The chain's name in the table.
    pub name: String,
    /// The pod's addresses (the verdict map keys that jump here).
    pub ips: Vec<IpAddr>,
    /// The policies that select the pod, `namespace/name`.
    pub policies: Vec<String>,
    /// Admitting rules; anything else is dropped.
    pub rules: Vec<AllowRule>,
}

/// One admitting rule: traffic from (ingress) or to (egress) `peer` on `port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowRule {
    /// The remote end.
    pub peer: PeerMatch,
    /// The destination port.
    pub port: PortMatch,
    /// Where the rule came from, e.g. `x/allow-web ingress[0]`.
    pub origin: String,
}

/// The remote end of an [`AllowRule`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerMatch {
    /// Anyone.
    Any,
    /// An address in [`Plan::sets`]`[i]`.
    Set(usize),
    /// An address in [`Plan::blocks`]`[i]`.
    Block(usize),
    /// Exactly these (address, protocol, port) destinations: egress to named ports.
    Endpoints(Vec<(IpAddr, Proto, u16)>),
}

/// The destination port of an [`AllowRule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortMatch {
    /// Any protocol, any port.
    Any,
    /// Any port of this protocol.
    Proto(Proto),
    /// Ports `from..=to` of this protocol.
    Range(Proto, u16, u16),
}

/// The members of one pod peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrSet {
    /// The set's name (without family suffix).
    pub name: String,
    /// The selector it stands for, in words.
    pub about: String,
    /// IPv4 members.
    pub v4: Vec<Ipv4Addr>,
    /// IPv6 members.
    pub v6: Vec<Ipv6Addr>,
}

/// The ranges of one ipBlock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockSet {
    /// The set's name (without family suffix).
    pub name: String,
    /// The block in words.
    pub about: String,
    /// Its ranges.
    pub ranges: Ranges,
}

// === impl Plan ===

impl Plan {
    /// How many distinct local pods are isolated in at least one direction.
    pub fn isolated_pods(&self) -> usize {
        self.chains
            .iter()
            .map(|c| &c.pod)
            .collect::<BTreeSet<_>>()
            .len()
    }
}

// === impl Direction ===

impl Direction {
    /// `ingress` or `egress`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// Computes what node `node` enforces.
pub fn compile(cluster: &Cluster, node: &str) -> Plan {
    let mut c = Compiler {
        cluster,
        plan: Plan {
            policies: cluster.policies.len(),
            ..Plan::default()
        },
        set_index: BTreeMap::new(),
        block_index: BTreeMap::new(),
    };
    let local = cluster
        .pods
        .iter()
        .filter(|p| p.addressable() && p.node.as_deref() == Some(node));
    for pod in local {
        for dir in [Direction::Ingress, Direction::Egress] {
            c.pod_chain(pod, dir);
        }
    }
    c.plan.chains.sort_by(|a, b| a.name.cmp(&b.name));
    c.plan
}

struct Compiler<'a> {
    cluster: &'a Cluster,
    plan: Plan,
    set_index: BTreeMap<(NsScope, Selector), usize>,
    block_index: BTreeMap<IpBlock, usize>,
}

// === impl Compiler ===

impl Compiler<'_> {
    fn pod_chain(&mut self, pod: &PodInfo, dir: Direction) {
        let selecting: Vec<&Policy> = self
            .cluster
            .policies
            .iter()
            .filter(|p| p.namespace == pod.namespace && p.pod_selector.matches(&pod.labels))
            .filter(|p| rules_of(p, dir).is_some())
            .collect();
        if selecting.is_empty() {
            return;
        }
        let mut rules = Vec::new();
        for policy in &selecting {
            for (i, rule) in rules_of(policy, dir).into_iter().flatten().enumerate() {
                let origin = format!("{} {}[{i}]", policy.key(), dir.as_str());
                self.rule(pod, dir, rule, &origin, &mut rules);
            }
        }
        self.plan.chains.push(PodChain {
            direction: dir,
            pod: pod.key(),
            name: chain_name(dir, pod),
            ips: pod.ips.clone(),
            policies: selecting.iter().map(|p| p.key()).collect(),
            rules,
        });
    }

    /// Expands one rule into peer x port allow rules.
    fn rule(
        &mut self,
        pod: &PodInfo,
        dir: Direction,
        rule: &Rule,
        origin: &str,
        out: &mut Vec<AllowRule>,
    ) {
        let peers: Vec<Option<&Peer>> = if rule.peers.is_empty() {
            vec![None]
        } else {
            rule.peers.iter().map(Some).collect()
        };
        let ports: Vec<Option<&PortSpec>> = if rule.ports.is_empty() {
            vec![None]
        } else {
            rule.ports.iter().map(Some).collect()
        };
        for peer in &peers {
            for port in &ports {
                let origin = origin.to_owned();
                match (dir, port.map(|p| (&p.port, p.proto))) {
                    (Direction::Egress, Some((PortRef::Named(name), proto))) => {
                        let eps = self.named_endpoints(*peer, name, proto);
                        if !eps.is_empty() {
                            out.push(AllowRule {
                                peer: PeerMatch::Endpoints(eps),
                                port: PortMatch::Any,
                                origin,
                            });
                        }
                    }
                    _ => {
                        let Some(port) = resolve_port(pod, *port) else {
                            continue;
                        };
                        let Some(peer) = self.peer(*peer) else {
                            continue;
                        };
                        out.push(AllowRule { peer, port, origin });
                    }
                }
            }
        }
    }

    /// The match for a peer; `None` when it matches nobody.
    fn peer(&mut self, peer: Option<&Peer>) -> Option<PeerMatch> {
        match peer {
            None => Some(PeerMatch::Any),
            Some(Peer::Invalid(_)) => None,
            Some(Peer::Block(b)) => self.block(b).map(PeerMatch::Block),
            Some(Peer::Pods { namespaces, pods }) => self.set(namespaces, pods).map(PeerMatch::Set),
        }
    }

    fn set(&mut self, scope: &NsScope, sel: &Selector) -> Option<usize> {
        let key = (scope.clone(), sel.clone());
        if let Some(i) = self.set_index.get(&key) {
            return (!self.plan.sets[*i].is_empty()).then_some(*i);
        }
        let mut v4 = BTreeSet::new();
        let mut v6 = BTreeSet::new();
        for p in self.cluster.pods.iter().filter(|p| p.addressable()) {
            if self.cluster.in_pod_peer(p, scope, sel) {
                for ip in &p.ips {
                    match ip {
                        IpAddr::V4(a) => v4.insert(*a),
                        IpAddr::V6(a) => v6.insert(*a),
                    };
                }
            }
        }
        let i = self.plan.sets.len();
        let about = match scope {
            NsScope::Same(ns) => format!("pods {sel} in {ns}"),
            NsScope::Matching(nsel) => format!("pods {sel} in namespaces {nsel}"),
        };
        self.plan.sets.push(AddrSet {
            name: format!("peer{i}"),
            about,
            v4: v4.into_iter().collect(),
            v6: v6.into_iter().collect(),
        });
        self.set_index.insert(key, i);
        (!self.plan.sets[i].is_empty()).then_some(i)
    }

    fn block(&mut self, b: &IpBlock) -> Option<usize> {
        let i = match self.block_index.get(b) {
            Some(i) => *i,
            None => {
                let i = self.plan.blocks.len();
                let mut about = b.cidr.to_string();
                for e in &b.except {
                    about.push_str(&format!(" except {e}"));
                }
                self.plan.blocks.push(BlockSet {
                    name: format!("block{i}"),
                    about,
                    ranges: Ranges::block(b.cidr, &b.except),
                });
                self.block_index.insert(b.clone(), i);
                i
            }
        };
        (!self.plan.blocks[i].ranges.is_empty()).then_some(i)
    }

    /// Every (address, protocol, port) of a pod matching `peer` that has named port `name`.
    fn named_endpoints(
        &self,
        peer: Option<&Peer>,
        name: &str,
        proto: Proto,
    ) -> Vec<(IpAddr, Proto, u16)> {
        let mut out = Vec::new();
        for p in self.cluster.pods.iter().filter(|p| p.addressable()) {
            let Some(port) = p.named_port(name, proto) else {
                continue;
            };
            for ip in &p.ips {
                let member = match peer {
                    None => true,
                    Some(Peer::Invalid(_)) => false,
                    Some(Peer::Pods { namespaces, pods }) => {
                        self.cluster.in_pod_peer(p, namespaces, pods)
                    }
                    Some(Peer::Block(b)) => Ranges::block(b.cidr, &b.except).contains(*ip),
                };
                if member {
                    out.push((*ip, proto, port));
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

// === impl AddrSet ===

impl AddrSet {
    /// Whether the peer has no members.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
}

fn rules_of(p: &Policy, dir: Direction) -> Option<&Vec<Rule>> {
    match dir {
        Direction::Ingress => p.ingress.as_ref(),
        Direction::Egress => p.egress.as_ref(),
    }
}

/// The port match of a (non-egress-named) port entry; named ports resolve against `pod`.
/// `None` when the entry matches nothing.
fn resolve_port(pod: &PodInfo, port: Option<&PortSpec>) -> Option<PortMatch> {
    let Some(spec) = port else {
        return Some(PortMatch::Any);
    };
    match &spec.port {
        PortRef::Any => Some(PortMatch::Proto(spec.proto)),
        PortRef::Range(a, b) => Some(PortMatch::Range(spec.proto, *a, *b)),
        PortRef::Named(name) => pod
            .named_port(name, spec.proto)
            .map(|n| PortMatch::Range(spec.proto, n, n)),
        PortRef::Never => None,
    }
}

/// `ingress/<ns>/<pod>` or `egress/<ns>/<pod>`; '/' cannot occur in Kubernetes names, so names
/// never collide. Very long names are cut and made unique with a hash.
fn chain_name(dir: Direction, pod: &PodInfo) -> String {
    let name = format!("{}/{}/{}", dir.as_str(), pod.namespace, pod.name);
    if name.len() <= MAX_CHAIN_NAME {
        return name;
    }
    // FNV-1a: stable across builds.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut cut = MAX_CHAIN_NAME - 17;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}-{h:016x}", &name[..cut])
}

#[cfg(test)]
mod tests;
