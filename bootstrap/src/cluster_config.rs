//! The cluster config in the Kubernetes API: ConfigMap `kube-system/knet-config`, key
//! `config.yaml`. The first node creates it (from `--file` or defaults); every further node
//! adopts it. The pure decision ([`decide`]) is separate from the API calls
//! ([`ensure_cluster_config`]) so it is unit-tested without a cluster.

use std::fmt;

mod api;
mod decide;

pub use api::{ClusterApi, ensure_cluster_config, read_cluster_config};
pub use decide::{ConfigDecision, decide};

/// Namespace of the cluster config ConfigMap.
pub const CONFIGMAP_NAMESPACE: &str = "kube-system";
/// Name of the cluster config ConfigMap.
pub const CONFIGMAP_NAME: &str = "knet-config";
/// Key in the ConfigMap's data holding the YAML document.
pub const CONFIGMAP_KEY: &str = "config.yaml";

/// Where this node's cluster config came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOrigin {
    /// This node created the ConfigMap (first node).
    Created,
    /// The ConfigMap existed; this node took its config.
    Adopted {
        /// Keys `--file` set to other values than the cluster has; the cluster's values won.
        ignored: Vec<IgnoredKey>,
    },
}

/// A `--file` key whose value lost to the cluster's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredKey {
    /// Dotted key, e.g. `dns.cluster-domain`.
    pub key: String,
    /// The file's value (JSON).
    pub file: String,
    /// The cluster's value (JSON).
    pub cluster: String,
}

impl fmt::Display for ConfigOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cm = format!("ConfigMap {CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME}");
        match self {
            ConfigOrigin::Created => write!(f, "stored the cluster config in {cm}"),
            ConfigOrigin::Adopted { ignored } if ignored.is_empty() => {
                write!(f, "adopted the cluster config from {cm}")
            }
            ConfigOrigin::Adopted { ignored } => {
                let keys: Vec<String> = ignored
                    .iter()
                    .map(|k| format!("{} (file {}, cluster {})", k.key, k.file, k.cluster))
                    .collect();
                write!(
                    f,
                    "adopted the cluster config from {cm}; the cluster's values win over --file for {} (change them cluster-wide with `knet set`)",
                    keys.join(", ")
                )
            }
        }
    }
}
