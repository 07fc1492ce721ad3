//! Source NAT for traffic leaving the cluster: one nftables table of our own,
//! `table inet knet-network`, replaced atomically with `nft -f -` and never touching any other
//! table.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use ipnet::IpNet;
use tokio::io::AsyncWriteExt;

use super::{KernelError, in_netns};

/// The table's name (family `inet`).
pub const MASQ_TABLE: &str = "knet-network";

/// How long one `nft` run may take.
const NFT_TIMEOUT: Duration = Duration::from_secs(20);

/// The ruleset: masquerade what comes from a pod CIDR and goes outside every cluster CIDR (pod
/// and service), so pod-to-pod and pod-to-service traffic keeps its source address.
pub fn masquerade_ruleset(pod_cidrs: &[IpNet], cluster_cidrs: &[IpNet]) -> String {
    let mut out = format!(
        "table inet {MASQ_TABLE} {{}}\ndelete table inet {MASQ_TABLE}\ntable inet {MASQ_TABLE} {{\n"
    );
    let mut rules = Vec::new();
    // Interval sets refuse overlapping elements (the cluster CIDR holds the node's pod CIDR):
    // merge first.
    let pod_cidrs = IpNet::aggregate(&pod_cidrs.to_vec());
    let cluster_cidrs = IpNet::aggregate(&cluster_cidrs.to_vec());
    for (fam, ty, v4) in [("v4", "ipv4_addr", true), ("v6", "ipv6_addr", false)] {
        let pods: Vec<String> = pod_cidrs
            .iter()
            .filter(|n| n.addr().is_ipv4() == v4)
            .map(ToString::to_string)
            .collect();
        let cluster: Vec<String> = cluster_cidrs
            .iter()
            .filter(|n| n.addr().is_ipv4() == v4)
            .map(ToString::to_string)
            .collect();
        if pods.is_empty() {
            continue;
        }
        out.push_str(&format!(
            "  set pods-{fam} {{\n    type {ty}; flags interval;\n    elements = {{ {} }}\n  }}\n",
            pods.join(", ")
        ));
        out.push_str(&format!(
            "  set cluster-{fam} {{\n    type {ty}; flags interval;\n    elements = {{ {} }}\n  }}\n",
            cluster.join(", ")
        ));
        let ip = if v4 { "ip" } else { "ip6" };
        rules.push(format!(
            "    {ip} saddr @pods-{fam} {ip} daddr != @cluster-{fam} counter masquerade"
        ));
    }
    out.push_str(
        "  chain postrouting {\n    type nat hook postrouting priority 100; policy accept;\n",
    );
    for r in rules {
        out.push_str(&r);
        out.push('\n');
    }
    out.push_str("  }\n}\n");
    out
}

/// Installs (or replaces) the table in `netns` (the daemon's own when `None`).
pub async fn apply_masquerade(netns: Option<&Path>, ruleset: String) -> Result<(), KernelError> {
    run_nft(netns, ruleset).await
}

/// Removes the table; fine if it is not there.
pub async fn delete_masquerade(netns: Option<&Path>) -> Result<(), KernelError> {
    run_nft(
        netns,
        format!("table inet {MASQ_TABLE} {{}}\ndelete table inet {MASQ_TABLE}\n"),
    )
    .await
}

async fn run_nft(netns: Option<&Path>, script: String) -> Result<(), KernelError> {
    let spawn = || {
        tokio::process::Command::new("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
    };
    let child = match netns {
        None => spawn(),
        Some(path) => {
            let rt = tokio::runtime::Handle::current();
            // The child inherits the namespace of the thread that forks it.
            in_netns(path, move || {
                let _guard = rt.enter();
                spawn()
            })
            .await?
        }
    };
    let mut child = child.map_err(|e| {
        KernelError::Nft(format!(
            "cannot run nft ({e}); install the nftables package"
        ))
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .await
            .map_err(|e| KernelError::Nft(format!("writing the ruleset: {e}")))?;
    }
    let out = tokio::time::timeout(NFT_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| KernelError::Nft(format!("nft did not finish within {NFT_TIMEOUT:?}")))?
        .map_err(|e| KernelError::Nft(e.to_string()))?;
    if !out.status.success() {
        return Err(KernelError::Nft(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_masquerades_only_traffic_leaving_the_cluster() {
        let pods: Vec<IpNet> = vec!["10.1.0.0/16".parse().expect("cidr")];
        let cluster: Vec<IpNet> = vec![
            "10.1.0.0/16".parse().expect("cidr"),
            "10.152.183.0/24".parse().expect("cidr"),
        ];
        let r = masquerade_ruleset(&pods, &cluster);
        assert!(r.starts_with("table inet knet-network {}\ndelete table inet knet-network\n"));
        assert!(r.contains("elements = { 10.1.0.0/16, 10.152.183.0/24 }"));
    }

    #[test]
    fn overlapping_cidrs_are_merged_so_nft_accepts_them() {
        let n = |s: &str| s.parse::<IpNet>().expect("cidr");
        let r = masquerade_ruleset(
            &[n("10.1.0.0/16"), n("10.1.1.0/24")],
            &[
                n("10.1.0.0/16"),
                n("10.1.1.0/24"),
                n("10.152.183.0/24"),
                n("10.1.0.0/24"),
            ],
        );
        assert!(r.contains("elements = { 10.1.0.0/16 }"), "{r}");
        assert!(
            r.contains("elements = { 10.1.0.0/16, 10.152.183.0/24 }"),
            "{r}"
        );
        assert!(r.contains("ip saddr @pods-v4 ip daddr != @cluster-v4 counter masquerade"));
        assert!(!r.contains("ip6"), "no IPv6 rules without an IPv6 pod CIDR");
    }
}
