//! Where knet keeps things on a node, and the environment variables that move them.
//!
//! Every path is a flag with an environment variable, so several knet nodes can run on one
//! machine (one per network namespace), as the lab does.

use std::path::{Path, PathBuf};

/// Environment variable names, each declared once.
pub mod env {
    /// State dir (store, bootstrap marker). Default `/var/lib/knet`.
    pub const STATE_DIR: &str = "KNET_STATE_DIR";
    /// Run dir (API socket, pid file). Default `/run/knet`.
    pub const RUN_DIR: &str = "KNET_RUN_DIR";
    /// CNI network config dir. Default `/etc/cni/net.d`.
    pub const CNI_CONF_DIR: &str = "KNET_CNI_CONF_DIR";
    /// CNI plugin binary dir. Default `/opt/cni/bin`.
    pub const CNI_BIN_DIR: &str = "KNET_CNI_BIN_DIR";
    /// Kubeconfig of the node. Falls back to `KUBECONFIG`, then in-cluster config.
    pub const KUBECONFIG: &str = "KNET_KUBECONFIG";
    /// This node's name. Default: the hostname.
    pub const NODE_NAME: &str = "KNET_NODE_NAME";
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info,knet_network=debug`.
    pub const LOG: &str = "KNET_LOG";
    /// Log format: `plain` (default) or `json`.
    pub const LOG_FORMAT: &str = "KNET_LOG_FORMAT";
}

/// Default state dir.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/knet";
/// Default run dir.
pub const DEFAULT_RUN_DIR: &str = "/run/knet";
/// Default CNI config dir.
pub const DEFAULT_CNI_CONF_DIR: &str = "/etc/cni/net.d";
/// Default CNI binary dir.
pub const DEFAULT_CNI_BIN_DIR: &str = "/opt/cni/bin";

/// The directories of one knet node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// Durable state.
    pub state_dir: PathBuf,
    /// Runtime files (socket, pid file); cleared on reboot.
    pub run_dir: PathBuf,
    /// Where the CNI conflist goes.
    pub cni_conf_dir: PathBuf,
    /// Where the CNI plugin binary goes.
    pub cni_bin_dir: PathBuf,
}

// === impl Paths ===

impl Paths {
    /// The daemon's local API socket.
    pub fn socket(&self) -> PathBuf {
        self.run_dir.join("knet.sock")
    }

    /// The daemon's pid file (detached mode).
    pub fn pid_file(&self) -> PathBuf {
        self.run_dir.join("knet-daemon.pid")
    }

    /// The daemon's log file (detached mode).
    pub fn log_file(&self) -> PathBuf {
        self.state_dir.join("knet-daemon.log")
    }

    /// The store's directory.
    pub fn store_dir(&self) -> PathBuf {
        self.state_dir.join("store")
    }

    /// The file whose presence says the node was bootstrapped.
    pub fn bootstrap_marker(&self) -> PathBuf {
        self.state_dir.join("bootstrapped.yaml")
    }

    /// knet's CNI conflist.
    pub fn cni_conflist(&self) -> PathBuf {
        self.cni_conf_dir.join(CNI_CONFLIST_NAME)
    }

    /// The installed CNI plugin binary.
    pub fn cni_plugin(&self) -> PathBuf {
        self.cni_bin_dir.join(CNI_PLUGIN_NAME)
    }

    /// Whether `p` is this node's state dir (for messages).
    pub fn is_state_dir(&self, p: &Path) -> bool {
        p == self.state_dir
    }
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            state_dir: DEFAULT_STATE_DIR.into(),
            run_dir: DEFAULT_RUN_DIR.into(),
            cni_conf_dir: DEFAULT_CNI_CONF_DIR.into(),
            cni_bin_dir: DEFAULT_CNI_BIN_DIR.into(),
        }
    }
}

/// File name of knet's conflist; sorts first so runtimes pick it.
pub const CNI_CONFLIST_NAME: &str = "05-knet.conflist";
/// The CNI network name in the conflist.
pub const CNI_NETWORK_NAME: &str = "knet";
/// The CNI plugin type (binary name in the CNI bin dir).
pub const CNI_PLUGIN_NAME: &str = "knet";
