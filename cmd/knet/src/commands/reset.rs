//! `knet reset`: remove everything knet put on this node.
//!
//! The order matters: the daemon is stopped first (it would put things back, and it holds the
//! store's lock); then every feature module of this binary (the list `knet daemon` runs) cleans
//! up in-process; then the pod veths the network feature keeps across a disable are deleted
//! (their /32 routes go with them); last, `knet_bootstrap::reset` removes the files bootstrap
//! wrote. A failing feature cleanup does not stop the rest; the command then fails at the end.

use std::process::ExitCode;

use anyhow::Context;
use knet_bootstrap::{CleanupOptions, ResetStep};
use knet_core::paths::env;

use crate::cli::{NodeArgs, ResetArgs};

pub async fn run(mut node: NodeArgs, args: ResetArgs) -> anyhow::Result<ExitCode> {
    if args.from_snap_service {
        from_snap_service(&mut node)?;
    }
    let paths = node.paths();
    let mut print = |step: ResetStep| println!("{step}");
    knet_bootstrap::stop_daemon(&paths, &mut print).await?;

    let mut opts = CleanupOptions::new(
        paths.clone(),
        node.node_name().unwrap_or_else(|_| String::new()),
    );
    opts.kubeconfig = node.kubeconfig.clone();
    opts.timeout = args.timeout;
    let features = knet_bootstrap::cleanup_features(&opts, super::daemon::modules(), &mut print)
        .await
        .map_err(anyhow::Error::from);
    if let Err(e) = &features
        && matches!(
            e.downcast_ref::<knet_bootstrap::BootstrapError>(),
            Some(knet_bootstrap::BootstrapError::DaemonStillRunning { .. })
        )
    {
        // Nothing was cleaned up: leave the files for the daemon that still runs.
        return features.map(|()| ExitCode::FAILURE);
    }
    let veths = remove_pod_veths().await;
    knet_bootstrap::reset(&paths, &mut print).await?;
    features?;
    veths?;
    println!(
        "knet reset: nothing of knet is left on this node; `knet bootstrap` prepares it again."
    );
    Ok(ExitCode::SUCCESS)
}

/// Applies the `KNET_*` assignments of the snap service's drop-in to `node`.
fn from_snap_service(node: &mut NodeArgs) -> anyhow::Result<()> {
    let Some(vars) = knet_bootstrap::snap_dropin_environment()? else {
        println!("no drop-in from `knet bootstrap` for the snap's daemon service; using the flags");
        return Ok(());
    };
    for (key, value) in vars {
        match key.as_str() {
            env::STATE_DIR => node.state_dir = value.into(),
            env::RUN_DIR => node.run_dir = value.into(),
            env::CNI_CONF_DIR => node.cni_conf_dir = value.into(),
            env::CNI_BIN_DIR => node.cni_bin_dir = value.into(),
            env::KUBECONFIG => node.kubeconfig = Some(value.into()),
            env::NODE_NAME => node.node_name = Some(value),
            other => tracing::debug!(key = other, "ignoring drop-in variable"),
        }
    }
    println!(
        "using the paths `knet bootstrap` gave the snap's daemon service (state dir {})",
        node.state_dir.display()
    );
    Ok(())
}

/// Deletes every host-side pod veth (`knet` + 11 hex digits) in this network namespace; the pod
/// end and the pod's /32 routes go with it. The network feature keeps them when it is only
/// disabled, so its cleanup does not.
async fn remove_pod_veths() -> anyhow::Result<()> {
    use knet_network::kernel::{Netlink, delete_link, host_veths};
    let nl = Netlink::open(None)
        .await
        .context("cannot open netlink to remove pod interfaces")?;
    let names = host_veths(&nl.handle)
        .await
        .context("cannot list pod interfaces")?;
    for name in names {
        if delete_link(&nl.handle, &name)
            .await
            .with_context(|| format!("cannot delete pod interface {name}"))?
        {
            println!("removed pod interface {name} and its routes");
        }
    }
    Ok(())
}
