//! The cluster config's home: a ConfigMap in the Kubernetes API, cached in the node store.
//!
//! On start the daemon reads the ConfigMap; if the API server is unreachable it starts from the
//! copy cached in the store, so a reboot never loses the config. A watch on the ConfigMap
//! delivers changes made on any node within seconds. Changes made through this node's local
//! API are written with optimistic concurrency (resourceVersion) and published locally at once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use knet_core::config::{
    CONFIGMAP_KEY, CONFIGMAP_NAME, CONFIGMAP_NAMESPACE, ClusterConfig, ConfigError, check_update,
};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::RuntimeError;

/// Where the config is cached in the node store (shared with `knet bootstrap`; JSON or YAML).
const CACHE_TREE: &str = "config";
const CACHE_KEY: &str = "cluster";
const API_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads, watches and writes the cluster config.
#[derive(Clone)]
pub struct ConfigSource {
    api: Api<ConfigMap>,
    cache: knet_store::Tree,
    tx: Arc<watch::Sender<Arc<ClusterConfig>>>,
    last_error: Arc<Mutex<Option<String>>>,
    server: String,
}

impl std::fmt::Debug for ConfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigSource")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

// === impl ConfigSource ===

impl ConfigSource {
    /// Loads the config (API first, store cache second) and starts watching for changes.
    pub async fn start(
        client: kube::Client,
        server: String,
        store: &knet_store::Store,
        shutdown: CancellationToken,
    ) -> Result<(ConfigSource, watch::Receiver<Arc<ClusterConfig>>), RuntimeError> {
        let api: Api<ConfigMap> = Api::namespaced(client, CONFIGMAP_NAMESPACE);
        let cache = store.tree(CACHE_TREE)?;
        // A node that has a cached config starts from it at once; the watch below delivers the
        // cluster's copy as soon as the API server answers. Only a node without a cache waits.
        let initial = match cached(&cache) {
            Some(cfg) => {
                tracing::info!(
                    "starting from this node's cached cluster config; the watch brings the cluster's"
                );
                cfg
            }
            None => match tokio::time::timeout(API_TIMEOUT, api.get_opt(CONFIGMAP_NAME)).await {
                Ok(Ok(Some(cm))) => {
                    let cfg = parse(&cm).map_err(RuntimeError::InvalidStored)?;
                    cache.put(CACHE_KEY, cfg.to_yaml().as_bytes())?;
                    cfg
                }
                Ok(Ok(None)) => return Err(RuntimeError::NotBootstrapped),
                Ok(Err(e)) => {
                    return Err(RuntimeError::Unreachable {
                        server,
                        reason: e.to_string(),
                    });
                }
                Err(_) => {
                    return Err(RuntimeError::Unreachable {
                        server,
                        reason: format!("no answer within {API_TIMEOUT:?}"),
                    });
                }
            },
        };
        let (tx, rx) = watch::channel(Arc::new(initial));
        let source = ConfigSource {
            api,
            cache,
            tx: Arc::new(tx),
            last_error: Arc::default(),
            server,
        };
        tokio::spawn(source.clone().watch_loop(shutdown));
        Ok((source, rx))
    }

    async fn watch_loop(self, shutdown: CancellationToken) {
        let cfg = watcher::Config::default().fields(&format!("metadata.name={CONFIGMAP_NAME}"));
        let stream = watcher(self.api.clone(), cfg).default_backoff();
        let mut stream = std::pin::pin!(stream);
        loop {
            let event = tokio::select! {
                () = shutdown.cancelled() => return,
                e = stream.next() => e,
            };
            match event {
                Some(Ok(watcher::Event::Apply(cm) | watcher::Event::InitApply(cm))) => {
                    self.set_error(None);
                    self.accept(&cm);
                }
                Some(Ok(_)) => self.set_error(None),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "config watch failed; keeping the current config and retrying");
                    self.set_error(Some(e.to_string()));
                }
                None => return,
            }
        }
    }

    /// Takes a ConfigMap seen on the watch: publishes it if it is valid and changes nothing
    /// immutable; otherwise logs and keeps the current config.
    fn accept(&self, cm: &ConfigMap) {
        let current = self.current();
        match parse(cm).and_then(|new| check_update(&current, &new).map(|()| new)) {
            Ok(new) if new != *current => {
                tracing::info!("cluster config changed");
                if let Err(error) = self.cache.put(CACHE_KEY, new.to_yaml().as_bytes()) {
                    tracing::warn!(%error, "cannot cache the cluster config");
                }
                self.tx.send_replace(Arc::new(new));
            }
            Ok(_) => {}
            Err(error) => {
                tracing::error!(%error, "ignoring an invalid change to ConfigMap kube-system/knet-config");
            }
        }
    }

    fn set_error(&self, e: Option<String>) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = e;
    }

    /// The config now in force on this node.
    pub fn current(&self) -> Arc<ClusterConfig> {
        self.tx.borrow().clone()
    }

    /// The last error talking to the API server, if the link is down.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Applies `change` to the cluster's config and writes it back, retrying on conflicts.
    /// Nothing is changed anywhere if the change is invalid or the API server is unreachable.
    pub async fn update<F>(&self, change: F) -> Result<Arc<ClusterConfig>, RuntimeError>
    where
        F: Fn(&ClusterConfig) -> Result<ClusterConfig, ConfigError>,
    {
        for _ in 0..5 {
            let cm = self
                .timed(self.api.get_opt(CONFIGMAP_NAME))
                .await?
                .ok_or(RuntimeError::NotBootstrapped)?;
            let current = parse(&cm).map_err(RuntimeError::InvalidStored)?;
            let new = change(&current)?;
            check_update(&current, &new)?;
            if new == current {
                self.tx.send_replace(Arc::new(new.clone()));
                return Ok(Arc::new(new));
            }
            let mut updated = cm.clone();
            updated
                .data
                .get_or_insert_with(BTreeMap::new)
                .insert(CONFIGMAP_KEY.to_owned(), new.to_yaml());
            match self
                .timed(
                    self.api
                        .replace(CONFIGMAP_NAME, &PostParams::default(), &updated),
                )
                .await
            {
                Ok(_) => {
                    self.cache.put(CACHE_KEY, new.to_yaml().as_bytes())?;
                    let new = Arc::new(new);
                    self.tx.send_replace(new.clone());
                    return Ok(new);
                }
                Err(RuntimeError::Unreachable { reason, .. }) if reason.contains("409") => continue,
                Err(e) => return Err(e),
            }
        }
        Err(RuntimeError::Conflict)
    }

    async fn timed<T>(
        &self,
        fut: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, RuntimeError> {
        match tokio::time::timeout(API_TIMEOUT, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(kube::Error::Api(status))) if status.code == 409 => {
                Err(RuntimeError::Unreachable {
                    server: self.server.clone(),
                    reason: "409 conflict".into(),
                })
            }
            Ok(Err(e)) => Err(RuntimeError::Unreachable {
                server: self.server.clone(),
                reason: e.to_string(),
            }),
            Err(_) => Err(RuntimeError::Unreachable {
                server: self.server.clone(),
                reason: format!("no answer within {API_TIMEOUT:?}"),
            }),
        }
    }
}

/// Builds the ConfigMap that holds `cfg` (used by bootstrap and tests).
pub fn config_map(cfg: &ClusterConfig) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(CONFIGMAP_NAME.to_owned()),
            namespace: Some(CONFIGMAP_NAMESPACE.to_owned()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_owned(),
                "knet".to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(CONFIGMAP_KEY.to_owned(), cfg.to_yaml())])),
        ..ConfigMap::default()
    }
}

fn parse(cm: &ConfigMap) -> Result<ClusterConfig, ConfigError> {
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get(CONFIGMAP_KEY))
        .ok_or_else(|| ConfigError::Parse(format!("the ConfigMap has no {CONFIGMAP_KEY} key")))?;
    ClusterConfig::from_yaml(text)
}

fn cached(cache: &knet_store::Tree) -> Option<ClusterConfig> {
    let bytes = cache.get(CACHE_KEY).ok()??;
    ClusterConfig::from_yaml(&String::from_utf8_lossy(&bytes)).ok()
}
