//! Running every feature's `cleanup` in-process, with the daemon stopped.
//!
//! The daemon normally calls `Feature::cleanup` when a feature is disabled. `knet reset` needs
//! the same for every feature at once, also when the daemon is dead or cannot start, so it
//! builds the [`FeatureContext`] the daemon would: the node's store (the daemon must be stopped:
//! it holds the store's lock), the cluster config cached in it (else the cluster's, else the
//! defaults), a Kubernetes client and the shared watches.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use knet_core::config::ClusterConfig;
use knet_core::paths::Paths;
use knet_core::watch::Watches;
use knet_core::{ApiRegistry, Feature, FeatureContext, FeatureId};
use knet_store::{Recovery, Store};
use tokio_util::sync::CancellationToken;

use super::ResetStep;
use crate::BootstrapError;
use crate::cluster_config::{ClusterApi, read_cluster_config};
use crate::flow::{STORE_CONFIG_KEY, STORE_CONFIG_TREE};

/// What [`cleanup_features`] needs to know about the node.
#[derive(Debug, Clone)]
pub struct CleanupOptions {
    /// The node's directories.
    pub paths: Paths,
    /// This node's name.
    pub node_name: String,
    /// The node's kubeconfig; `None` means `KUBECONFIG`, `~/.kube/config`, then in-cluster.
    pub kubeconfig: Option<PathBuf>,
    /// The longest one feature's cleanup may take.
    pub timeout: Duration,
}

// === impl CleanupOptions ===

impl CleanupOptions {
    /// Options with the default kubeconfig and a 60 s limit per feature.
    pub fn new(paths: Paths, node_name: impl Into<String>) -> CleanupOptions {
        CleanupOptions {
            paths,
            node_name: node_name.into(),
            kubeconfig: None,
            timeout: Duration::from_secs(60),
        }
    }
}

/// Runs `cleanup` of every module in `features`, dependants first (the reverse of
/// [`FeatureId::ALL`]), whether the feature is enabled or not: cleanups are idempotent. A
/// failing or hanging cleanup is reported and the others still run; the error at the end lists
/// every failure. Refuses to run while a daemon answers on the node's socket (it would put
/// things back). Uses the node's store if it exists (the caller removes it afterwards with
/// [`super::remove_node_files`]), else a throwaway one removed before returning.
pub async fn cleanup_features(
    opts: &CleanupOptions,
    features: Vec<Box<dyn Feature>>,
    progress: &mut dyn FnMut(ResetStep),
) -> Result<(), BootstrapError> {
    let socket = opts.paths.socket();
    if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        return Err(BootstrapError::DaemonStillRunning {
            socket: socket.display().to_string(),
        });
    }
    // The node's store when there is one (a feature may read there what it installed); else a
    // throwaway one, so a node without state gets none from its reset.
    let existing = opts.paths.store_dir();
    let throwaway = (!existing.exists())
        .then(|| std::env::temp_dir().join(format!("knet-reset-store-{}", std::process::id())));
    let store_dir = throwaway.clone().unwrap_or(existing);
    let (store, recovery) = Store::open_or_recover(&store_dir)?;
    if let Recovery::Rebuilt { moved_to, reason } = &recovery {
        tracing::warn!(moved_to = %moved_to.display(), %reason, "the store could not be opened; cleaning up with a fresh one");
    }
    let result = run_cleanups(opts, store, features, progress).await;
    if let Some(dir) = throwaway
        && let Err(e) = std::fs::remove_dir_all(&dir)
    {
        tracing::warn!(error = %e, dir = %dir.display(), "cannot remove the throwaway store");
    }
    result
}

async fn run_cleanups(
    opts: &CleanupOptions,
    store: Store,
    features: Vec<Box<dyn Feature>>,
    progress: &mut dyn FnMut(ResetStep),
) -> Result<(), BootstrapError> {
    let api = match ClusterApi::from_kubeconfig(opts.kubeconfig.as_deref()).await {
        Ok(api) => Some(api),
        Err(e) => {
            progress(ResetStep::ApiUnavailable {
                reason: e.to_string(),
            });
            None
        }
    };
    let config = match cached_config(&store) {
        Some(c) => c,
        None => match &api {
            Some(api) => match read_cluster_config(api).await {
                Ok(Some(c)) => c,
                Ok(None) => ClusterConfig::default(),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the cluster config; cleaning up with the defaults");
                    ClusterConfig::default()
                }
            },
            None => ClusterConfig::default(),
        },
    };
    let client = match api {
        Some(api) => api.client().clone(),
        None => unreachable_client()?,
    };
    let shutdown = CancellationToken::new();
    let (_config_tx, config_rx) = tokio::sync::watch::channel(Arc::new(config));
    let ctx = FeatureContext {
        node_name: opts.node_name.clone(),
        paths: opts.paths.clone(),
        config: config_rx,
        store,
        client: client.clone(),
        watches: Watches::new(client, shutdown.clone()),
        api: ApiRegistry::default(),
    };

    let mut ordered = features;
    ordered.sort_by_key(|f| std::cmp::Reverse(FeatureId::ALL.iter().position(|id| *id == f.id())));
    let mut failed = Vec::new();
    for feature in &ordered {
        let id = feature.id();
        let outcome = tokio::time::timeout(opts.timeout, feature.cleanup(ctx.clone())).await;
        let error = match outcome {
            Ok(Ok(())) => {
                progress(ResetStep::FeatureCleaned { feature: id });
                continue;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("did not finish within {:?}", opts.timeout),
        };
        tracing::error!(feature = %id, %error, "cleanup failed");
        progress(ResetStep::FeatureCleanupFailed {
            feature: id,
            error: error.clone(),
        });
        failed.push((id.to_string(), error));
    }
    shutdown.cancel();
    drop(ctx);
    if failed.is_empty() {
        Ok(())
    } else {
        Err(BootstrapError::Cleanup { failed })
    }
}

/// The config bootstrap or the daemon cached in the store (JSON or YAML; YAML reads both).
fn cached_config(store: &Store) -> Option<ClusterConfig> {
    let bytes = store
        .tree(STORE_CONFIG_TREE)
        .ok()?
        .get(STORE_CONFIG_KEY)
        .ok()??;
    ClusterConfig::from_yaml(&String::from_utf8_lossy(&bytes)).ok()
}

/// A client whose every call fails at once (nothing listens on port 1 of the loopback): the
/// features' context needs a client even when no kubeconfig is usable, and their cleanups
/// treat API errors as warnings.
fn unreachable_client() -> Result<kube::Client, BootstrapError> {
    let url = "https://127.0.0.1:1";
    let uri = url.parse().map_err(|e| BootstrapError::Kubeconfig {
        path: url.to_owned(),
        reason: format!("{e}"),
    })?;
    kube::Client::try_from(kube::Config::new(uri)).map_err(|e| BootstrapError::Kubeconfig {
        path: url.to_owned(),
        reason: e.to_string(),
    })
}
