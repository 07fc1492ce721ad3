//! `knet daemon`: open the store, load the config, start the supervisors, serve the local API.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use knet_core::paths::Paths;
use knet_core::watch::Watches;
use knet_core::{ApiRegistry, Feature, FeatureContext, FeatureId};
use knet_store::{Recovery, Store};
use tokio_util::sync::CancellationToken;

use crate::RuntimeError;
use crate::config_source::ConfigSource;
use crate::router::DaemonRouter;
use crate::supervisor::{StatusBoard, supervise};

/// What `knet daemon` was told.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// The node's directories.
    pub paths: Paths,
    /// This node's name.
    pub node_name: String,
    /// Kubeconfig path; `None` infers (KUBECONFIG, ~/.kube/config, in-cluster).
    pub kubeconfig: Option<PathBuf>,
    /// knet's version, for status.
    pub version: String,
}

/// Runs the daemon until `shutdown` is cancelled. `modules` are the feature modules compiled
/// into this binary; features without a module are reported unavailable when enabled.
pub async fn run(
    opts: DaemonOptions,
    modules: Vec<Box<dyn Feature>>,
    shutdown: CancellationToken,
) -> Result<(), RuntimeError> {
    std::fs::create_dir_all(&opts.paths.state_dir).map_err(|source| RuntimeError::Socket {
        path: opts.paths.state_dir.display().to_string(),
        source,
    })?;
    let (store, recovery) = Store::open_or_recover(&opts.paths.store_dir())?;
    if let Recovery::Rebuilt { moved_to, reason } = &recovery {
        tracing::warn!(moved_to = %moved_to.display(), %reason,
            "the node store could not be opened; started a fresh one and will rebuild node state from the kernel and the API");
        knet_core::metrics::inc("knet_store_rebuilds_total", &[]);
    }
    let (client, server) = kube_client(opts.kubeconfig.as_deref()).await?;
    let (source, config) =
        ConfigSource::start(client.clone(), server, &store, shutdown.clone()).await?;
    let watches = Watches::new(client.clone(), shutdown.clone());
    let api = ApiRegistry::default();
    let board = StatusBoard::new();
    let ctx = FeatureContext {
        node_name: opts.node_name.clone(),
        paths: opts.paths.clone(),
        config,
        store,
        client,
        watches: watches.clone(),
        api: api.clone(),
    };

    let mut modules: Vec<Option<Arc<dyn Feature>>> = {
        let mut by_id: Vec<Option<Arc<dyn Feature>>> =
            FeatureId::ALL.iter().map(|_| None).collect();
        for m in modules {
            if let Some(i) = FeatureId::ALL.iter().position(|f| *f == m.id()) {
                by_id[i] = Some(Arc::from(m));
            }
        }
        by_id
    };
    let mut supervisors = Vec::new();
    for (i, id) in FeatureId::ALL.into_iter().enumerate() {
        let module = modules.get_mut(i).and_then(Option::take);
        supervisors.push(tokio::spawn(supervise(
            id,
            module,
            ctx.clone(),
            board.clone(),
            shutdown.clone(),
        )));
    }

    let router = DaemonRouter {
        node: opts.node_name.clone(),
        version: opts.version.clone(),
        source,
        board,
        api,
        watches,
    };
    tracing::info!(node = %opts.node_name, version = %opts.version, "knet daemon started");
    let socket = opts.paths.socket();
    knet_api::serve(&socket, Arc::new(router), shutdown.clone())
        .await
        .map_err(|source| RuntimeError::Socket {
            path: socket.display().to_string(),
            source,
        })?;
    shutdown.cancel();
    for s in supervisors {
        let _ = tokio::time::timeout(Duration::from_secs(35), s).await;
    }
    tracing::info!("knet daemon stopped; the dataplane stays in place");
    Ok(())
}

/// A client for the kubeconfig at `path` (or the inferred one), and the server URL for messages.
pub async fn kube_client(
    path: Option<&std::path::Path>,
) -> Result<(kube::Client, String), RuntimeError> {
    let shown = path.map_or_else(|| "(inferred)".to_owned(), |p| p.display().to_string());
    let config = match path {
        Some(p) => {
            let kc =
                kube::config::Kubeconfig::read_from(p).map_err(|e| RuntimeError::Kubeconfig {
                    path: shown.clone(),
                    reason: e.to_string(),
                })?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| RuntimeError::Kubeconfig {
                    path: shown.clone(),
                    reason: e.to_string(),
                })?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| RuntimeError::Kubeconfig {
                path: shown.clone(),
                reason: e.to_string(),
            })?,
    };
    let server = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).map_err(|e| RuntimeError::Kubeconfig {
        path: shown,
        reason: e.to_string(),
    })?;
    Ok((client, server))
}
