//! The cluster configuration: one typed document, the same defaults wherever it is read.
//!
//! It is written by `knet bootstrap` (from `--file` or defaults), stored in the Kubernetes API so
//! every node agrees, cached in each node's store so a node restarts with the last known config,
//! and changed with `knet enable/disable/set`. Omitting a key always means its default, in a file
//! and on the command line alike.

mod cidr;
mod error;
mod keys;
mod node_port;
mod types;
mod validate;

pub use cidr::{CidrList, PoolRange};
pub use error::ConfigError;
pub use keys::{get_key, set_key, valid_keys};
pub use node_port::NodePortAddress;
pub use types::{
    ClusterConfig, DnsConfig, GatewayConfig, IngressConfig, LoadBalancerConfig, Mtu, Nameserver,
    NetworkConfig, NetworkMode, NetworkPolicyConfig,
};
pub use validate::check_update;

/// Namespace of the ConfigMap that holds the cluster config.
pub const CONFIGMAP_NAMESPACE: &str = "kube-system";
/// Name of the ConfigMap that holds the cluster config.
pub const CONFIGMAP_NAME: &str = "knet-config";
/// Key of the YAML document inside the ConfigMap.
pub const CONFIGMAP_KEY: &str = "config.yaml";

#[cfg(test)]
mod tests;
