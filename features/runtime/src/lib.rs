//! The daemon's feature runtime: the composition root of `knet daemon`, minus the choice of
//! feature modules (the binary passes those in, so this crate never imports a feature).
//!
//! Owns: loading the cluster config from the Kubernetes API (falling back to the copy cached in
//! the node store when the API server is unreachable) and watching it for changes
//! ([`config_source`]); one supervisor per feature that starts it in dependency order when
//! enabled, restarts it with backoff when it fails, and stops and cleans it up when disabled
//! ([`supervisor`]); and the local API router ([`router`]).
//!
//! Invariant: a feature's failure never takes the daemon or another feature down; stopping the
//! daemon leaves the dataplane in place (only *disabling* a feature removes what it installed).

// Libraries log with tracing; only the binary prints.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod config_source;
mod daemon;
pub use daemon::kube_client;
mod error;
pub mod router;
pub mod supervisor;

pub use daemon::{DaemonOptions, run};
pub use error::RuntimeError;
