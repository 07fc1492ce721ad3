//! knet's `network-policy` feature: enforces networking.k8s.io/v1 NetworkPolicy for the pods on
//! this node.
//!
//! Owns `table inet knet-network-policy` and nothing else. The pipeline is pure until the last
//! step: Kubernetes objects → [`model::Cluster`] (pods, namespaces, parsed policies) →
//! [`compile::compile`] (per local pod: the rules that admit traffic, peer sets, ipBlock ranges) →
//! [`render::render`] (one nftables script that replaces the whole table) → [`nft::apply`] (`nft
//! -f -`, one atomic transaction). The [`feature`] module runs that pipeline on every change of
//! the shared NetworkPolicy, Pod and Namespace watches (debounced) and on a periodic resync.
//!
//! It must not depend on other features. It relies on the `network` feature's routed design
//! (every pod packet, also same-node, crosses the node's forward hook) and on the service proxy
//! translating ClusterIPs before forwarding, so the forward hook sees backend pod IPs.

// Libraries log with tracing; only the binary prints.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod compile;
pub mod feature;
pub mod model;
pub mod nft;
pub mod render;

pub use feature::{NetworkPolicyFeature, build};
pub use nft::TABLE;
