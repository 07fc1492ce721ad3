//! The listening addresses on the node: the only kernel state this feature owns.
//!
//! The cluster DNS Service IP and the node-local address are added to the loopback device `lo`
//! as host routes (/32, /128). IPv4 ones carry the label `lo:knet-dns`, so they can be told
//! apart from anyone else's and removed on disable; IPv6 addresses cannot carry labels, so
//! cleanup removes the ones the config names. Loopback is used because the kernel here has no
//! `dummy` link type; an address on `lo` is local to the node (pods reach it through their
//! node, as they reach a NodeLocal DNSCache address), and nothing is announced off-node.
//!
//! Uses the `ip` command (iproute2): a handful of calls at start, config change and disable.

use std::net::IpAddr;

use serde::Deserialize;
use tokio::process::Command;

/// The label on our IPv4 addresses.
pub const LABEL: &str = "lo:knet-dns";
/// The device the addresses live on.
pub const DEVICE: &str = "lo";

/// A failed `ip` call.
#[derive(Debug, thiserror::Error)]
#[error("ip {args}: {message}")]
pub struct AddressError {
    args: String,
    message: String,
}

#[derive(Debug, Deserialize)]
struct Link {
    #[serde(default)]
    addr_info: Vec<AddrInfo>,
}

#[derive(Debug, Deserialize)]
struct AddrInfo {
    local: Option<IpAddr>,
    prefixlen: Option<u8>,
    label: Option<String>,
}

async fn ip(args: &[&str]) -> Result<String, AddressError> {
    let err = |message: String| AddressError {
        args: args.join(" "),
        message,
    };
    let out = Command::new("ip")
        .args(args)
        .output()
        .await
        .map_err(|e| err(e.to_string()))?;
    if !out.status.success() {
        return Err(err(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn host_prefix(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(_) => format!("{ip}/32"),
        IpAddr::V6(_) => format!("{ip}/128"),
    }
}

/// The host addresses on `lo`: (address, labelled as ours).
pub async fn list() -> Result<Vec<(IpAddr, bool)>, AddressError> {
    let json = ip(&["-j", "addr", "show", "dev", DEVICE]).await?;
    let links: Vec<Link> = serde_json::from_str(&json).map_err(|e| AddressError {
        args: "-j addr show".into(),
        message: e.to_string(),
    })?;
    Ok(links
        .iter()
        .flat_map(|l| &l.addr_info)
        .filter(|a| {
            matches!(
                (a.local, a.prefixlen),
                (Some(IpAddr::V4(_)), Some(32)) | (Some(IpAddr::V6(_)), Some(128))
            )
        })
        .filter_map(|a| Some((a.local?, a.label.as_deref() == Some(LABEL))))
        .collect())
}

/// Makes sure exactly `wanted` are our addresses on `lo`: adds missing ones, removes ours that
/// are no longer wanted (the Service IP changed).
pub async fn ensure(wanted: &[IpAddr]) -> Result<(), AddressError> {
    let present = list().await?;
    for ip in wanted {
        if present.iter().any(|(p, _)| p == ip) {
            continue;
        }
        let prefix = host_prefix(*ip);
        match ip {
            IpAddr::V4(_) => {
                ip_cmd(&["addr", "add", &prefix, "dev", DEVICE, "label", LABEL]).await?
            }
            IpAddr::V6(_) => ip_cmd(&["addr", "add", &prefix, "dev", DEVICE]).await?,
        }
        tracing::info!(address = %ip, device = DEVICE, "added dns listening address");
    }
    for (ip, ours) in present {
        if ours && !wanted.contains(&ip) {
            ip_cmd(&["addr", "del", &host_prefix(ip), "dev", DEVICE]).await?;
            tracing::info!(address = %ip, "removed stale dns listening address");
        }
    }
    Ok(())
}

/// Removes our labelled addresses, and `also` (the IPv6 ones we added, which have no label).
pub async fn remove_all(also: &[IpAddr]) -> Result<(), AddressError> {
    for (ip, ours) in list().await? {
        if ours || also.contains(&ip) {
            ip_cmd(&["addr", "del", &host_prefix(ip), "dev", DEVICE]).await?;
            tracing::info!(address = %ip, "removed dns listening address");
        }
    }
    Ok(())
}

async fn ip_cmd(args: &[&str]) -> Result<(), AddressError> {
    ip(args).await.map(|_| ())
}
