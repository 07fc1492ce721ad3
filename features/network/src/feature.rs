//! The [`Feature`] implementation: registers the CNI handler, learns the node's pod CIDRs,
//! programs cross-node routes and the masquerade table, and re-syncs on every Node or config
//! change (and every 30 s, to repair drift).

mod podcidr;
mod sync;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Node;
use knet_core::{Feature, FeatureContext, FeatureError, FeatureId, StatusReporter};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::handler::{CniHandler, NodeNetwork};
use crate::ipam::Ipam;
use crate::kernel::{Netlink, delete_masquerade};
use crate::peers::delete_peer_state;
use crate::services::{self, StatusLine};

pub use podcidr::{ANNOTATION, CLAIMS, node_internal_ips, node_pod_cidrs, pick_free};

/// Periodic full resync.
const RESYNC: Duration = Duration::from_secs(30);
/// How long to wait for the first Node list before syncing anyway.
const FIRST_LIST: Duration = Duration::from_secs(30);

/// The network feature.
#[derive(Debug, Default)]
pub struct NetworkFeature {
    node_ns: Option<PathBuf>,
}

/// The feature, for the daemon's registry.
pub fn build() -> Box<dyn Feature> {
    Box::new(NetworkFeature::default())
}

// === impl NetworkFeature ===

impl NetworkFeature {
    /// A feature that programs the network namespace at `path` instead of the daemon's own (for
    /// tests that run the feature inside a namespace they created).
    pub fn in_netns(path: PathBuf) -> NetworkFeature {
        NetworkFeature {
            node_ns: Some(path),
        }
    }

    async fn serve(
        &self,
        ctx: FeatureContext,
        status: StatusReporter,
        shutdown: CancellationToken,
    ) -> Result<(), FeatureError> {
        status.starting("opening the address store");
        let ipam = Ipam::open(&ctx.store).map_err(|e| FeatureError::with("opening IPAM", e))?;
        let (net_tx, net_rx) = watch::channel(NodeNetwork::default());
        let handler = CniHandler::new(ipam, self.node_ns.clone(), net_rx)
            .await
            .map_err(|e| FeatureError::with("opening netlink", e))?;
        if let Err(error) = handler.reconcile().await {
            tracing::warn!(%error, "could not reconcile addresses with the node's veths");
        }
        let handler = Arc::new(handler);
        ctx.api.register(FeatureId::Network, handler);
        let line = StatusLine::new(status.clone());
        let svc_stop = shutdown.child_token();
        let svc = services::spawn(
            ctx.clone(),
            self.node_ns.clone(),
            line.clone(),
            svc_stop.clone(),
        );
        let result = self
            .sync_loop(&ctx, &status, &line, &shutdown, &net_tx)
            .await;
        svc_stop.cancel();
        let _ = svc.await;
        ctx.api.unregister(FeatureId::Network);
        result
    }

    async fn sync_loop(
        &self,
        ctx: &FeatureContext,
        status: &StatusReporter,
        line: &StatusLine,
        shutdown: &CancellationToken,
        net_tx: &watch::Sender<NodeNetwork>,
    ) -> Result<(), FeatureError> {
        let nl = Netlink::open(self.node_ns.as_deref())
            .await
            .map_err(|e| FeatureError::with("opening netlink", e))?;
        let mut nodes = ctx.watches.get::<Node>();
        let mut config = ctx.config.clone();
        status.starting("waiting for the Node list");
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            _ = nodes.wait_synced(FIRST_LIST) => {}
        }
        loop {
            let pass = sync::Pass {
                ctx,
                nl: &nl,
                node_ns: self.node_ns.as_deref(),
                nodes: &nodes,
                net_tx,
            };
            let started = std::time::Instant::now();
            let outcome = pass.run().await;
            status.synced(started.elapsed(), outcome.is_ok());
            match outcome {
                Ok(msg) => line.network_ready(msg),
                Err(sync::SyncError::Waiting(msg)) => {
                    line.network_not_ready();
                    status.starting(msg);
                }
                Err(sync::SyncError::Failed(msg)) => {
                    tracing::warn!(error = %msg, "network sync failed");
                    line.network_not_ready();
                    status.failed(msg);
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                alive = nodes.changed() => if !alive { return Ok(()) },
                changed = config.changed() => if changed.is_err() { return Ok(()) },
                () = tokio::time::sleep(RESYNC) => {}
            }
        }
    }
}

impl Feature for NetworkFeature {
    fn id(&self) -> FeatureId {
        FeatureId::Network
    }

    fn run(
        &self,
        ctx: FeatureContext,
        status: StatusReporter,
        shutdown: CancellationToken,
    ) -> BoxFuture<'_, Result<(), FeatureError>> {
        Box::pin(self.serve(ctx, status, shutdown))
    }

    fn cleanup(&self, ctx: FeatureContext) -> BoxFuture<'_, Result<(), FeatureError>> {
        Box::pin(async move {
            ctx.api.unregister(FeatureId::Network);
            let nl = Netlink::open(self.node_ns.as_deref())
                .await
                .map_err(|e| FeatureError::with("opening netlink", e))?;
            delete_peer_state(&nl)
                .await
                .map_err(|e| FeatureError::with("removing cross-node routes", e))?;
            delete_masquerade(self.node_ns.as_deref())
                .await
                .map_err(|e| FeatureError::with("removing the masquerade table", e))?;
            services::cleanup(self.node_ns.as_deref())
                .await
                .map_err(|e| FeatureError::with("removing the services dataplane", e))?;
            Ok(())
        })
    }
}
