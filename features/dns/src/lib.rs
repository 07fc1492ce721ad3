//! knet's `dns` feature: cluster DNS served in-process on every node, with no DNS pods.
//!
//! Owns the cluster zone's answer logic ([`answer`]), the in-memory index of Services,
//! EndpointSlices, Namespaces and Pods it answers from ([`index`]), the hickory-server based
//! server that answers the zone and forwards everything else to upstream resolvers with a cache,
//! health checks and loop detection, the listening addresses on the node (the cluster DNS Service
//! IP and the node-local address, added to `lo`), the `inet knet-dns` nftables table that exempts
//! their port 53 from conntrack ([`notrack`]), and the `kube-system/knet-dns` Service that
//! reserves the Service IP.
//!
//! It must not touch other features' kernel objects, and never imports another feature.

// Libraries log with tracing; only the binary prints.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod address;
pub mod answer;
mod feature;
#[cfg(any(test, feature = "test-util"))]
pub mod fixture;
pub mod forward;
pub mod index;
pub mod metrics;
pub mod notrack;
pub mod server;

pub use feature::{DNS_PORT, DnsFeature, NODE_LOCAL_IP, build, service};
pub use metrics::render as metrics;

use std::net::SocketAddr;

/// Errors of the dns feature.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration cannot be used.
    #[error("invalid dns config: {0}")]
    Config(String),
    /// A listening socket could not be set up.
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, String),
}
