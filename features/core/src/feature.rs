//! The trait every in-process module implements, and what the runtime hands it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::FeatureId;
use crate::config::ClusterConfig;
use crate::paths::Paths;
use crate::status::{FeatureState, FeatureStatus, now_rfc3339};
use crate::watch::Watches;

/// A toggleable module of the daemon (network, dns, ...).
///
/// The runtime calls [`Feature::run`] when the feature is enabled (after the features it depends
/// on), cancels `shutdown` when it is disabled or the daemon stops, and after a disable calls
/// [`Feature::cleanup`]. A `run` that returns an error is restarted with backoff; it never takes
/// the daemon or other features down.
pub trait Feature: Send + Sync + 'static {
    /// Which feature this is.
    fn id(&self) -> FeatureId;

    /// Runs until `shutdown` is cancelled. Must report [`StatusReporter::ready`] once it serves,
    /// and re-read `ctx.config` to apply changes live.
    fn run(
        &self,
        ctx: FeatureContext,
        status: StatusReporter,
        shutdown: CancellationToken,
    ) -> BoxFuture<'_, Result<(), FeatureError>>;

    /// Removes everything the feature installed on this node (links, routes, nft tables, BPF
    /// programs, listeners, API objects it owns). Idempotent; also called at daemon start for
    /// features that are disabled, to clear leftovers from a crash.
    fn cleanup(&self, ctx: FeatureContext) -> BoxFuture<'_, Result<(), FeatureError>>;
}

/// A feature failed. The message is shown in `knet status`, so it says what is wrong in words.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct FeatureError {
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

// === impl FeatureError ===

impl FeatureError {
    /// An error with a message only.
    pub fn msg(message: impl Into<String>) -> FeatureError {
        FeatureError {
            message: message.into(),
            source: None,
        }
    }

    /// An error with context around a cause; the cause is appended to the message.
    pub fn with(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> FeatureError {
        let context = context.into();
        FeatureError {
            message: format!("{context}: {source}"),
            source: Some(Box::new(source)),
        }
    }
}

/// Everything a feature gets from the daemon. Cheap to clone.
#[derive(Clone)]
pub struct FeatureContext {
    /// This node's name (the Node object's name).
    pub node_name: String,
    /// The node's directories.
    pub paths: Paths,
    /// The cluster config; changes arrive through `changed()`.
    pub config: watch::Receiver<Arc<ClusterConfig>>,
    /// Node-local durable state.
    pub store: knet_store::Store,
    /// Kubernetes API client.
    pub client: kube::Client,
    /// One shared watch per resource kind.
    pub watches: Watches,
    /// Where features register local API handlers (e.g. the CNI plugin's calls).
    pub api: ApiRegistry,
}

impl std::fmt::Debug for FeatureContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeatureContext")
            .field("node_name", &self.node_name)
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

// === impl FeatureContext ===

impl FeatureContext {
    /// The current cluster config.
    pub fn current_config(&self) -> Arc<ClusterConfig> {
        self.config.borrow().clone()
    }
}

/// A feature's handle on its own `knet status` row.
#[derive(Clone, Debug)]
pub struct StatusReporter {
    row: Arc<Mutex<FeatureStatus>>,
    changed: Arc<watch::Sender<u64>>,
}

// === impl StatusReporter ===

impl StatusReporter {
    /// A reporter for a row.
    pub fn new(row: Arc<Mutex<FeatureStatus>>, changed: Arc<watch::Sender<u64>>) -> StatusReporter {
        StatusReporter { row, changed }
    }

    fn update(&self, state: FeatureState, message: String) {
        let mut row = self.row.lock().unwrap_or_else(PoisonError::into_inner);
        if row.state != state || row.message != message {
            row.state = state;
            row.message = message;
            row.updated_at = now_rfc3339();
            drop(row);
            self.changed.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// The feature serves; `message` says where (may be empty), e.g. `at 10.152.183.10`.
    pub fn ready(&self, message: impl Into<String>) {
        self.update(FeatureState::Ready, message.into());
    }

    /// The feature is starting or resyncing; `message` says what it waits for.
    pub fn starting(&self, message: impl Into<String>) {
        self.update(FeatureState::Starting, message.into());
    }

    /// The feature is failing; `message` says why.
    pub fn failed(&self, message: impl Into<String>) {
        self.update(FeatureState::Failed, message.into());
    }

    /// The feature is being disabled.
    pub fn stopping(&self) {
        self.update(FeatureState::Stopping, String::new());
    }

    /// The feature is off.
    pub fn disabled(&self) {
        self.update(FeatureState::Disabled, String::new());
    }

    /// The feature is switched on but this build has no module for it.
    pub fn unavailable(&self, message: impl Into<String>) {
        self.update(FeatureState::Unavailable, message.into());
    }

    /// Sets whether the cluster config switches the feature on.
    pub fn set_enabled(&self, enabled: bool) {
        let mut row = self.row.lock().unwrap_or_else(PoisonError::into_inner);
        if row.enabled != enabled {
            row.enabled = enabled;
            row.updated_at = now_rfc3339();
            drop(row);
            self.changed.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Records one sync of the feature's dataplane (for `/metrics`): counts it by result in
    /// `knet_feature_syncs_total{feature,result}` and adds its duration to
    /// `knet_feature_sync_seconds{feature}` (`_count`/`_sum`).
    pub fn synced(&self, took: std::time::Duration, ok: bool) {
        let feature = self.row.lock().unwrap_or_else(PoisonError::into_inner).name;
        let labels = [
            ("feature", feature.as_str()),
            ("result", if ok { "ok" } else { "error" }),
        ];
        crate::metrics::inc("knet_feature_syncs_total", &labels);
        crate::metrics::observe(
            "knet_feature_sync_seconds",
            &[("feature", feature.as_str())],
            took.as_secs_f64(),
        );
    }

    /// A copy of the row.
    pub fn snapshot(&self) -> FeatureStatus {
        self.row
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A request to a feature's local API, routed by the daemon from `/v1/<feature>/<path>`.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    /// HTTP method.
    pub method: String,
    /// The path below the feature's prefix, e.g. `cni/add`.
    pub path: String,
    /// The JSON body.
    pub body: Vec<u8>,
}

/// A feature's answer: an HTTP status and a JSON body.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    /// HTTP status code.
    pub status: u16,
    /// JSON body.
    pub body: Vec<u8>,
}

/// Serves a feature's local API.
pub trait ApiHandler: Send + Sync + 'static {
    /// Answers one request.
    fn handle(&self, req: ApiRequest) -> BoxFuture<'_, ApiResponse>;
}

/// The local API's routing table: feature prefix → handler. Features register on start and
/// unregister on stop, so calls to a disabled feature get a clear "disabled" answer.
#[derive(Clone, Default)]
pub struct ApiRegistry {
    handlers: Arc<Mutex<HashMap<FeatureId, Arc<dyn ApiHandler>>>>,
}

impl std::fmt::Debug for ApiRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiRegistry").finish_non_exhaustive()
    }
}

// === impl ApiRegistry ===

impl ApiRegistry {
    /// Routes `/v1/<id>/...` to `handler`.
    pub fn register(&self, id: FeatureId, handler: Arc<dyn ApiHandler>) {
        self.handlers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, handler);
    }

    /// Stops routing to `id`.
    pub fn unregister(&self, id: FeatureId) {
        self.handlers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }

    /// The handler for `id`, if the feature is serving.
    pub fn get(&self, id: FeatureId) -> Option<Arc<dyn ApiHandler>> {
        self.handlers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned()
    }
}
