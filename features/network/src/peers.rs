//! Cross-node routing: which path reaches each peer node's pod CIDRs (the pure plan), and
//! programming it (routes with protocol 76, the `knet.vxlan` device, its neighbour and FDB
//! entries).

mod sync;

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use knet_core::config::NetworkMode;

pub use sync::{
    VXLAN_DEV, VxlanSpec, delete_peer_state, local_addresses, mtu_of_address, sync_peers,
    vxlan_port_conflict,
};

/// Route protocol number of cross-node routes (`ip route show proto 76`).
pub const PEER_PROTO: u8 = 76;
/// The VXLAN network identifier knet uses.
pub const VNI: u32 = 1;
/// VXLAN header overhead over an IPv4 underlay.
pub const VXLAN_OVERHEAD: u32 = 50;

/// A peer node as read from its Node object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Node name.
    pub name: String,
    /// Its pod CIDRs.
    pub pod_cidrs: Vec<IpNet>,
    /// Its InternalIPs.
    pub node_ips: Vec<IpAddr>,
}

/// How one peer pod CIDR is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Path {
    /// A plain route via the peer's node IP (same L2 segment).
    Native {
        /// The peer's node IP.
        via: IpAddr,
    },
    /// Through `knet.vxlan` to the peer's IPv4 node address.
    Vxlan {
        /// The peer's underlay address.
        underlay: Ipv4Addr,
        /// The peer's VTEP address in the overlay (its pod CIDR's network address).
        vtep: IpAddr,
        /// The peer's VTEP MAC.
        mac: [u8; 6],
    },
}

/// One route to a peer's pod CIDR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRoute {
    /// The peer's pod CIDR.
    pub dst: IpNet,
    /// How it is reached.
    pub path: Path,
}

/// The VTEP MAC of a node: derived from its underlay address, so peers need not publish it.
pub fn vtep_mac(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x0e, 0x6b, o[0], o[1], o[2], o[3]]
}

/// Routes to every peer pod CIDR. `connected` are this node's own networks (address/prefix):
/// a peer is on-link when one of its node IPs falls in one of them.
pub fn plan(mode: NetworkMode, connected: &[IpNet], peers: &[Peer]) -> Vec<PeerRoute> {
    let mut out = Vec::new();
    for peer in peers {
        for dst in &peer.pod_cidrs {
            let same_family = peer
                .node_ips
                .iter()
                .copied()
                .find(|ip| ip.is_ipv4() == dst.addr().is_ipv4());
            let on_link = same_family.filter(|ip| connected.iter().any(|n| n.contains(ip)));
            let underlay = peer.node_ips.iter().find_map(|ip| match ip {
                IpAddr::V4(v4) => Some(*v4),
                IpAddr::V6(_) => None,
            });
            let vxlan = underlay.map(|u| Path::Vxlan {
                underlay: u,
                vtep: dst.network(),
                mac: vtep_mac(u),
            });
            let path = match mode {
                NetworkMode::Native => same_family.map(|via| Path::Native { via }),
                NetworkMode::Vxlan => vxlan,
                NetworkMode::Auto => on_link.map(|via| Path::Native { via }).or(vxlan),
            };
            if let Some(path) = path {
                out.push(PeerRoute { dst: *dst, path });
            }
        }
    }
    out
}

/// The pod MTU: fixed, or the underlay's minus the VXLAN overhead when VXLAN may be used.
pub fn pod_mtu(mode: NetworkMode, configured: knet_core::config::Mtu, underlay: u32) -> u32 {
    match configured {
        knet_core::config::Mtu::Bytes(n) => n,
        knet_core::config::Mtu::Auto if mode == NetworkMode::Native => underlay,
        knet_core::config::Mtu::Auto => underlay.saturating_sub(VXLAN_OVERHEAD),
    }
}

#[cfg(test)]
mod tests;
