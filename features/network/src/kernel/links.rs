//! Small link helpers: find by name, delete by name, list knet's host veths.

use futures::TryStreamExt;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};

use super::{KernelError, is_errno, is_host_veth};

const ENODEV: i32 = 19;

/// The link called `name`, if it exists.
pub async fn link_by_name(
    h: &rtnetlink::Handle,
    name: &str,
) -> Result<Option<LinkMessage>, KernelError> {
    let mut links = h.link().get().match_name(name.to_owned()).execute();
    match links.try_next().await {
        Ok(link) => Ok(link),
        Err(e) if is_errno(&e, ENODEV) => Ok(None),
        Err(e) => Err(KernelError::netlink(format!("looking up link {name}"))(e)),
    }
}

/// Deletes the link called `name`; returns whether it existed.
pub async fn delete_link(h: &rtnetlink::Handle, name: &str) -> Result<bool, KernelError> {
    let Some(link) = link_by_name(h, name).await? else {
        return Ok(false);
    };
    match h.link().del(link.header.index).execute().await {
        Ok(()) => Ok(true),
        Err(e) if is_errno(&e, ENODEV) => Ok(false),
        Err(e) => Err(KernelError::netlink(format!("deleting link {name}"))(e)),
    }
}

/// Names of all of knet's host-side pod veths.
pub async fn host_veths(h: &rtnetlink::Handle) -> Result<Vec<String>, KernelError> {
    let links: Vec<LinkMessage> = h
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(KernelError::netlink("listing links"))?;
    Ok(links
        .iter()
        .filter_map(link_name)
        .filter(|n| is_host_veth(n))
        .collect())
}

/// Every IPv4 and IPv6 route of the main and local tables.
pub async fn all_routes(
    h: &rtnetlink::Handle,
) -> Result<Vec<netlink_packet_route::route::RouteMessage>, KernelError> {
    let mut out = Vec::new();
    for v4 in [true, false] {
        let msg = if v4 {
            rtnetlink::RouteMessageBuilder::<std::net::Ipv4Addr>::new().build()
        } else {
            rtnetlink::RouteMessageBuilder::<std::net::Ipv6Addr>::new().build()
        };
        let routes: Vec<_> = h
            .route()
            .get(msg)
            .execute()
            .try_collect()
            .await
            .map_err(KernelError::netlink("listing routes"))?;
        out.extend(routes);
    }
    Ok(out)
}

/// A link's name.
pub fn link_name(link: &LinkMessage) -> Option<String> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })
}

/// A link's MAC address.
pub(crate) fn link_mac(link: &LinkMessage) -> Option<Vec<u8>> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(m) => Some(m.clone()),
        _ => None,
    })
}

/// A link's MTU.
pub(crate) fn link_mtu(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(m) => Some(*m),
        _ => None,
    })
}

/// Whether a link is administratively up.
pub(crate) fn link_is_up(link: &LinkMessage) -> bool {
    link.header.flags.contains(LinkFlags::Up)
}
