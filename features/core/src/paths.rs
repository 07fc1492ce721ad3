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
    /// The cgroup v2 directory the eBPF socket load balancer attaches to, or `off`; overrides
    /// what bootstrap wrote in the state dir (see [`super::SocketLbCgroup`]).
    pub const SOCKET_LB_CGROUP: &str = "KNET_SOCKET_LB_CGROUP";
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

    /// The file in which bootstrap records where the socket load balancer attaches.
    pub fn socket_lb_cgroup_file(&self) -> PathBuf {
        self.state_dir.join(SOCKET_LB_CGROUP_FILE)
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

/// File name, in the state dir, of the socket load balancer's cgroup setting.
pub const SOCKET_LB_CGROUP_FILE: &str = "socket-lb-cgroup";

/// Where the eBPF socket load balancer attaches on this node: written by `knet bootstrap`
/// (`--socket-lb-cgroup`), read by the daemon (`$KNET_SOCKET_LB_CGROUP` overrides the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketLbCgroup {
    /// Socket load balancing is off; nftables serves every Service alone.
    Off,
    /// Attach to this cgroup v2 directory (and so to every process below it).
    Cgroup(PathBuf),
}

// === impl SocketLbCgroup ===

impl SocketLbCgroup {
    /// The word that turns it off.
    pub const OFF: &'static str = "off";

    /// Parses a setting: `off` (or empty) or an absolute path.
    pub fn parse(text: &str) -> Result<SocketLbCgroup, String> {
        let t = text.trim();
        if t.is_empty() || t == Self::OFF {
            return Ok(SocketLbCgroup::Off);
        }
        let path = Path::new(t);
        if !path.is_absolute() {
            return Err(format!(
                "socket LB cgroup {t:?} is not an absolute path; give a cgroup v2 directory such as /sys/fs/cgroup, or `off`"
            ));
        }
        Ok(SocketLbCgroup::Cgroup(path.to_path_buf()))
    }

    /// The setting in force for a node: the environment variable if set, else the state dir's
    /// file; neither means off (the daemon never attaches to a cgroup it was not told about).
    pub fn configured(paths: &Paths) -> Result<SocketLbCgroup, String> {
        SocketLbCgroup::from_sources(std::env::var_os(env::SOCKET_LB_CGROUP), paths)
    }

    /// [`SocketLbCgroup::configured`] with the variable's value given.
    pub fn from_sources(
        var: Option<std::ffi::OsString>,
        paths: &Paths,
    ) -> Result<SocketLbCgroup, String> {
        if let Some(v) = var.filter(|v| !v.is_empty()) {
            return SocketLbCgroup::parse(&v.to_string_lossy());
        }
        match std::fs::read_to_string(paths.socket_lb_cgroup_file()) {
            Ok(text) => SocketLbCgroup::parse(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SocketLbCgroup::Off),
            Err(e) => Err(format!(
                "cannot read {}: {e}",
                paths.socket_lb_cgroup_file().display()
            )),
        }
    }

    /// The file form (one line).
    pub fn to_file_text(&self) -> String {
        match self {
            SocketLbCgroup::Off => format!("{}\n", Self::OFF),
            SocketLbCgroup::Cgroup(p) => format!("{}\n", p.display()),
        }
    }
}

/// File name of knet's conflist; sorts first so runtimes pick it.
pub const CNI_CONFLIST_NAME: &str = "05-knet.conflist";
/// The CNI network name in the conflist.
pub const CNI_NETWORK_NAME: &str = "knet";
/// The CNI plugin type (binary name in the CNI bin dir).
pub const CNI_PLUGIN_NAME: &str = "knet";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_lb_cgroup_parses_off_paths_and_rejects_relative_ones() {
        assert_eq!(SocketLbCgroup::parse("off\n"), Ok(SocketLbCgroup::Off));
        assert_eq!(SocketLbCgroup::parse("  "), Ok(SocketLbCgroup::Off));
        assert_eq!(
            SocketLbCgroup::parse("/sys/fs/cgroup\n"),
            Ok(SocketLbCgroup::Cgroup("/sys/fs/cgroup".into()))
        );
        let err = SocketLbCgroup::parse("sys/fs/cgroup").expect_err("relative");
        assert!(err.contains("absolute path"), "{err}");
        for s in [
            SocketLbCgroup::Off,
            SocketLbCgroup::Cgroup("/sys/fs/cgroup/unified/x".into()),
        ] {
            assert_eq!(SocketLbCgroup::parse(&s.to_file_text()), Ok(s));
        }
    }

    #[test]
    fn socket_lb_cgroup_comes_from_the_variable_then_the_file_else_off() {
        let dir = std::env::temp_dir().join(format!("knet-paths-test-{}", std::process::id()));
        let paths = Paths {
            state_dir: dir.clone(),
            ..Paths::default()
        };
        assert_eq!(
            SocketLbCgroup::from_sources(None, &paths),
            Ok(SocketLbCgroup::Off)
        );
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(paths.socket_lb_cgroup_file(), "/sys/fs/cgroup\n").expect("write");
        assert_eq!(
            SocketLbCgroup::from_sources(None, &paths),
            Ok(SocketLbCgroup::Cgroup("/sys/fs/cgroup".into()))
        );
        // The variable wins over the file.
        assert_eq!(
            SocketLbCgroup::from_sources(Some("off".into()), &paths),
            Ok(SocketLbCgroup::Off)
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
