//! Routes for pod CIDRs outside the nodes' own CNI: the underlay router
//! always knows every node's pod CIDR (as a cloud VPC route table would), and
//! in reference-CNI mode each node routes other nodes' pod CIDRs directly
//! (same segment) or through the router. With knet's CNI, node routing is
//! knet's job and the lab adds nothing in the nodes.

use anyhow::Result;

use super::Lab;
use crate::config::CniMode;
use crate::netns;

/// Brings all pod-CIDR routes up to date (idempotent: `ip route replace`).
pub async fn sync(lab: &Lab) -> Result<()> {
    let nodes = lab.nodes();
    for n in &nodes {
        let Some(cidr) = &n.pod_cidr else { continue };
        netns::ip(
            &lab.underlay,
            &["route", "replace", cidr, "via", &n.ipv4.to_string()],
        )
        .await?;
    }
    if lab.opts.cni != CniMode::Reference {
        return Ok(());
    }
    for n in &nodes {
        for other in nodes.iter().filter(|o| o.name != n.name) {
            let Some(cidr) = &other.pod_cidr else {
                continue;
            };
            let via = if other.segment == n.segment {
                other.ipv4.to_string()
            } else {
                n.segment.gateway_v4().to_string()
            };
            netns::ip(&n.netns, &["route", "replace", cidr, "via", &via]).await?;
        }
    }
    Ok(())
}
