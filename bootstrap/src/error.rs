//! Why bootstrap or reset stopped. Every message says what to do about it.

use std::path::PathBuf;
use std::time::Duration;

use knet_core::config::ConfigError;

use crate::preflight::Report;

/// Bootstrap or reset failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootstrapError {
    /// One or more preflight checks failed; the message lists one line per failed check.
    #[error("preflight failed:\n{}", .0.error_lines())]
    Preflight(Report),
    /// The `--file` document is not a valid cluster config.
    #[error("{0} (in the file passed to --file)")]
    Config(#[source] ConfigError),
    /// The kubeconfig could not be read.
    #[error("cannot use kubeconfig {path}: {reason}; pass a valid one with --kubeconfig")]
    Kubeconfig {
        /// The kubeconfig path (or how it was looked up).
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// The API server did not answer.
    #[error(
        "cannot reach the Kubernetes API server at {server}: {reason}; check that it is up and that --kubeconfig points at it"
    )]
    ApiUnreachable {
        /// The server URL.
        server: String,
        /// What went wrong.
        reason: String,
    },
    /// The API server answered with an error.
    #[error("the Kubernetes API server at {server} refused {action}: {reason}")]
    Api {
        /// The server URL.
        server: String,
        /// What we tried, e.g. `reading ConfigMap kube-system/knet-config`.
        action: String,
        /// The server's message.
        reason: String,
    },
    /// The cluster's stored config is not a valid document.
    #[error(
        "ConfigMap kube-system/knet-config on {server} holds an invalid config ({source}); fix it with kubectl edit or `knet set` on a bootstrapped node"
    )]
    ClusterConfigInvalid {
        /// The server URL.
        server: String,
        /// Why it is invalid.
        #[source]
        source: ConfigError,
    },
    /// This node's `--file` contradicts the cluster's config on a key that cannot change.
    #[error(
        "the cluster's {key} is {cluster} but --file sets {file}; {key} cannot change after the first node bootstrapped: remove {key} from the file (or set it to {cluster}) to join this cluster"
    )]
    ConfigConflict {
        /// The immutable key.
        key: String,
        /// The cluster's value.
        cluster: String,
        /// The file's value.
        file: String,
    },
    /// A file operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What we were doing, e.g. `write`.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A sysctl could not be set.
    #[error("cannot set sysctl {key}={value}: {reason}")]
    Sysctl {
        /// The key, dotted.
        key: String,
        /// The value we wanted.
        value: String,
        /// Why.
        reason: String,
    },
    /// The store could not be opened.
    #[error("cannot initialise the store: {0}")]
    Store(#[from] knet_store::StoreError),
    /// An external command failed.
    #[error("`{command}` failed: {reason}")]
    Command {
        /// The command line.
        command: String,
        /// Its stderr, exit status, or why it could not run.
        reason: String,
    },
    /// The daemon could not be started or died right after starting.
    #[error("the knet daemon did not start: {reason}")]
    DaemonStart {
        /// What happened (with a pointer to the log).
        reason: String,
    },
    /// The daemon never answered on its socket.
    #[error("the knet daemon did not answer on {socket} within {timeout:?}; {hint}")]
    DaemonNotAnswering {
        /// The socket path.
        socket: String,
        /// How long we waited.
        timeout: Duration,
        /// Where to look (log file or journal).
        hint: String,
    },
    /// Reset found a daemon still serving the node's socket (a unit of another name, or one
    /// started by hand): cleaning up under it would race with it putting things back.
    #[error(
        "a knet daemon still answers on {socket}; stop it (systemctl stop, or kill the `knet daemon` process) and run knet reset again"
    )]
    DaemonStillRunning {
        /// The socket path.
        socket: String,
    },
    /// Some features' cleanups failed; reset went on with everything else.
    #[error("cleanup failed for {}; run knet reset again, or remove the leftovers by hand (see docs/bootstrap.md)", format_pending(.failed))]
    Cleanup {
        /// (feature, error).
        failed: Vec<(String, String)>,
    },
    /// Some enabled features did not become ready in time.
    #[error("not ready after {timeout:?}: {}", format_pending(.pending))]
    NotReady {
        /// How long we waited.
        timeout: Duration,
        /// (feature, last status summary).
        pending: Vec<(String, String)>,
    },
}

fn format_pending(pending: &[(String, String)]) -> String {
    pending
        .iter()
        .map(|(name, summary)| format!("{name}: {summary}"))
        .collect::<Vec<_>>()
        .join("; ")
}

// === impl BootstrapError ===

impl BootstrapError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        BootstrapError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
