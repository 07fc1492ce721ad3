//! Wiring one pod: a veth pair with the pod end created directly in the pod's namespace, /32 and
//! /128 addresses, a default route via the link-local gateway answered by a permanent neighbour
//! entry, and a host route per pod address.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags};
use netlink_packet_route::link::{InfoData, InfoVeth, LinkMessage};
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteProtocol, RouteScope};
use rtnetlink::{LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::links::all_routes;
use super::links::{link_is_up, link_mac, link_mtu};
use super::sysctl::host_veth_sysctls;
use super::{
    GATEWAY_V4, GATEWAY_V6, HOST_MAC, KernelError, Netlink, ROUTE_PROTO, delete_link, format_mac,
    gateway_for, link_by_name, set_sysctls,
};

/// What to build for one attachment.
#[derive(Debug, Clone)]
pub struct PodWiring {
    /// Host-side veth name.
    pub host_if: String,
    /// Pod-side interface name (`CNI_IFNAME`).
    pub pod_if: String,
    /// The pod's network namespace file.
    pub netns: PathBuf,
    /// The pod's addresses (installed as /32 and /128).
    pub addrs: Vec<IpAddr>,
    /// MTU of both ends.
    pub mtu: u32,
    /// Who owns the pod (`CNI_CONTAINERID`, `CNI_IFNAME`), written as the host veth's alias so
    /// allocations can be rebuilt from the kernel if the store is lost.
    pub owner: (String, String),
}

const EEXIST: i32 = 17;

/// Builds the wiring; returns the pod interface's MAC. On error the caller must
/// [`unwire_pod`] (a half-built veth is deleted with its host end).
pub async fn wire_pod(
    node: &Netlink,
    node_ns: Option<&Path>,
    w: &PodWiring,
) -> Result<String, KernelError> {
    let h = &node.handle;
    // A retried ADD rebuilds from scratch; deleting the host end deletes the old pod end too.
    delete_link(h, &w.host_if).await?;
    let netns_file = std::fs::File::open(&w.netns).map_err(|source| KernelError::OpenNetns {
        path: w.netns.display().to_string(),
        source,
    })?;
    let peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(w.pod_if.clone())
        .mtu(w.mtu)
        .setns_by_fd(std::os::fd::AsRawFd::as_raw_fd(&netns_file))
        .build();
    let veth = LinkMessageBuilder::<LinkVeth>::new(&w.host_if, &w.pod_if)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .address(HOST_MAC.to_vec())
        .mtu(w.mtu)
        .build();
    if let Err(e) = h.link().add(veth).execute().await {
        if super::is_errno(&e, EEXIST) {
            return Err(KernelError::netlink(format!(
                "creating veth {}: an interface named {} already exists in {}",
                w.host_if,
                w.pod_if,
                w.netns.display()
            ))(e));
        }
        return Err(KernelError::netlink(format!("creating veth {}", w.host_if))(e));
    }
    drop(netns_file);

    // Host side: sysctls before it comes up (no DAD on its link-local), then up, then routes.
    set_sysctls(node_ns, host_veth_sysctls(&w.host_if)).await?;
    let host = link_by_name(h, &w.host_if)
        .await?
        .ok_or_else(|| gone(&w.host_if))?;
    let host_index = host.header.index;
    set_alias(h, host_index, &owner_alias(&w.owner.0, &w.owner.1)).await?;
    set_up(h, host_index, &w.host_if).await?;
    for ip in &w.addrs {
        add_host_route(h, host_index, *ip).await?;
    }

    // Pod side.
    let pod = Netlink::open(Some(&w.netns)).await?;
    let ph = &pod.handle;
    let link = link_by_name(ph, &w.pod_if)
        .await?
        .ok_or_else(|| gone(&w.pod_if))?;
    let idx = link.header.index;
    let mac = link_mac(&link).map(|m| format_mac(&m)).unwrap_or_default();
    for ip in &w.addrs {
        let prefix = if ip.is_ipv4() { 32 } else { 128 };
        let mut req = ph.address().add(idx, *ip, prefix).replace();
        if ip.is_ipv6() {
            // No duplicate address detection: the address is ours alone, and DAD would delay the
            // pod's first packets by a second or more.
            req.message_mut().header.flags |= AddressHeaderFlags::Nodad;
        }
        req.execute()
            .await
            .map_err(KernelError::netlink(format!("adding {ip} to {}", w.pod_if)))?;
    }
    set_up(ph, idx, &w.pod_if).await?;
    let families: Vec<bool> = dedup_families(&w.addrs);
    for is_v4 in families {
        let gw = if is_v4 {
            IpAddr::V4(GATEWAY_V4)
        } else {
            IpAddr::V6(GATEWAY_V6)
        };
        ph.neighbours()
            .add(idx, gw)
            .link_layer_address(&HOST_MAC)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(KernelError::netlink(format!(
                "adding neighbour {gw} in the pod"
            )))?;
        let route = if is_v4 {
            let onlink = RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                .destination_prefix(GATEWAY_V4, 32)
                .output_interface(idx)
                .scope(RouteScope::Link)
                .build();
            ph.route()
                .add(onlink)
                .replace()
                .execute()
                .await
                .map_err(KernelError::netlink("adding the gateway route in the pod"))?;
            RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                .gateway(GATEWAY_V4)
                .output_interface(idx)
                .build()
        } else {
            RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                .gateway(GATEWAY_V6)
                .output_interface(idx)
                .onlink()
                .build()
        };
        ph.route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(KernelError::netlink(format!(
                "adding the default route via {gw} in the pod"
            )))?;
    }
    Ok(mac)
}

/// Removes an attachment: the host veth (which takes the pod end with it) and, if the pod's
/// namespace still exists, an interface of that name left in it. Missing pieces are fine.
pub async fn unwire_pod(
    node: &Netlink,
    host_if: &str,
    netns: Option<&Path>,
    pod_if: &str,
) -> Result<(), KernelError> {
    delete_link(&node.handle, host_if).await?;
    if let Some(path) = netns.filter(|p| p.exists()) {
        match Netlink::open(Some(path)).await {
            Ok(pod) => {
                // Only a veth we created can be left here; never delete anything else.
                if let Some(link) = link_by_name(&pod.handle, pod_if).await?
                    && is_veth(&link)
                {
                    delete_link(&pod.handle, pod_if).await?;
                }
            }
            Err(KernelError::OpenNetns { .. } | KernelError::Setns { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Verifies an attachment; returns what is wrong (empty when healthy).
pub async fn check_pod(node: &Netlink, w: &PodWiring) -> Result<Vec<String>, KernelError> {
    let mut problems = Vec::new();
    match link_by_name(&node.handle, &w.host_if).await? {
        None => problems.push(format!("the host-side veth {} is missing", w.host_if)),
        Some(link) => {
            if !link_is_up(&link) {
                problems.push(format!("the host-side veth {} is down", w.host_if));
            }
            let routes = routes_on(&node.handle, link.header.index).await?;
            for ip in &w.addrs {
                if !routes.contains(ip) {
                    problems.push(format!("the node has no route to {ip} via {}", w.host_if));
                }
            }
        }
    }
    let pod = match Netlink::open(Some(&w.netns)).await {
        Ok(p) => p,
        Err(e) => {
            problems.push(e.to_string());
            return Ok(problems);
        }
    };
    let ph = &pod.handle;
    let Some(link) = link_by_name(ph, &w.pod_if).await? else {
        problems.push(format!("the pod has no interface {}", w.pod_if));
        return Ok(problems);
    };
    let idx = link.header.index;
    if !link_is_up(&link) {
        problems.push(format!("the pod interface {} is down", w.pod_if));
    }
    if w.mtu != 0 && link_mtu(&link).is_some_and(|m| m != w.mtu) {
        problems.push(format!("the pod interface {} has the wrong MTU", w.pod_if));
    }
    let addrs = addresses_on(ph, idx).await?;
    for ip in &w.addrs {
        if !addrs.contains(ip) {
            problems.push(format!("the pod interface {} lacks address {ip}", w.pod_if));
        }
    }
    let neighbours = permanent_neighbours(ph, idx).await?;
    let gateways = routes_gateways(ph, idx).await?;
    for is_v4 in dedup_families(&w.addrs) {
        let gw = gateway_for(if is_v4 {
            IpAddr::V4(GATEWAY_V4)
        } else {
            IpAddr::V6(GATEWAY_V6)
        });
        if !neighbours
            .iter()
            .any(|(ip, mac)| *ip == gw && mac == &HOST_MAC)
        {
            problems.push(format!("the pod has no permanent neighbour entry for {gw}"));
        }
        if !gateways.contains(&gw) {
            problems.push(format!("the pod has no default route via {gw}"));
        }
    }
    Ok(problems)
}

fn gone(name: &str) -> KernelError {
    KernelError::Thread(format!("link {name} vanished while it was being set up"))
}

fn is_veth(link: &LinkMessage) -> bool {
    use netlink_packet_route::link::{InfoKind, LinkInfo};
    link.attributes.iter().any(|a| {
        matches!(a, netlink_packet_route::link::LinkAttribute::LinkInfo(infos)
            if infos.iter().any(|i| matches!(i, LinkInfo::Kind(InfoKind::Veth))))
    })
}

fn dedup_families(addrs: &[IpAddr]) -> Vec<bool> {
    let mut out = Vec::new();
    for ip in addrs {
        if !out.contains(&ip.is_ipv4()) {
            out.push(ip.is_ipv4());
        }
    }
    out
}

async fn set_up(h: &rtnetlink::Handle, index: u32, name: &str) -> Result<(), KernelError> {
    h.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(KernelError::netlink(format!("bringing {name} up")))
}

async fn add_host_route(h: &rtnetlink::Handle, index: u32, ip: IpAddr) -> Result<(), KernelError> {
    let prefix = if ip.is_ipv4() { 32 } else { 128 };
    let mut b = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(ip, prefix)
        .map_err(|e| KernelError::Thread(e.to_string()))?
        .output_interface(index)
        .protocol(RouteProtocol::Other(ROUTE_PROTO));
    if ip.is_ipv4() {
        b = b.scope(RouteScope::Link);
    }
    h.route()
        .add(b.build())
        .replace()
        .execute()
        .await
        .map_err(KernelError::netlink(format!(
            "adding the node's route to {ip}"
        )))
}

async fn addresses_on(h: &rtnetlink::Handle, index: u32) -> Result<Vec<IpAddr>, KernelError> {
    let msgs: Vec<_> = h
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(KernelError::netlink("listing pod addresses"))?;
    Ok(msgs
        .iter()
        .flat_map(|m| m.attributes.iter())
        .filter_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
        .collect())
}

fn route_oif(r: &netlink_packet_route::route::RouteMessage) -> Option<u32> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    })
}

fn route_addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// The alias knet writes on a host veth: `knet:<container id>:<ifname>`.
pub fn owner_alias(container_id: &str, ifname: &str) -> String {
    format!("knet:{container_id}:{ifname}")
}

/// Reads an alias written by [`owner_alias`].
pub fn parse_owner_alias(alias: &str) -> Option<(String, String)> {
    let rest = alias.strip_prefix("knet:")?;
    let (cid, ifname) = rest.rsplit_once(':')?;
    (!cid.is_empty() && !ifname.is_empty()).then(|| (cid.to_owned(), ifname.to_owned()))
}

async fn set_alias(h: &rtnetlink::Handle, index: u32, alias: &str) -> Result<(), KernelError> {
    let mut msg = netlink_packet_route::link::LinkMessage::default();
    msg.header.index = index;
    msg.attributes
        .push(netlink_packet_route::link::LinkAttribute::IfAlias(
            alias.to_owned(),
        ));
    h.link()
        .set(msg)
        .execute()
        .await
        .map_err(KernelError::netlink(format!(
            "tagging link {index} with its owner"
        )))
}

/// Every knet host veth with its owner (from the alias) and the pod addresses routed to it:
/// what the kernel says about allocations, used to rebuild a lost store.
pub async fn pods_in_kernel(
    h: &rtnetlink::Handle,
) -> Result<Vec<((String, String), Vec<IpAddr>)>, KernelError> {
    use futures::TryStreamExt;
    let links: Vec<netlink_packet_route::link::LinkMessage> = h
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(KernelError::netlink("listing links"))?;
    let mut out = Vec::new();
    for link in &links {
        let Some(name) = super::links::link_name(link) else {
            continue;
        };
        if !super::is_host_veth(&name) {
            continue;
        }
        let owner = link.attributes.iter().find_map(|a| match a {
            netlink_packet_route::link::LinkAttribute::IfAlias(al) => parse_owner_alias(al),
            _ => None,
        });
        if let Some(owner) = owner {
            out.push((owner, pod_routes_on(h, link.header.index).await?));
        }
    }
    Ok(out)
}

/// Pod addresses knet routed to `index`: its own (`proto 75`) full-length host routes only,
/// not the kernel's link-local, multicast or local-table routes on the same link.
async fn pod_routes_on(h: &rtnetlink::Handle, index: u32) -> Result<Vec<IpAddr>, KernelError> {
    Ok(all_routes(h)
        .await?
        .iter()
        .filter(|r| route_oif(r) == Some(index))
        .filter(|r| r.header.protocol == RouteProtocol::Other(ROUTE_PROTO))
        .filter(|r| matches!(r.header.destination_prefix_length, 32 | 128))
        .filter_map(|r| {
            r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Destination(d) => route_addr(d),
                _ => None,
            })
        })
        .collect())
}

/// Destinations of host routes (full-length prefixes) out of `index`.
async fn routes_on(h: &rtnetlink::Handle, index: u32) -> Result<Vec<IpAddr>, KernelError> {
    Ok(all_routes(h)
        .await?
        .iter()
        .filter(|r| route_oif(r) == Some(index))
        .filter_map(|r| {
            r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Destination(d) => route_addr(d),
                _ => None,
            })
        })
        .collect())
}

/// Gateways of default routes out of `index`.
async fn routes_gateways(h: &rtnetlink::Handle, index: u32) -> Result<Vec<IpAddr>, KernelError> {
    Ok(all_routes(h)
        .await?
        .iter()
        .filter(|r| route_oif(r) == Some(index) && r.header.destination_prefix_length == 0)
        .filter_map(|r| {
            r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(g) => route_addr(g),
                _ => None,
            })
        })
        .collect())
}

async fn permanent_neighbours(
    h: &rtnetlink::Handle,
    index: u32,
) -> Result<Vec<(IpAddr, Vec<u8>)>, KernelError> {
    let msgs: Vec<_> = h
        .neighbours()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(KernelError::netlink("listing pod neighbours"))?;
    Ok(msgs
        .iter()
        .filter(|m| m.header.ifindex == index && m.header.state == NeighbourState::Permanent)
        .filter_map(|m| {
            let ip = m.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                    Some(IpAddr::V4(*v4))
                }
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                    Some(IpAddr::V6(*v6))
                }
                _ => None,
            })?;
            let mac = m.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::LinkLayerAddress(mac) => Some(mac.clone()),
                _ => None,
            })?;
            Some((ip, mac))
        })
        .collect())
}

#[cfg(test)]
mod alias_tests {
    use super::*;

    #[test]
    fn owner_alias_round_trips() {
        let a = owner_alias("0123abcd", "eth0");
        assert_eq!(a, "knet:0123abcd:eth0");
        assert_eq!(
            parse_owner_alias(&a),
            Some(("0123abcd".into(), "eth0".into()))
        );
        assert_eq!(parse_owner_alias("knet::eth0"), None);
        assert_eq!(parse_owner_alias("other"), None);
    }
}
