//! What `knet bootstrap` does to a node, and what `knet reset` undoes.
//!
//! Owns the node-preparation sequence: [`preflight`] (root, kernel features tested for real in a
//! throwaway network namespace, a foreign CNI config, the VXLAN port, `nft`), storing or adopting
//! the cluster config in the Kubernetes API (ConfigMap `kube-system/knet-config`), installing the
//! CNI conflist and plugin binary atomically, the sysctls the features need, initialising the
//! store, starting the daemon (systemd unit, or a documented detached mode), waiting until the
//! enabled features are ready, and the bootstrap marker that makes a second run a no-op.
//! [`reset`] removes what bootstrap installed; `knet reset` runs [`stop_daemon`], then every
//! feature's cleanup ([`cleanup_features`]), then [`reset`] (the snap remove hook calls it).
//!
//! The order differs from the order in which a reader might list the steps in one place: the
//! Kubernetes API is contacted right after preflight and *before* anything is written to the
//! node, so an unreachable API server leaves the node untouched.
//!
//! Architecture invariants: this crate never changes the host's interfaces, routes or nftables
//! ruleset (kernel probes run in a network namespace created for the probe and discarded with
//! it); sysctls are written only in the caller's current network namespace; every wait is
//! bounded; only processes whose `/proc/PID/cmdline` is a knet daemon are ever signalled. It
//! prints nothing: progress goes to the caller as [`Step`]s.

// Libraries log with tracing; only the binary prints.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod cluster_config;
mod command;
mod daemon;
mod error;
mod flow;
mod fsutil;
mod install;
pub mod netns;
mod options;
pub mod preflight;
mod reset;
mod sysctl;
mod wait;

pub use cluster_config::{
    CONFIGMAP_KEY, CONFIGMAP_NAME, CONFIGMAP_NAMESPACE, ClusterApi, ConfigDecision, ConfigOrigin,
    IgnoredKey, decide, ensure_cluster_config, read_cluster_config,
};
pub use daemon::{
    DaemonState, SYSTEMD_UNIT_NAME, daemon_args, detached_daemon_pid, is_knet_daemon,
    parse_dropin_environment, snap_dropin, snap_dropin_environment, start_daemon, systemd_unit,
};
pub use error::BootstrapError;
pub use flow::{STORE_CONFIG_KEY, STORE_CONFIG_TREE, bootstrap, bootstrap_with};
pub use install::{Changed, install_plugin, write_conflist};
pub use options::{BootstrapOptions, DaemonStart, Outcome, SocketLbChoice, Step};
pub use preflight::{Check, CheckId, Report, Severity, preflight};
pub use reset::{
    CleanupOptions, ResetStep, cleanup_features, remove_node_files, reset, stop_daemon,
};
pub use sysctl::{SYSCTLS, SysctlChange, SysctlOutcome, SysctlWant, apply_sysctls};
pub use wait::wait_ready;
