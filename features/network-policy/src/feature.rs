//! The [`Feature`] implementation: a debounced, level-triggered sync loop. Any change of a
//! NetworkPolicy, Pod or Namespace (shared watches) → wait [`DEBOUNCE`] → build the model from
//! the stores → compile → render → apply when the script differs from the last applied one; and
//! a full re-apply every [`RESYNC`] to repair drift (someone flushing the table).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use knet_core::slim_pod::SlimPod;
use knet_core::{Feature, FeatureContext, FeatureError, FeatureId, StatusReporter};
use tokio_util::sync::CancellationToken;

use crate::compile::compile;
use crate::model::Cluster;
use crate::nft;
use crate::render::{render, render_delete};

/// How long to wait after a change for more changes to arrive before syncing.
pub const DEBOUNCE: Duration = Duration::from_millis(50);
/// Periodic full re-apply.
pub const RESYNC: Duration = Duration::from_secs(60);
/// Wait before retrying a failed apply.
const RETRY: Duration = Duration::from_secs(2);
/// How long to wait for the first lists before syncing with what is there.
const FIRST_LIST: Duration = Duration::from_secs(30);

/// The network-policy feature.
#[derive(Debug, Default)]
pub struct NetworkPolicyFeature {
    netns: Option<PathBuf>,
}

/// The feature, for the daemon's registry.
pub fn build() -> Box<dyn Feature> {
    Box::new(NetworkPolicyFeature::default())
}

// === impl NetworkPolicyFeature ===

impl NetworkPolicyFeature {
    /// A feature that programs the network namespace at `path` instead of the daemon's own (for
    /// tests that run it inside a namespace they created).
    pub fn in_netns(path: PathBuf) -> NetworkPolicyFeature {
        NetworkPolicyFeature { netns: Some(path) }
    }

    async fn serve(
        &self,
        ctx: FeatureContext,
        status: StatusReporter,
        shutdown: CancellationToken,
    ) -> Result<(), FeatureError> {
        let mut policies = ctx.watches.get::<NetworkPolicy>();
        let mut pods = ctx.watches.get::<SlimPod>();
        let mut namespaces = ctx.watches.get::<Namespace>();
        status.starting("waiting for the NetworkPolicy, Pod and Namespace lists");
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            _ = async {
                policies.wait_synced(FIRST_LIST).await;
                pods.wait_synced(FIRST_LIST).await;
                namespaces.wait_synced(FIRST_LIST).await;
            } => {}
        }
        let mut applied: Option<String> = None;
        let mut last_apply = Instant::now();
        loop {
            let t0 = Instant::now();
            let cluster = Cluster::from_api(
                policies.objects().iter().map(AsRef::as_ref),
                pods.objects().iter().map(AsRef::as_ref),
                namespaces.objects().iter().map(AsRef::as_ref),
            );
            let plan = compile(&cluster, &ctx.node_name);
            let script = render(&plan);
            let compiled = t0.elapsed();
            let due = last_apply.elapsed() >= RESYNC;
            let mut wait = RESYNC;
            if due || applied.as_deref() != Some(script.as_str()) {
                let t1 = Instant::now();
                match nft::apply(self.netns.as_deref(), &script).await {
                    Ok(()) => {
                        tracing::debug!(
                            policies = plan.policies,
                            chains = plan.chains.len(),
                            bytes = script.len(),
                            ?compiled,
                            applied = ?t1.elapsed(),
                            "network policy synced"
                        );
                        applied = Some(script);
                        last_apply = Instant::now();
                        status.ready(format!(
                            "{} policies, {} pods isolated",
                            plan.policies,
                            plan.isolated_pods()
                        ));
                    }
                    Err(error) => {
                        tracing::warn!(%error, "applying the network policy table failed");
                        status.failed(format!("applying table inet {}: {error}", nft::TABLE));
                        applied = None;
                        wait = RETRY;
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                alive = policies.changed() => if !alive { return Ok(()) },
                alive = pods.changed() => if !alive { return Ok(()) },
                alive = namespaces.changed() => if !alive { return Ok(()) },
                () = tokio::time::sleep(wait) => continue,
            }
            // Let a burst of changes (a namespace of pods, a kubectl apply -f dir) settle.
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(DEBOUNCE) => {}
            }
        }
    }
}

impl Feature for NetworkPolicyFeature {
    fn id(&self) -> FeatureId {
        FeatureId::NetworkPolicy
    }

    fn run(
        &self,
        ctx: FeatureContext,
        status: StatusReporter,
        shutdown: CancellationToken,
    ) -> BoxFuture<'_, Result<(), FeatureError>> {
        Box::pin(self.serve(ctx, status, shutdown))
    }

    fn cleanup(&self, _ctx: FeatureContext) -> BoxFuture<'_, Result<(), FeatureError>> {
        Box::pin(async move {
            nft::apply(self.netns.as_deref(), &render_delete())
                .await
                .map_err(|e| FeatureError::with(format!("removing table inet {}", nft::TABLE), e))
        })
    }
}
