//! `knet daemon`: the node agent in the foreground.

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::cli::NodeArgs;

pub async fn run(node: &NodeArgs) -> anyhow::Result<ExitCode> {
    let opts = knet_runtime::DaemonOptions {
        paths: node.paths(),
        node_name: node.node_name()?,
        kubeconfig: node.kubeconfig.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            wait_for_signal().await;
            tracing::info!("signal received; stopping");
            shutdown.cancel();
        }
    });
    knet_runtime::run(opts, modules(), shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// The feature modules compiled into this binary (also what `knet reset` cleans up).
pub(super) fn modules() -> Vec<Box<dyn knet_core::Feature>> {
    vec![
        knet_network::build(),
        knet_network_policy::build(),
        knet_dns::build(),
    ]
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
