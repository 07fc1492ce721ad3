//! Connection tracking off for DNS on the listening addresses, as NodeLocal DNSCache does it.
//!
//! The table `inet knet-dns` (this feature's own; nothing else touches it) has two chains at the
//! `raw` priority, before conntrack sees a packet:
//!
//! ```text
//! prerouting: queries to the DNS addresses, port 53 (UDP and TCP)  → notrack
//! output:     answers from the DNS addresses, port 53               → notrack
//!             the node's own queries to the DNS addresses, port 53  → notrack
//! ```
//!
//! Untracked, a query costs no conntrack entry (UDP entries otherwise live 30 s and fill the table
//! on a busy node), takes no conntrack lock, and cannot hit the insert races behind the classic
//! 5 s lookups. Queries are answered locally and never NATed, so nothing needs the state. The
//! forwarder's own queries to upstreams use the node's address and are tracked as usual.
//!
//! Applied with `nft -f -` as one transaction (the table is replaced whole), removed on disable
//! and by `knet reset`.

use std::net::IpAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

/// The table (family `inet`).
pub const TABLE: &str = "knet-dns";
/// How long one `nft` run may take.
const NFT_TIMEOUT: Duration = Duration::from_secs(20);

/// Installing or removing the table failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotrackError {
    /// `nft` could not be started.
    #[error("cannot run nft ({0}); install the nftables package")]
    Spawn(#[source] std::io::Error),
    /// `nft` refused the script.
    #[error("nft rejected the knet-dns table: {0}")]
    Rejected(String),
    /// `nft` hung.
    #[error("nft did not finish within {0:?}")]
    Timeout(Duration),
    /// Talking to `nft` failed.
    #[error("talking to nft: {0}")]
    Io(#[source] std::io::Error),
}

/// `a, b` for an nft anonymous set.
fn set_of(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The script that replaces the table: notrack for port 53 to and from `ips`.
pub fn ruleset(ips: &[IpAddr]) -> String {
    let mut pre = String::new();
    let mut out = String::new();
    for (family, v4) in [("ip", true), ("ip6", false)] {
        let of_family: Vec<IpAddr> = ips.iter().copied().filter(|i| i.is_ipv4() == v4).collect();
        if of_family.is_empty() {
            continue;
        }
        let set = set_of(&of_family);
        let l4 = "meta l4proto { tcp, udp }";
        pre.push_str(&format!(
            "    {family} daddr {{ {set} }} {l4} th dport 53 notrack\n"
        ));
        out.push_str(&format!(
            "    {family} saddr {{ {set} }} {l4} th sport 53 notrack\n"
        ));
        out.push_str(&format!(
            "    {family} daddr {{ {set} }} {l4} th dport 53 notrack\n"
        ));
    }
    format!(
        "table inet {TABLE} {{}}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n\
         \x20 chain prerouting {{\n    type filter hook prerouting priority raw; policy accept;\n{pre}  }}\n\
         \x20 chain output {{\n    type filter hook output priority raw; policy accept;\n{out}  }}\n}}\n"
    )
}

/// Installs (or replaces) the table for `ips`.
pub async fn apply(ips: &[IpAddr]) -> Result<(), NotrackError> {
    nft(&ruleset(ips)).await
}

/// Removes the table; fine if it is not there.
pub async fn remove() -> Result<(), NotrackError> {
    nft(&format!(
        "table inet {TABLE} {{}}\ndelete table inet {TABLE}\n"
    ))
    .await
}

async fn nft(script: &str) -> Result<(), NotrackError> {
    let mut child = tokio::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(NotrackError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .await
            .map_err(NotrackError::Io)?;
    }
    let out = tokio::time::timeout(NFT_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| NotrackError::Timeout(NFT_TIMEOUT))?
        .map_err(NotrackError::Io)?;
    if !out.status.success() {
        return Err(NotrackError::Rejected(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_covers_both_addresses_and_directions() {
        let ips: Vec<IpAddr> = ["10.152.183.10", "169.254.20.10", "fd98::a"]
            .iter()
            .map(|s| s.parse().expect("ip"))
            .collect();
        let r = ruleset(&ips);
        assert!(r.starts_with("table inet knet-dns {}\ndelete table inet knet-dns\n"));
        for line in [
            "ip daddr { 10.152.183.10, 169.254.20.10 } meta l4proto { tcp, udp } th dport 53 notrack",
            "ip saddr { 10.152.183.10, 169.254.20.10 } meta l4proto { tcp, udp } th sport 53 notrack",
            "ip6 daddr { fd98::a } meta l4proto { tcp, udp } th dport 53 notrack",
            "ip6 saddr { fd98::a } meta l4proto { tcp, udp } th sport 53 notrack",
            "type filter hook prerouting priority raw; policy accept;",
            "type filter hook output priority raw; policy accept;",
        ] {
            assert!(r.contains(line), "missing {line:?} in\n{r}");
        }
        // prerouting: 1 rule per family; output: 2.
        assert_eq!(r.matches("notrack").count(), 6, "{r}");
    }
}
