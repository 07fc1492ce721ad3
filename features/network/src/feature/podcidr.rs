//! Where a node's pod CIDRs come from: `spec.podCIDRs` when kube-controller-manager allocates
//! them, otherwise knet's own allocation out of the cluster pod CIDR, claimed with a
//! compare-and-swap on one shared ConfigMap (so two nodes can never claim the same block) and
//! published on the Node as the `knet.io/pod-cidrs` annotation for the peers.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};

/// Annotation carrying knet-allocated pod CIDRs (comma-separated).
pub const ANNOTATION: &str = "knet.io/pod-cidrs";
/// The ConfigMap (in kube-system) holding every node's claim.
pub const CLAIMS: &str = "knet-pod-cidrs";
const NAMESPACE: &str = "kube-system";
/// Bounded retries of the claim on conflicts.
const CLAIM_ATTEMPTS: usize = 10;

/// A node's pod CIDRs: `spec.podCIDRs` (or `spec.podCIDR`), else knet's annotation.
pub fn node_pod_cidrs(node: &Node) -> Vec<IpNet> {
    let spec = node.spec.as_ref();
    let mut from_spec: Vec<String> = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    if from_spec.is_empty() {
        from_spec.extend(spec.and_then(|s| s.pod_cidr.clone()));
    }
    let parsed: Vec<IpNet> = from_spec.iter().filter_map(|c| c.parse().ok()).collect();
    if !parsed.is_empty() {
        return parsed;
    }
    node.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION))
        .map(|v| parse_list(v))
        .unwrap_or_default()
}

/// A node's InternalIPs.
pub fn node_internal_ips(node: &Node) -> Vec<IpAddr> {
    node.status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .map(|a| {
            a.iter()
                .filter(|a| a.type_ == "InternalIP")
                .filter_map(|a| a.address.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn parse_list(v: &str) -> Vec<IpNet> {
    v.split(',').filter_map(|c| c.trim().parse().ok()).collect()
}

/// The per-node block size knet carves: /24 for IPv4, /64 (or /120 in a small IPv6 range).
pub fn node_prefix(cluster: IpNet) -> u8 {
    match cluster {
        IpNet::V4(n) => n.prefix_len().max(24),
        IpNet::V6(n) if n.prefix_len() <= 56 => 64,
        IpNet::V6(n) => n.prefix_len().max(120),
    }
}

/// The first free block per cluster CIDR, or `None` when one family is full.
pub fn pick_free(cluster: &[IpNet], taken: &[IpNet]) -> Option<Vec<IpNet>> {
    cluster
        .iter()
        .map(|c| {
            c.subnets(node_prefix(*c)).ok()?.take(1 << 16).find(|s| {
                !taken
                    .iter()
                    .any(|t| t.contains(&s.network()) || s.contains(&t.network()))
            })
        })
        .collect()
}

/// Claims (or finds) this node's blocks and annotates the Node.
pub async fn claim(
    client: &Client,
    node_name: &str,
    cluster: &[IpNet],
    nodes: &[std::sync::Arc<Node>],
) -> Result<Vec<IpNet>, String> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let live: Vec<String> = nodes
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    for _ in 0..CLAIM_ATTEMPTS {
        let existing = cms
            .get_opt(CLAIMS)
            .await
            .map_err(|e| format!("reading ConfigMap {NAMESPACE}/{CLAIMS}: {e}"))?;
        let mut cm = existing.clone().unwrap_or_else(|| ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some(CLAIMS.into()),
                namespace: Some(NAMESPACE.into()),
                ..Default::default()
            },
            ..Default::default()
        });
        let data: &mut BTreeMap<String, String> = cm.data.get_or_insert_with(BTreeMap::new);
        if let Some(mine) = data
            .get(node_name)
            .map(|v| parse_list(v))
            .filter(|v| !v.is_empty())
        {
            annotate(client, node_name, &mine).await?;
            return Ok(mine);
        }
        // Claims of nodes that no longer exist are free again.
        data.retain(|k, _| live.contains(k));
        let mut taken: Vec<IpNet> = data.values().flat_map(|v| parse_list(v)).collect();
        taken.extend(nodes.iter().flat_map(|n| node_pod_cidrs(n)));
        let Some(mine) = pick_free(cluster, &taken) else {
            return Err("the cluster pod CIDR has no free block left for this node".into());
        };
        data.insert(node_name.to_owned(), join(&mine));
        let written = match existing {
            None => cms.create(&PostParams::default(), &cm).await,
            Some(_) => cms.replace(CLAIMS, &PostParams::default(), &cm).await,
        };
        match written {
            Ok(_) => {
                annotate(client, node_name, &mine).await?;
                tracing::info!(cidrs = %join(&mine), "claimed this node's pod CIDRs");
                return Ok(mine);
            }
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(format!("writing ConfigMap {NAMESPACE}/{CLAIMS}: {e}")),
        }
    }
    Err("claiming a pod CIDR kept conflicting with other nodes; will retry".into())
}

async fn annotate(client: &Client, node_name: &str, cidrs: &[IpNet]) -> Result<(), String> {
    let nodes: Api<Node> = Api::all(client.clone());
    let patch = serde_json::json!({"metadata": {"annotations": {ANNOTATION: join(cidrs)}}});
    nodes
        .patch(node_name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(drop)
        .map_err(|e| format!("annotating Node {node_name}: {e}"))
}

fn join(cidrs: &[IpNet]) -> String {
    cidrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("cidr")
    }

    #[test]
    fn picks_the_first_free_block_per_family() {
        let cluster = [net("10.1.0.0/16"), net("fd01::/108")];
        let got = pick_free(&cluster, &[net("10.1.0.0/24"), net("10.1.2.0/24")]).expect("free");
        assert_eq!(got, vec![net("10.1.1.0/24"), net("fd01::/120")]);
        let tiny = [net("10.1.0.0/24")];
        assert_eq!(pick_free(&tiny, &[net("10.1.0.0/24")]), None);
    }

    #[test]
    fn spec_wins_over_the_annotation() {
        let mut node = Node::default();
        node.metadata.annotations =
            Some([(ANNOTATION.to_owned(), "10.1.9.0/24".to_owned())].into());
        assert_eq!(node_pod_cidrs(&node), vec![net("10.1.9.0/24")]);
        node.spec = Some(k8s_openapi::api::core::v1::NodeSpec {
            pod_cidrs: Some(vec!["10.1.3.0/24".into(), "fd01::300/120".into()]),
            ..Default::default()
        });
        assert_eq!(
            node_pod_cidrs(&node),
            vec![net("10.1.3.0/24"), net("fd01::300/120")]
        );
    }
}
