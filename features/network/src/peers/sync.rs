//! Programming the plan: level-triggered, idempotent, and touching only what knet created
//! (routes of protocol 76, the `knet.vxlan` device).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkInfo};
use netlink_packet_route::neighbour::{NeighbourFlags, NeighbourState};
use netlink_packet_route::route::{RouteAttribute, RouteMessage, RouteProtocol};
use rtnetlink::{LinkUnspec, LinkVxlan, RouteMessageBuilder};

use super::{PEER_PROTO, Path, PeerRoute, VNI, vtep_mac};
use crate::kernel::{KernelError, Netlink, all_routes, delete_link, link_by_name};

/// Name of knet's VXLAN device.
pub const VXLAN_DEV: &str = "knet.vxlan";

/// The local end of the overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanSpec {
    /// UDP port.
    pub port: u16,
    /// This node's underlay address.
    pub local: Ipv4Addr,
    /// Device MTU.
    pub mtu: u32,
    /// Our own VTEP addresses (our pod CIDRs' network addresses).
    pub vteps: Vec<IpAddr>,
}

/// Makes the kernel match `routes`; creates `knet.vxlan` when any route needs it (and `vxlan`
/// is given) and deletes it otherwise.
pub async fn sync_peers(
    nl: &Netlink,
    routes: &[PeerRoute],
    vxlan: Option<&VxlanSpec>,
) -> Result<(), KernelError> {
    let h = &nl.handle;
    let needs_vxlan = routes.iter().any(|r| matches!(r.path, Path::Vxlan { .. }));
    let vx_index = match (needs_vxlan, vxlan) {
        (true, Some(spec)) => Some(ensure_vxlan(nl, spec).await?),
        _ => {
            delete_link(h, VXLAN_DEV).await?;
            None
        }
    };
    let mut wanted = HashSet::new();
    for r in routes {
        let mut b = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(r.dst.network(), r.dst.prefix_len())
            .map_err(|e| KernelError::Thread(e.to_string()))?
            .protocol(RouteProtocol::Other(PEER_PROTO));
        match (&r.path, vx_index) {
            (Path::Native { via }, _) => {
                b = b
                    .gateway(*via)
                    .map_err(|e| KernelError::Thread(e.to_string()))?;
            }
            (
                Path::Vxlan {
                    underlay,
                    vtep,
                    mac,
                },
                Some(idx),
            ) => {
                h.neighbours()
                    .add(idx, *vtep)
                    .link_layer_address(mac)
                    .state(NeighbourState::Permanent)
                    .replace()
                    .execute()
                    .await
                    .map_err(KernelError::netlink(format!("adding neighbour {vtep}")))?;
                h.neighbours()
                    .add_bridge(idx, mac)
                    .destination(IpAddr::V4(*underlay))
                    .flags(NeighbourFlags::Own)
                    .state(NeighbourState::Permanent)
                    .replace()
                    .execute()
                    .await
                    .map_err(KernelError::netlink(format!(
                        "adding FDB entry for {underlay}"
                    )))?;
                b = b
                    .gateway(*vtep)
                    .map_err(|e| KernelError::Thread(e.to_string()))?
                    .output_interface(idx)
                    .onlink();
            }
            (Path::Vxlan { .. }, None) => continue,
        }
        match h.route().add(b.build()).replace().execute().await {
            Ok(()) => {
                wanted.insert(r.dst);
            }
            Err(e) => {
                tracing::warn!(error = %e, dst = %r.dst, "cannot install the route to a peer's pods");
            }
        }
    }
    for old in peer_routes(h).await? {
        let dst = route_dst(&old);
        if dst.is_none_or(|d| !wanted.contains(&d)) {
            h.route()
                .del(old)
                .execute()
                .await
                .map_err(KernelError::netlink("deleting a stale peer route"))?;
        }
    }
    Ok(())
}

/// Removes every peer route and the VXLAN device (disable).
pub async fn delete_peer_state(nl: &Netlink) -> Result<(), KernelError> {
    for old in peer_routes(&nl.handle).await? {
        nl.handle
            .route()
            .del(old)
            .execute()
            .await
            .map_err(KernelError::netlink("deleting a peer route"))?;
    }
    delete_link(&nl.handle, VXLAN_DEV).await?;
    Ok(())
}

/// Another VXLAN device bound to `port`, if any (it would make ours fail to come up).
pub async fn vxlan_port_conflict(nl: &Netlink, port: u16) -> Result<Option<String>, KernelError> {
    let links: Vec<_> = nl
        .handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(KernelError::netlink("listing links"))?;
    for link in links {
        let name = crate::kernel::links_name(&link).unwrap_or_default();
        if name == VXLAN_DEV {
            continue;
        }
        if vxlan_port(&link) == Some(port) {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

/// This node's own addresses with their prefixes (loopback excluded).
pub async fn local_addresses(nl: &Netlink) -> Result<Vec<IpNet>, KernelError> {
    let msgs: Vec<_> = nl
        .handle
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(KernelError::netlink("listing addresses"))?;
    Ok(msgs
        .iter()
        .filter_map(|m| {
            let ip = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            })?;
            (!ip.is_loopback())
                .then(|| IpNet::new(ip, m.header.prefix_len).ok())
                .flatten()
        })
        .collect())
}

/// The MTU of the interface holding `ip`.
pub async fn mtu_of_address(nl: &Netlink, ip: IpAddr) -> Result<Option<u32>, KernelError> {
    let msgs: Vec<_> = nl
        .handle
        .address()
        .get()
        .set_address_filter(ip)
        .execute()
        .try_collect()
        .await
        .map_err(KernelError::netlink("looking up an address"))?;
    let Some(index) = msgs.first().map(|m| m.header.index) else {
        return Ok(None);
    };
    let mut links = nl.handle.link().get().match_index(index).execute();
    let link = links
        .try_next()
        .await
        .map_err(KernelError::netlink("looking up a link"))?;
    Ok(link.and_then(|l| {
        l.attributes.iter().find_map(|a| match a {
            LinkAttribute::Mtu(m) => Some(*m),
            _ => None,
        })
    }))
}

async fn ensure_vxlan(nl: &Netlink, spec: &VxlanSpec) -> Result<u32, KernelError> {
    let h = &nl.handle;
    if let Some(link) = link_by_name(h, VXLAN_DEV).await? {
        if vxlan_port(&link) == Some(spec.port) && vxlan_local(&link) == Some(spec.local) {
            let idx = link.header.index;
            h.link()
                .set(LinkUnspec::new_with_index(idx).mtu(spec.mtu).up().build())
                .execute()
                .await
                .map_err(KernelError::netlink("updating knet.vxlan"))?;
            add_vteps(h, idx, &spec.vteps).await?;
            return Ok(idx);
        }
        // Port or local address changed: rebuild.
        delete_link(h, VXLAN_DEV).await?;
    }
    let msg = LinkVxlan::new(VXLAN_DEV, VNI)
        .port(spec.port)
        .local(spec.local)
        .learning(false)
        .address(vtep_mac(spec.local).to_vec())
        .mtu(spec.mtu)
        .up()
        .build();
    h.link()
        .add(msg)
        .execute()
        .await
        .map_err(KernelError::netlink(format!(
            "creating {VXLAN_DEV} on UDP port {}",
            spec.port
        )))?;
    let idx = link_by_name(h, VXLAN_DEV)
        .await?
        .map(|l| l.header.index)
        .ok_or_else(|| KernelError::Thread(format!("{VXLAN_DEV} vanished after creation")))?;
    add_vteps(h, idx, &spec.vteps).await?;
    Ok(idx)
}

async fn add_vteps(h: &rtnetlink::Handle, idx: u32, vteps: &[IpAddr]) -> Result<(), KernelError> {
    for ip in vteps {
        let prefix = if ip.is_ipv4() { 32 } else { 128 };
        h.address()
            .add(idx, *ip, prefix)
            .replace()
            .execute()
            .await
            .map_err(KernelError::netlink(format!("adding {ip} to {VXLAN_DEV}")))?;
    }
    Ok(())
}

fn vxlan_infos(link: &netlink_packet_route::link::LinkMessage) -> Option<&Vec<InfoVxlan>> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => {
            let is_vxlan = infos
                .iter()
                .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Vxlan)));
            infos.iter().find_map(|i| match i {
                LinkInfo::Data(InfoData::Vxlan(v)) if is_vxlan => Some(v),
                _ => None,
            })
        }
        _ => None,
    })
}

fn vxlan_port(link: &netlink_packet_route::link::LinkMessage) -> Option<u16> {
    vxlan_infos(link)?.iter().find_map(|i| match i {
        InfoVxlan::Port(p) => Some(*p),
        _ => None,
    })
}

fn vxlan_local(link: &netlink_packet_route::link::LinkMessage) -> Option<Ipv4Addr> {
    vxlan_infos(link)?.iter().find_map(|i| match i {
        InfoVxlan::Local(ip) => Some(*ip),
        _ => None,
    })
}

async fn peer_routes(h: &rtnetlink::Handle) -> Result<Vec<RouteMessage>, KernelError> {
    Ok(all_routes(h)
        .await?
        .into_iter()
        .filter(|r| r.header.protocol == RouteProtocol::Other(PEER_PROTO))
        .collect())
}

fn route_dst(r: &RouteMessage) -> Option<IpNet> {
    use netlink_packet_route::route::RouteAddress;
    let ip = r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
        RouteAttribute::Destination(RouteAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
        _ => None,
    })?;
    IpNet::new(ip, r.header.destination_prefix_length).ok()
}
