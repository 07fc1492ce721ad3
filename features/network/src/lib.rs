//! knet's `network` feature: every pod gets an address and reaches every other pod without NAT.
//!
//! Owns the CNI plugin (the `knet` binary in CNI mode, [`cni_main`]), the daemon-side CNI handler
//! with durable IPAM in the node store, the routed-veth pod wiring, cross-node routes (native or
//! VXLAN), and source NAT for traffic leaving the cluster (`table inet knet-network`). It must
//! not depend on other features, and it never touches nftables tables, links or routes it did not
//! create.

// Libraries log with tracing; only the binary prints.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod cni;
mod feature;
pub mod handler;
pub mod ipam;
pub mod kernel;
pub mod peers;
pub mod services;
pub mod wire;

pub use cni::cni_main;
pub use feature::{
    ANNOTATION, CLAIMS, NetworkFeature, build, node_internal_ips, node_pod_cidrs, pick_free,
};
