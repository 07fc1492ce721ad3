//! Services without kube-proxy, part of the `network` feature: every Service type for pods,
//! node processes and outside clients, programmed into `table inet knet-services`.
//!
//! [`model`] computes the desired service table from Services and EndpointSlices (pure, as
//! kube-proxy does), [`render`] turns it into nftables chains, sets and verdict-map elements
//! ([`rule`]: typed rules that print as `nft` text and encode as netlink), [`desired`] keeps
//! that per Service and recomputes only what changed, [`apply`] holds the diff and the full
//! `nft -f -` transaction, [`nfnl`] sends diffs as nf_tables netlink batches, and [`sync`] runs
//! it all in a debounced, level-triggered loop started by the network feature ([`metrics`]).
//! Stale UDP conntrack entries are flushed ([`conntrack`]) and healthCheckNodePorts served
//! ([`health`]). Disabling the network feature calls [`cleanup`], which removes all of it.

pub mod apply;
pub mod base;
pub mod conntrack;
pub mod desired;
pub mod exec;
pub mod fnv;
pub mod health;
pub mod metrics;
pub mod model;
pub mod nfnl;
pub mod render;
pub mod route;
pub mod rule;
pub mod socket_lb;
pub mod status;
pub mod sync;

use std::path::{Path, PathBuf};

use knet_core::FeatureContext;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use status::StatusLine;

use crate::kernel::{KernelError, Netlink};

/// A services operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServicesError {
    /// `nft` rejected a transaction or could not run.
    #[error("nft: {0}")]
    Nft(String),
    /// The kernel rejected an nf_tables netlink batch, or the socket failed.
    #[error("nf_tables netlink: {0}")]
    Netlink(String),
    /// A helper process could not run.
    #[error("{0}")]
    Exec(String),
    /// Loading, attaching or updating the socket load balancer failed.
    #[error("socket load balancer: {0}")]
    Bpf(String),
    /// A kernel operation failed.
    #[error(transparent)]
    Kernel(#[from] KernelError),
}

/// Starts the services sync loop in the background; it stops with `shutdown`.
pub fn spawn(
    ctx: FeatureContext,
    netns: Option<PathBuf>,
    line: StatusLine,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(sync::run(ctx, netns, line, shutdown))
}

/// Removes everything the services dataplane installed: the nft table and the service CIDR
/// routes.
pub async fn cleanup(netns: Option<&Path>) -> Result<(), ServicesError> {
    exec::nft_apply(netns, &apply::delete_script()).await?;
    let nl = Netlink::open(netns).await?;
    route::remove(&nl).await
}

/// Whether the kernel has SCTP (module loaded or built in).
pub fn sctp_supported() -> bool {
    Path::new("/proc/sys/net/sctp").exists()
}
