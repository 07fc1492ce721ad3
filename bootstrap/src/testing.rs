//! Scenarios that need a Kubernetes API server, packaged so any harness can run them: this
//! crate's tests run them against an in-process fake, and the lab (e2e/) can run them against
//! its real apiserver (`knet-bootstrap` with feature `test-util`).
//!
//! They delete and recreate ConfigMap `kube-system/knet-config`: never point them at a cluster
//! you care about.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::DeleteParams;

use crate::BootstrapError;
use crate::cluster_config::{
    CONFIGMAP_NAME, CONFIGMAP_NAMESPACE, ClusterApi, ConfigOrigin, ensure_cluster_config,
    read_cluster_config,
};

/// Deletes the cluster config ConfigMap; a missing one is fine.
pub async fn delete_cluster_config(api: &ClusterApi) -> Result<(), String> {
    let cms: Api<ConfigMap> = Api::namespaced(api.client().clone(), CONFIGMAP_NAMESPACE);
    match cms.delete(CONFIGMAP_NAME, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(format!("deleting the ConfigMap: {e}")),
    }
}

/// First node creates the ConfigMap from its file; further nodes adopt it, without a file,
/// with a file that differs only on mutable keys (listed as ignored), and fail with a file
/// that contradicts an immutable key.
pub async fn create_then_adopt(api: &ClusterApi) -> Result<(), String> {
    delete_cluster_config(api).await?;
    let first = "pod-cidr: 10.50.0.0/16\nnetwork:\n  vxlan-port: 4789\n";
    let (cfg, origin) = ensure_cluster_config(api, Some(first))
        .await
        .map_err(|e| e.to_string())?;
    expect(
        origin == ConfigOrigin::Created,
        "first node creates",
        &origin,
    )?;
    expect(
        cfg.pod_cidr.to_string() == "10.50.0.0/16",
        "created config has the file's pod-cidr",
        &cfg.pod_cidr,
    )?;
    let stored = read_cluster_config(api).await.map_err(|e| e.to_string())?;
    expect(
        stored.as_ref() == Some(&cfg),
        "read back equals created",
        &stored,
    )?;

    let (adopted, origin) = ensure_cluster_config(api, None)
        .await
        .map_err(|e| e.to_string())?;
    expect(adopted == cfg, "second node adopts", &adopted)?;
    expect(
        origin == ConfigOrigin::Adopted { ignored: vec![] },
        "nothing ignored without a file",
        &origin,
    )?;

    let mutable = "network:\n  vxlan-port: 8472\n";
    let (adopted, origin) = ensure_cluster_config(api, Some(mutable))
        .await
        .map_err(|e| e.to_string())?;
    expect(
        adopted.network.vxlan_port == 4789,
        "cluster value wins",
        &adopted.network,
    )?;
    let ignored_ok = matches!(&origin, ConfigOrigin::Adopted { ignored }
        if ignored.len() == 1 && ignored[0].key == "network.vxlan-port");
    expect(ignored_ok, "the differing key is listed", &origin)?;

    match ensure_cluster_config(api, Some("pod-cidr: 10.1.0.0/16\n")).await {
        Err(BootstrapError::ConfigConflict { key, .. }) if key == "pod-cidr" => {}
        other => return Err(format!("immutable conflict expected, got {other:?}")),
    }
    let still = read_cluster_config(api).await.map_err(|e| e.to_string())?;
    expect(
        still.as_ref() == Some(&cfg),
        "a conflict changes nothing",
        &still,
    )?;
    delete_cluster_config(api).await
}

fn expect(ok: bool, what: &str, got: &dyn std::fmt::Debug) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}"))
    }
}
