//! `knet reset`: undo what bootstrap did on this node. Used by the snap remove hook and tests.
//!
//! Stops the daemon (this node's systemd unit, or the detached daemon named by the pid file,
//! only if `/proc/PID/cmdline` is a knet daemon), then removes the conflist, the plugin binary,
//! the marker and the store. The daemon's log is kept for post-mortems. Links, routes and
//! nftables rules belong to the features, which remove their own on shutdown or in their
//! cleanup; the cluster-wide ConfigMap is left alone (other nodes use it).

use std::fmt;
use std::path::PathBuf;

use knet_core::paths::Paths;

use crate::daemon::{self, UNIT_PATH};
use crate::{BootstrapError, fsutil};

/// One thing reset did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResetStep {
    /// The systemd unit was disabled, stopped and removed.
    UnitRemoved {
        /// The unit file.
        path: PathBuf,
    },
    /// The detached daemon was stopped.
    DaemonStopped {
        /// Its pid.
        pid: u32,
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
                write!(f, "stopped and removed systemd unit {}", path.display())
            }
            ResetStep::DaemonStopped { pid } => write!(f, "stopped the daemon (pid {pid})"),
            ResetStep::Removed { path } => write!(f, "removed {}", path.display()),
            ResetStep::Absent { path } => write!(f, "{} was not there", path.display()),
        }
    }
}

/// Stops the daemon and removes what bootstrap installed. Safe to run repeatedly.
pub async fn reset(
    paths: &Paths,
    progress: &mut dyn FnMut(ResetStep),
) -> Result<(), BootstrapError> {
    if daemon::stop_systemd_unit(paths)? {
        progress(ResetStep::UnitRemoved {
            path: UNIT_PATH.into(),
        });
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
    for path in [
        paths.cni_conflist(),
        paths.cni_plugin(),
        paths.bootstrap_marker(),
    ] {
        let step = if fsutil::remove_if_exists(&path)? {
            ResetStep::Removed { path }
        } else {
            ResetStep::Absent { path }
        };
        progress(step);
    }
    let store = paths.store_dir();
    match std::fs::remove_dir_all(&store) {
        Ok(()) => progress(ResetStep::Removed { path: store }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            progress(ResetStep::Absent { path: store });
        }
        Err(e) => return Err(BootstrapError::io("remove", store, e)),
    }
    Ok(())
}
