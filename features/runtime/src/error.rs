//! Errors of the runtime.

use knet_core::config::ConfigError;

/// Why the daemon could not start, or a config change could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The store could not be opened or recovered.
    #[error(transparent)]
    Store(#[from] knet_store::StoreError),
    /// The kubeconfig could not be loaded.
    #[error(
        "cannot load the kubeconfig {path}: {reason}; pass --kubeconfig or set KNET_KUBECONFIG"
    )]
    Kubeconfig {
        /// What was tried.
        path: String,
        /// Why it failed.
        reason: String,
    },
    /// The API server could not be reached and there is no cached config.
    #[error(
        "cannot reach the Kubernetes API server at {server}: {reason}; check the kubeconfig and that the API server is up"
    )]
    Unreachable {
        /// The server URL.
        server: String,
        /// What the client said.
        reason: String,
    },
    /// The cluster has no knet config: the node was never bootstrapped.
    #[error(
        "the cluster has no knet config (ConfigMap kube-system/knet-config): run `knet bootstrap` first"
    )]
    NotBootstrapped,
    /// The config in the cluster does not parse.
    #[error("the cluster's knet config (ConfigMap kube-system/knet-config) is invalid: {0}")]
    InvalidStored(ConfigError),
    /// A requested change was rejected.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Writing the config lost too many races with other writers.
    #[error("the knet config kept changing under us; try again")]
    Conflict,
    /// The local API socket could not be served.
    #[error("cannot serve the local API on {path}: {source}")]
    Socket {
        /// The socket path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}
