//! The lab's fixed choices (addresses, names, where things live) and the
//! options one lab is started with.
//!
//! Addressing: underlay segment A is 172.31.250.0/24 + fd00:250::/64 with the
//! router (the underlay namespace) at .1 / ::1; segment B, used only when a
//! node asks for it, is 172.31.251.0/24 + fd00:251::/64. Node `k` on a segment
//! gets host part `10 + k` in both families (fd00:250::11 for 172.31.250.11).
//! Cluster defaults are knet's: services 10.152.183.0/24, DNS 10.152.183.10,
//! pods 10.1.0.0/16 (a /24 per node from nodeipam), domain cluster.local.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

/// Every name the lab owns (netns, cgroups, files) starts with this.
pub const PREFIX: &str = "knetlab-";
/// Root of all labs' run dirs (tmpfs, so etcd runs from memory).
pub const DEFAULT_RUN_ROOT: &str = "/dev/shm/knetlab";
/// The host's cgroup v2 mount, i.e. the host's root cgroup; the lab's own cgroup subtrees are
/// made under it, and nothing of the lab may attach to it directly.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup/unified";
/// Service CIDR given to the apiserver.
pub const SERVICE_CIDR: &str = "10.152.183.0/24";
/// The `kubernetes` Service's ClusterIP.
pub const API_SERVICE_IP: &str = "10.152.183.1";
/// Cluster DNS address written into pods' resolv.conf.
pub const CLUSTER_DNS: &str = "10.152.183.10";
/// Cluster CIDR nodeipam allocates node pod CIDRs from.
pub const POD_CIDR: &str = "10.1.0.0/16";
/// Node pod CIDR size.
pub const NODE_CIDR_MASK: u8 = 24;
/// IPv6 cluster CIDR added in a dual-stack lab ([`LabOptions::dual_stack`]).
pub const POD_CIDR_V6: &str = "fd01::/48";
/// IPv6 node pod CIDR size in a dual-stack lab.
pub const NODE_CIDR_MASK_V6: u8 = 64;
/// IPv6 service CIDR added in a dual-stack lab.
pub const SERVICE_CIDR_V6: &str = "fd98::/108";
/// Cluster domain.
pub const CLUSTER_DOMAIN: &str = "cluster.local";
/// Name of the reference CNI network the lab installs.
pub const REFERENCE_CNI_NETWORK: &str = "knetlab";
/// Kubernetes version of the lab binaries.
pub const K8S_VERSION: &str = "v1.37.2";
/// etcd version of the lab binaries.
pub const ETCD_VERSION: &str = "v3.6.16";

/// Which CNI configuration the lab's kubelet uses on each node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CniMode {
    /// The lab writes a reference-plugin conflist (bridge + host-local with
    /// the node's podCIDR) and routes pod CIDRs between nodes itself.
    #[default]
    Reference,
    /// Whatever conflist is in the node's CNI conf dir (e.g. installed by
    /// `knet bootstrap`); pods wait until one appears.
    ConfDir,
}

/// An underlay L2 segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Segment {
    /// 172.31.250.0/24, fd00:250::/64.
    #[default]
    A,
    /// 172.31.251.0/24, fd00:251::/64, routed to A by the underlay namespace.
    B,
}

/// One node to create.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Node name (unique in the lab).
    pub name: String,
    /// Which segment it is attached to.
    pub segment: Segment,
}

/// How to start a lab.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// Lab id: names are `knetlab-<id>-...`; short, `[a-z0-9]`.
    pub id: String,
    /// Nodes created at start (more can be added later).
    pub nodes: Vec<NodeSpec>,
    /// CNI used by the kubelet emulation.
    pub cni: CniMode,
    /// Run `knet bootstrap` + `knet daemon` on every node at start.
    pub knet: bool,
    /// Where run dirs live.
    pub run_root: PathBuf,
    /// Dual-stack cluster: nodeipam also gives every node an IPv6 pod CIDR
    /// (a /64 of [`POD_CIDR_V6`]) and the apiserver gets [`SERVICE_CIDR_V6`].
    pub dual_stack: bool,
}

// === impl Segment ===

impl Segment {
    /// Third octet / second hextet of the segment's prefixes.
    fn net(self) -> u8 {
        match self {
            Segment::A => 250,
            Segment::B => 251,
        }
    }

    /// Short name used in link names.
    pub fn tag(self) -> &'static str {
        match self {
            Segment::A => "a",
            Segment::B => "b",
        }
    }

    /// IPv4 address of host `host` on this segment.
    pub fn v4(self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(172, 31, self.net(), host)
    }

    /// IPv6 address of host `host` on this segment (same digits as v4).
    pub fn v6(self, host: u8) -> Ipv6Addr {
        // fd00:250::11 for host 11: the decimal digits read as hex.
        let hex = |d: u16| u16::from_str_radix(&d.to_string(), 16).unwrap_or(0);
        Ipv6Addr::new(
            0xfd00,
            hex(u16::from(self.net())),
            0,
            0,
            0,
            0,
            0,
            hex(u16::from(host)),
        )
    }

    /// The router (underlay namespace) address on this segment.
    pub fn gateway_v4(self) -> Ipv4Addr {
        self.v4(1)
    }

    /// The router's IPv6 address on this segment.
    pub fn gateway_v6(self) -> Ipv6Addr {
        self.v6(1)
    }

    /// IPv4 prefix of the segment.
    pub fn cidr_v4(self) -> String {
        format!("172.31.{}.0/24", self.net())
    }

    /// IPv6 prefix of the segment.
    pub fn cidr_v6(self) -> String {
        format!("fd00:{}::/64", self.net())
    }
}

// === impl LabOptions ===

impl LabOptions {
    /// A lab with id `id` and `n` nodes named `node-1..n` on segment A.
    pub fn new(id: &str, n: usize) -> Self {
        Self {
            id: id.to_owned(),
            nodes: (1..=n)
                .map(|i| NodeSpec {
                    name: format!("node-{i}"),
                    segment: Segment::A,
                })
                .collect(),
            cni: CniMode::Reference,
            knet: false,
            dual_stack: false,
            run_root: PathBuf::from(
                std::env::var("KNET_LAB_RUN_ROOT").unwrap_or_else(|_| DEFAULT_RUN_ROOT.into()),
            ),
        }
    }
}

/// `knetlab-<id>-`: the prefix of every name owned by lab `id`.
pub fn lab_prefix(id: &str) -> String {
    format!("{PREFIX}{id}-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_mirror_between_families() {
        assert_eq!(Segment::A.v4(11).to_string(), "172.31.250.11");
        assert_eq!(Segment::A.v6(11).to_string(), "fd00:250::11");
        assert_eq!(Segment::B.gateway_v6().to_string(), "fd00:251::1");
    }
}
