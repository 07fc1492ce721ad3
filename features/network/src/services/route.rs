//! A route for the service CIDRs on nodes that have none. A process on the node connecting to a
//! ClusterIP needs a route to it before netfilter's output hook can translate the packet;
//! nodes normally have a default route, but a node without one (an isolated lab node, an
//! air-gapped host) would fail with "network unreachable". There, knet adds
//! `<service CIDR> dev <InternalIP's interface> proto 77`, and removes it on disable.

use std::net::IpAddr;

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::route::{RouteAttribute, RouteMessage, RouteProtocol, RouteScope};
use rtnetlink::RouteMessageBuilder;

use super::ServicesError;
use crate::kernel::{KernelError, Netlink};

/// Route protocol of the service CIDR routes.
pub const SERVICE_ROUTE_PROTO: u8 = 77;

/// Adds a route for each service CIDR no route covers yet, via the interface of `node_ip`.
pub async fn ensure(nl: &Netlink, cidrs: &[IpNet], node_ip: IpAddr) -> Result<(), ServicesError> {
    let h = &nl.handle;
    let addrs: Vec<_> = h
        .address()
        .get()
        .set_address_filter(node_ip)
        .execute()
        .try_collect()
        .await
        .map_err(KernelError::netlink("looking up the node address"))?;
    let Some(index) = addrs.first().map(|m| m.header.index) else {
        return Ok(());
    };
    for cidr in cidrs
        .iter()
        .filter(|c| c.addr().is_ipv4() == node_ip.is_ipv4())
    {
        let routes = list(nl, cidr.addr()).await?;
        let covered = routes.iter().any(|r| {
            r.header.protocol != RouteProtocol::Other(SERVICE_ROUTE_PROTO)
                && dst(r).is_some_and(|d| d.contains(&cidr.network()))
        });
        let ours = routes
            .iter()
            .any(|r| r.header.protocol == RouteProtocol::Other(SERVICE_ROUTE_PROTO));
        if covered || ours {
            continue;
        }
        let msg = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(cidr.network(), cidr.prefix_len())
            .map_err(|e| ServicesError::Exec(e.to_string()))?
            .output_interface(index)
            .scope(RouteScope::Link)
            .protocol(RouteProtocol::Other(SERVICE_ROUTE_PROTO))
            .build();
        h.route()
            .add(msg)
            .replace()
            .execute()
            .await
            .map_err(KernelError::netlink(format!("adding a route for {cidr}")))?;
        tracing::info!(%cidr, "added a route for the service CIDR (the node has none)");
    }
    Ok(())
}

/// Removes the routes [`ensure`] added.
pub async fn remove(nl: &Netlink) -> Result<(), ServicesError> {
    for probe in [IpAddr::from([0, 0, 0, 0]), IpAddr::from([0u16; 8])] {
        for r in list(nl, probe).await? {
            if r.header.protocol == RouteProtocol::Other(SERVICE_ROUTE_PROTO) {
                nl.handle
                    .route()
                    .del(r)
                    .execute()
                    .await
                    .map_err(KernelError::netlink("deleting a service CIDR route"))?;
            }
        }
    }
    Ok(())
}

async fn list(nl: &Netlink, family_of: IpAddr) -> Result<Vec<RouteMessage>, ServicesError> {
    let mut filter = RouteMessageBuilder::<IpAddr>::new().build();
    filter.header.address_family = if family_of.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    Ok(nl
        .handle
        .route()
        .get(filter)
        .execute()
        .try_collect()
        .await
        .map_err(KernelError::netlink("listing routes"))?)
}

fn dst(r: &RouteMessage) -> Option<IpNet> {
    let len = r.header.destination_prefix_length;
    if len == 0 {
        return IpNet::new(
            if r.header.address_family == AddressFamily::Inet6 {
                IpAddr::from([0u16; 8])
            } else {
                IpAddr::from([0, 0, 0, 0])
            },
            0,
        )
        .ok();
    }
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(d) => {
            let ip = match d {
                netlink_packet_route::route::RouteAddress::Inet(v4) => IpAddr::V4(*v4),
                netlink_packet_route::route::RouteAddress::Inet6(v6) => IpAddr::V6(*v6),
                _ => return None,
            };
            IpNet::new(ip, len).ok()
        }
        _ => None,
    })
}
