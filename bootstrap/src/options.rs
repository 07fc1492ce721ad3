//! What the caller asks for ([`BootstrapOptions`]), what it is told along the way ([`Step`]) and
//! what it gets back ([`Outcome`]).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use knet_core::paths::Paths;

use crate::cluster_config::ConfigOrigin;
use crate::daemon::DaemonState;
use crate::install::Changed;
use crate::preflight::Report;
use crate::sysctl::{SysctlChange, SysctlOutcome};

/// Everything `knet bootstrap` needs to know.
#[derive(Debug, Clone)]
pub struct BootstrapOptions {
    /// The node's directories.
    pub paths: Paths,
    /// This node's name (passed on to the daemon).
    pub node_name: String,
    /// The node's kubeconfig; `None` means `KUBECONFIG`, `~/.kube/config`, then in-cluster.
    pub kubeconfig: Option<PathBuf>,
    /// The text of `--file` (a cluster config YAML document), if given.
    pub config_file: Option<String>,
    /// The knet binary to install as the CNI plugin and to run as the daemon.
    pub knet_binary: PathBuf,
    /// How long to wait for the enabled features to become ready; zero skips the wait.
    pub ready_timeout: Duration,
    /// How to start the daemon.
    pub start_daemon: DaemonStart,
    /// Where the eBPF socket load balancer attaches (written to the state dir for the daemon).
    pub socket_lb: SocketLbChoice,
}

/// Where the eBPF socket load balancer attaches on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketLbChoice {
    /// The root of the cgroup v2 hierarchy, so every pod and host process is balanced at the
    /// socket (what `knet bootstrap` does by default); off when there is no cgroup v2 mount.
    Auto,
    /// Off: nftables serves every Service alone.
    Off,
    /// This cgroup v2 directory only.
    Cgroup(PathBuf),
}

/// How bootstrap starts the node daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaemonStart {
    /// [`DaemonStart::Systemd`] when systemd runs (`/run/systemd/system` exists), else
    /// [`DaemonStart::Detached`].
    Auto,
    /// Write `/etc/systemd/system/knet.service` and `systemctl enable --now knet`.
    Systemd,
    /// Spawn `knet daemon` in a new session, logging to the state dir's `knet-daemon.log`, its
    /// pid in the run dir's `knet-daemon.pid`.
    Detached,
    /// Do not start anything: the caller runs the daemon (the lab, a snap service).
    None,
}

/// What bootstrap did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// This run bootstrapped the node.
    Bootstrapped {
        /// Whether the cluster config was created by this node or adopted from the cluster.
        config: ConfigOrigin,
    },
    /// The node had been bootstrapped before; only the daemon was checked.
    AlreadyBootstrapped,
}

/// One thing bootstrap did or saw, reported as it happens so the CLI can print it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Step {
    /// The marker exists: nothing to do but make sure the daemon runs.
    AlreadyBootstrapped {
        /// The marker file.
        marker: PathBuf,
        /// Whether `--file` was given (and so ignored).
        file_ignored: bool,
    },
    /// Preflight passed (warnings included).
    Preflight(Report),
    /// The cluster config was created or adopted.
    ClusterConfig(ConfigOrigin),
    /// The CNI conflist is in place.
    CniConfig {
        /// The conflist path.
        path: PathBuf,
        /// Whether it was written.
        changed: Changed,
    },
    /// The CNI plugin binary is in place.
    CniPlugin {
        /// The plugin path.
        path: PathBuf,
        /// Whether it was copied.
        changed: Changed,
    },
    /// One sysctl.
    Sysctl(SysctlChange),
    /// The store is initialised.
    Store {
        /// Its directory.
        path: PathBuf,
    },
    /// Where socket load balancing attaches (`None`: off), and why when auto found nothing.
    SocketLb {
        /// The cgroup, if any.
        cgroup: Option<PathBuf>,
        /// Why it is off although auto was asked for.
        note: Option<String>,
    },
    /// The daemon's state after the start step.
    Daemon(DaemonState),
    /// Still waiting for these features (name, summary), reported when the set changes.
    Waiting {
        /// Features not ready yet, with their `knet status` summary.
        pending: Vec<(String, String)>,
    },
    /// Every enabled feature is ready.
    Ready,
    /// The readiness wait was skipped (`ready_timeout` is zero).
    ReadinessSkipped,
    /// The marker was written: the node is bootstrapped.
    Marker {
        /// The marker file.
        path: PathBuf,
    },
}

// === impl BootstrapOptions ===

impl BootstrapOptions {
    /// Options with defaults: the running binary, a 5-minute readiness wait, automatic daemon
    /// start, the default kubeconfig, no `--file`, and socket load balancing off (library
    /// callers choose a cgroup explicitly; the CLI defaults to [`SocketLbChoice::Auto`]).
    pub fn new(paths: Paths, node_name: impl Into<String>) -> BootstrapOptions {
        BootstrapOptions {
            paths,
            node_name: node_name.into(),
            kubeconfig: None,
            config_file: None,
            knet_binary: std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into()),
            ready_timeout: Duration::from_secs(300),
            start_daemon: DaemonStart::Auto,
            socket_lb: SocketLbChoice::Off,
        }
    }
}

// === impl DaemonStart ===

impl DaemonStart {
    /// Resolves [`DaemonStart::Auto`] by looking for a running systemd.
    pub fn resolve(self) -> DaemonStart {
        match self {
            DaemonStart::Auto if crate::daemon::systemd_running() => DaemonStart::Systemd,
            DaemonStart::Auto => DaemonStart::Detached,
            other => other,
        }
    }
}

// === impl Step ===

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::AlreadyBootstrapped {
                marker,
                file_ignored,
            } => {
                write!(
                    f,
                    "node is already bootstrapped ({} exists); checking the daemon",
                    marker.display()
                )?;
                if *file_ignored {
                    f.write_str(" (--file ignored: change the cluster config with `knet set`)")?;
                }
                Ok(())
            }
            Step::Preflight(report) => write!(f, "{report}"),
            Step::ClusterConfig(origin) => write!(f, "{origin}"),
            Step::CniConfig { path, changed } => {
                write!(f, "CNI config {}: {changed}", path.display())
            }
            Step::CniPlugin { path, changed } => {
                write!(f, "CNI plugin {}: {changed}", path.display())
            }
            Step::Sysctl(c) => match &c.outcome {
                SysctlOutcome::Set { previous } => {
                    write!(f, "sysctl {}={} (was {previous})", c.key, c.value)
                }
                SysctlOutcome::AlreadySet => write!(f, "sysctl {}={} (already)", c.key, c.value),
                SysctlOutcome::Absent => {
                    write!(f, "sysctl {} not present in this kernel; skipped", c.key)
                }
            },
            Step::Store { path } => write!(f, "store initialised at {}", path.display()),
            Step::SocketLb {
                cgroup: Some(cg), ..
            } => write!(
                f,
                "socket load balancing: cgroup {} (ClusterIP connections of every process below it go straight to a backend)",
                cg.display()
            ),
            Step::SocketLb { cgroup: None, note } => {
                f.write_str("socket load balancing: off (nftables serves every Service)")?;
                match note {
                    Some(n) => write!(f, "; {n}"),
                    None => Ok(()),
                }
            }
            Step::Daemon(state) => write!(f, "{state}"),
            Step::Waiting { pending } => {
                let list: Vec<String> = pending
                    .iter()
                    .map(|(name, summary)| format!("{name} ({summary})"))
                    .collect();
                write!(f, "waiting for {}", list.join(", "))
            }
            Step::Ready => f.write_str("all enabled features are ready"),
            Step::ReadinessSkipped => f.write_str("not waiting for readiness (timeout 0)"),
            Step::Marker { path } => write!(f, "node bootstrapped (marker {})", path.display()),
        }
    }
}
