//! Everything knet-network does to the kernel: netlink connections opened inside a chosen network
//! namespace, per-interface sysctls, the pod veth wiring, and the `nft` table.
//!
//! A netlink socket belongs to the namespace it was created in, so a connection "in a namespace"
//! is a socket created on a short-lived thread that `setns()`ed there, then driven on the
//! caller's runtime. Nothing here forks.

mod links;
mod netns;
mod nft;
mod pod;
mod sysctl;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use links::{all_routes, delete_link, host_veths, link_by_name, link_name as links_name};
pub use netns::{Netlink, in_netns};
pub use nft::{MASQ_TABLE, apply_masquerade, delete_masquerade, masquerade_ruleset};
pub use pod::{
    PodWiring, check_pod, owner_alias, parse_owner_alias, pods_in_kernel, unwire_pod, wire_pod,
};
pub use sysctl::{Sysctl, host_veth_sysctls, set_sysctls, sysctl_path};

/// MAC of every host-side pod veth. Pods hold a permanent neighbour entry for their gateway
/// pointing at it (the same trick as Calico's `ee:ee:ee:ee:ee:ee`), so no ARP or proxy ARP is
/// ever needed towards the gateway.
pub const HOST_MAC: [u8; 6] = [0xee, 0xee, 0xee, 0xee, 0xee, 0xee];
/// The IPv4 gateway pods route through (link-local, never on the wire).
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The IPv6 gateway pods route through.
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
/// Route protocol number marking routes knet-network installed (`ip route show proto 75`).
pub const ROUTE_PROTO: u8 = 75;
/// Prefix of host-side pod veths: `knet` + 11 hex digits.
pub const HOST_VETH_PREFIX: &str = "knet";

/// A kernel operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KernelError {
    /// The namespace file cannot be opened (the pod is gone, or the path is wrong).
    #[error("cannot open network namespace {path}: {source}")]
    OpenNetns {
        /// The path.
        path: String,
        /// What the filesystem said.
        #[source]
        source: std::io::Error,
    },
    /// `setns` failed.
    #[error("cannot enter network namespace {path}: {source}")]
    Setns {
        /// The path.
        path: String,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// Opening a netlink socket failed.
    #[error("cannot open a netlink socket: {0}")]
    Connect(#[source] std::io::Error),
    /// A netlink request failed.
    #[error("{op}: {source}")]
    Netlink {
        /// What was attempted, in words.
        op: String,
        /// What the kernel said.
        #[source]
        source: rtnetlink::Error,
    },
    /// A sysctl write failed.
    #[error("cannot write {path}: {source}")]
    Sysctl {
        /// The /proc/sys file.
        path: String,
        /// What the filesystem said.
        #[source]
        source: std::io::Error,
    },
    /// Running `nft` failed.
    #[error("nft failed: {0}")]
    Nft(String),
    /// A helper thread died.
    #[error("a network namespace helper thread failed: {0}")]
    Thread(String),
}

// === impl KernelError ===

impl KernelError {
    /// A netlink error with context.
    pub fn netlink(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> KernelError {
        let op = op.into();
        move |source| KernelError::Netlink { op, source }
    }

    /// The errno of a netlink error (positive), if it is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            KernelError::Netlink {
                source: rtnetlink::Error::NetlinkError(msg),
                ..
            } => Some(msg.raw_code().abs()),
            _ => None,
        }
    }
}

/// Whether a netlink error is `errno`.
pub(crate) fn is_errno(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code().abs() == errno)
}

/// The host-side veth name of an attachment: `knet` + 11 hex digits of a stable hash of
/// container id and interface name, so the plugin can find and delete it without the daemon.
pub fn host_veth_name(container_id: &str, ifname: &str) -> String {
    // FNV-1a 64: stable across builds and Rust versions, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in container_id.bytes().chain([b'/']).chain(ifname.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{HOST_VETH_PREFIX}{:011x}", h >> 20)
}

/// Whether `name` is a host-side pod veth of knet.
pub fn is_host_veth(name: &str) -> bool {
    name.len() == HOST_VETH_PREFIX.len() + 11
        && name.starts_with(HOST_VETH_PREFIX)
        && name[HOST_VETH_PREFIX.len()..]
            .chars()
            .all(|c| c.is_ascii_hexdigit())
}

/// The pod's gateway for an address family.
pub fn gateway_for(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(GATEWAY_V4),
        IpAddr::V6(_) => IpAddr::V6(GATEWAY_V6),
    }
}

/// Formats a MAC address.
pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_veth_names_are_stable_short_and_recognisable() {
        let a = host_veth_name("abc123", "eth0");
        assert_eq!(a, host_veth_name("abc123", "eth0"));
        assert_ne!(a, host_veth_name("abc123", "eth1"));
        assert_ne!(a, host_veth_name("abc124", "eth0"));
        assert_eq!(a.len(), 15);
        assert!(is_host_veth(&a));
        assert!(!is_host_veth("knet.vxlan"));
        assert!(!is_host_veth("eth0"));
    }

    #[test]
    fn macs_format_like_ip_link() {
        assert_eq!(format_mac(&HOST_MAC), "ee:ee:ee:ee:ee:ee");
    }
}
