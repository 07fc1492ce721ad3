//! One level-triggered sync pass: desired state from the Node objects and the config, applied
//! to the kernel.

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use knet_core::FeatureContext;
use knet_core::config::NetworkMode;
use knet_core::watch::Watched;
use tokio::sync::watch;

use super::podcidr::{claim, node_internal_ips, node_pod_cidrs};
use crate::handler::NodeNetwork;
use crate::kernel::{
    Netlink, Sysctl, apply_masquerade, masquerade_ruleset, set_sysctls, sysctl_path,
};
use crate::peers::{
    Peer, VXLAN_OVERHEAD, VxlanSpec, local_addresses, mtu_of_address, plan, pod_mtu, sync_peers,
    vxlan_port_conflict,
};

/// Why a pass did not finish.
#[derive(Debug)]
pub(super) enum SyncError {
    /// Something is not there yet (the Node object).
    Waiting(String),
    /// Something failed; the message says what and how to fix it.
    Failed(String),
}

/// Inputs of one pass.
pub(super) struct Pass<'a> {
    pub ctx: &'a FeatureContext,
    pub nl: &'a Netlink,
    pub node_ns: Option<&'a Path>,
    pub nodes: &'a Watched<Node>,
    pub net_tx: &'a watch::Sender<NodeNetwork>,
}

fn failed(what: &str) -> impl FnOnce(crate::kernel::KernelError) -> SyncError + '_ {
    move |e| SyncError::Failed(format!("{what}: {e}"))
}

// === impl Pass ===

impl Pass<'_> {
    pub(super) async fn run(&self) -> Result<String, SyncError> {
        let cfg = self.ctx.current_config();
        let all = self.nodes.objects();
        let name = &self.ctx.node_name;
        let Some(me) = all
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(name.as_str()))
        else {
            return Err(SyncError::Waiting(format!(
                "waiting for Node {name} to be registered"
            )));
        };
        let mut cidrs = node_pod_cidrs(me);
        if cidrs.is_empty() {
            cidrs = claim(self.ctx.watches.client(), name, cfg.pod_cidr.cidrs(), &all)
                .await
                .map_err(SyncError::Failed)?;
        }
        let connected = local_addresses(self.nl)
            .await
            .map_err(failed("reading node addresses"))?;
        let my_ips = node_internal_ips(me);
        let underlay_ip = my_ips
            .first()
            .copied()
            .or_else(|| connected.first().map(IpNet::addr));
        let underlay_mtu = match underlay_ip {
            Some(ip) => mtu_of_address(self.nl, ip)
                .await
                .map_err(failed("reading the underlay MTU"))?
                .unwrap_or(1500),
            None => 1500,
        };
        let mode = cfg.network.mode;
        let mtu = pod_mtu(mode, cfg.network.mtu, underlay_mtu);
        let network = NodeNetwork {
            pod_cidrs: cidrs.clone(),
            mtu,
        };
        self.net_tx.send_if_modified(|n| {
            let changed = *n != network;
            *n = network.clone();
            changed
        });
        self.node_sysctls(&cidrs).await?;

        let peers: Vec<Peer> = all
            .iter()
            .filter(|n| n.metadata.name.as_deref() != Some(name.as_str()))
            .map(|n| Peer {
                name: n.metadata.name.clone().unwrap_or_default(),
                pod_cidrs: node_pod_cidrs(n),
                node_ips: node_internal_ips(n),
            })
            .filter(|p| !p.pod_cidrs.is_empty())
            .collect();
        let routes = plan(mode, &connected, &peers);
        let local_v4 = my_ips
            .iter()
            .copied()
            .chain(connected.iter().map(IpNet::addr))
            .find_map(|ip| match ip {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            });
        let vxlan = local_v4.map(|local| VxlanSpec {
            port: cfg.network.vxlan_port,
            local,
            mtu: underlay_mtu.saturating_sub(VXLAN_OVERHEAD),
            vteps: cidrs.iter().map(IpNet::network).collect(),
        });
        let tunnels = routes
            .iter()
            .filter(|r| matches!(r.path, crate::peers::Path::Vxlan { .. }))
            .count();
        if tunnels > 0
            && let Some(other) = vxlan_port_conflict(self.nl, cfg.network.vxlan_port)
                .await
                .map_err(failed("checking VXLAN devices"))?
        {
            return Err(SyncError::Failed(format!(
                "UDP port {} is already used by the VXLAN device {other}: delete it, or pick \
                 another port with `knet set network.vxlan-port=<port>`",
                cfg.network.vxlan_port
            )));
        }
        sync_peers(self.nl, &routes, vxlan.as_ref())
            .await
            .map_err(failed("programming routes to peer nodes"))?;

        let mut pods: Vec<IpNet> = cfg.pod_cidr.cidrs().to_vec();
        pods.extend(cidrs.iter().copied());
        let mut cluster = pods.clone();
        cluster.extend(cfg.service_cidr.cidrs().iter().copied());
        cluster.extend(peers.iter().flat_map(|p| p.pod_cidrs.iter().copied()));
        apply_masquerade(self.node_ns, masquerade_ruleset(&pods, &cluster))
            .await
            .map_err(failed("installing the masquerade table"))?;

        // Peers (not routes: a dual-stack peer has two) reached over the overlay.
        let vxlan_peers = peers
            .iter()
            .filter(|p| {
                routes.iter().any(|r| {
                    matches!(r.path, crate::peers::Path::Vxlan { .. })
                        && p.pod_cidrs.contains(&r.dst)
                })
            })
            .count();
        let shown: Vec<String> = cidrs.iter().map(ToString::to_string).collect();
        let mode = match mode {
            NetworkMode::Auto => "auto",
            NetworkMode::Native => "native",
            NetworkMode::Vxlan => "vxlan",
        };
        Ok(format!(
            "pod CIDR {}, {} peer(s) ({vxlan_peers} over VXLAN), mode {mode}, MTU {mtu}",
            shown.join(","),
            peers.len()
        ))
    }

    async fn node_sysctls(&self, cidrs: &[IpNet]) -> Result<(), SyncError> {
        let mut s = vec![Sysctl {
            path: sysctl_path(&["net", "ipv4", "ip_forward"]),
            value: "1",
            optional: false,
        }];
        // IPv6 forwarding changes how the node treats router advertisements; only when needed.
        if cidrs.iter().any(|c| c.addr().is_ipv6()) {
            s.push(Sysctl {
                path: sysctl_path(&["net", "ipv6", "conf", "all", "forwarding"]),
                value: "1",
                optional: true,
            });
        }
        set_sysctls(self.node_ns, s)
            .await
            .map_err(failed("enabling forwarding"))
    }
}
