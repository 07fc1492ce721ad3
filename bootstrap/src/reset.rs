//! `knet reset`: undo what bootstrap did on this node. Used by the snap remove hook and tests.
//!
//! Three steps, each usable alone and each safe to repeat:
//! 1. [`stop_daemon`]: this node's systemd unit (one whose `ExecStart` names this state dir), the
//!    snap service's drop-in, or the detached daemon named by the pid file (only if
//!    `/proc/PID/cmdline` is a knet daemon). Stopping the daemon leaves the dataplane in place.
//! 2. [`cleanup_features`]: every feature module's `cleanup`, in-process, with the daemon
//!    stopped: what the features installed (links, routes, nftables tables, addresses).
//! 3. [`remove_node_files`]: the conflist, the plugin binary, the marker, the pid file, the socket
//!    and the store. The daemon's log is kept for post-mortems.
//!
//! [`reset`] is steps 1 and 3. The cluster-wide ConfigMap is left alone (other nodes use it).

mod features;

use std::fmt;
use std::path::{Path, PathBuf};

use knet_core::FeatureId;
use knet_core::paths::Paths;

pub use features::{CleanupOptions, cleanup_features};

use crate::daemon;
use crate::{BootstrapError, fsutil};

/// One thing reset did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResetStep {
    /// The daemon's systemd service was disabled and stopped, and what bootstrap wrote for it
    /// removed.
    UnitRemoved {
        /// The unit file, or the snap service's drop-in.
        path: PathBuf,
    },
    /// The detached daemon was stopped.
    DaemonStopped {
        /// Its pid.
        pid: u32,
    },
    /// A feature's cleanup ran to completion.
    FeatureCleaned {
        /// Which feature.
        feature: FeatureId,
    },
    /// A feature's cleanup failed (reset goes on with the others).
    FeatureCleanupFailed {
        /// Which feature.
        feature: FeatureId,
        /// Why, in words.
        error: String,
    },
    /// The Kubernetes API cannot be used: the features' cleanups only undo node-local state.
    ApiUnavailable {
        /// Why.
        reason: String,
    },
    /// A file or directory was removed.
    Removed {
        /// What.
        path: PathBuf,
    },
    /// Nothing was there.
    Absent {
        /// What.
        path: PathBuf,
    },
}

impl fmt::Display for ResetStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResetStep::UnitRemoved { path } => {
                write!(f, "stopped the systemd service; removed {}", path.display())
            }
            ResetStep::DaemonStopped { pid } => write!(f, "stopped the daemon (pid {pid})"),
            ResetStep::FeatureCleaned { feature } => {
                write!(f, "{feature}: removed what it installed on this node")
            }
            ResetStep::FeatureCleanupFailed { feature, error } => {
                write!(f, "{feature}: cleanup failed: {error}")
            }
            ResetStep::ApiUnavailable { reason } => write!(
                f,
                "the Kubernetes API is not usable ({reason}); cleaning up node-local state only"
            ),
            ResetStep::Removed { path } => write!(f, "removed {}", path.display()),
            ResetStep::Absent { path } => write!(f, "{} was not there", path.display()),
        }
    }
}

/// Stops the daemon and removes what bootstrap installed ([`stop_daemon`], then
/// [`remove_node_files`]); features' kernel state is [`cleanup_features`]'s job. Safe to run
/// repeatedly.
pub async fn reset(
    paths: &Paths,
    progress: &mut dyn FnMut(ResetStep),
) -> Result<(), BootstrapError> {
    stop_daemon(paths, progress).await?;
    remove_node_files(paths, progress)
}

/// Stops this node's daemon: the systemd unit (only if it is this node's) or the snap service's
/// drop-in, and the detached daemon named by the pid file (only if it is a knet daemon:
/// SIGTERM, 10 s, then SIGKILL). Returns once it is gone.
pub async fn stop_daemon(
    paths: &Paths,
    progress: &mut dyn FnMut(ResetStep),
) -> Result<(), BootstrapError> {
    if let Some(path) = daemon::stop_systemd_unit(paths)? {
        progress(ResetStep::UnitRemoved { path });
    }
    let paths2 = paths.clone();
    let stopped = tokio::task::spawn_blocking(move || daemon::stop_detached(&paths2))
        .await
        .map_err(|e| BootstrapError::DaemonStart {
            reason: format!("stopping the daemon panicked: {e}"),
        })??;
    if let Some(pid) = stopped {
        progress(ResetStep::DaemonStopped { pid });
    }
    Ok(())
}

/// Removes the conflist, the plugin binary, the marker, the pid file, the socket, the store and
/// any store a recovery moved aside (`store.broken-*`). The log is kept.
pub fn remove_node_files(
    paths: &Paths,
    progress: &mut dyn FnMut(ResetStep),
) -> Result<(), BootstrapError> {
    for path in [
        paths.cni_conflist(),
        paths.cni_plugin(),
        paths.bootstrap_marker(),
        paths.socket_lb_cgroup_file(),
    ] {
        let step = if fsutil::remove_if_exists(&path)? {
            ResetStep::Removed { path }
        } else {
            ResetStep::Absent { path }
        };
        progress(step);
    }
    // Runtime files: reported only when something was there.
    for path in [paths.pid_file(), paths.socket()] {
        if fsutil::remove_if_exists(&path)? {
            progress(ResetStep::Removed { path });
        }
    }
    let store = paths.store_dir();
    if remove_dir(&store)? {
        progress(ResetStep::Removed { path: store });
    } else {
        progress(ResetStep::Absent { path: store });
    }
    for broken in broken_stores(paths)? {
        if remove_dir(&broken)? {
            progress(ResetStep::Removed { path: broken });
        }
    }
    Ok(())
}

fn remove_dir(path: &Path) -> Result<bool, BootstrapError> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(BootstrapError::io("remove", path, e)),
    }
}

/// Stores a recovery moved aside: `<state-dir>/store.broken-<unix time>`.
fn broken_stores(paths: &Paths) -> Result<Vec<PathBuf>, BootstrapError> {
    let prefix = format!(
        "{}.broken-",
        paths
            .store_dir()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    let entries = match std::fs::read_dir(&paths.state_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BootstrapError::io("read directory", &paths.state_dir, e)),
    };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    found.sort();
    Ok(found)
}
