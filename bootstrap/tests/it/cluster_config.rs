//! The cluster config in the Kubernetes API, against the lab's real kube-apiserver: the first
//! node creates ConfigMap kube-system/knet-config, further nodes adopt it (mutable differences
//! listed, immutable ones refused), two racing creators agree, and an invalid stored document,
//! an unreachable server and a bad kubeconfig are each one clear error.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use knet_bootstrap::{
    BootstrapError, CONFIGMAP_KEY, CONFIGMAP_NAME, CONFIGMAP_NAMESPACE, ClusterApi, ConfigOrigin,
    ensure_cluster_config, read_cluster_config,
};
use knet_core::config::ClusterConfig;
use kube::Api;
use kube::api::{DeleteParams, PostParams};

use crate::support::lab;
use crate::support::{closed_port, write_kubeconfig};

fn configmaps(api: &ClusterApi) -> Api<ConfigMap> {
    Api::namespaced(api.client().clone(), CONFIGMAP_NAMESPACE)
}

async fn delete_cluster_config(api: &ClusterApi) {
    match configmaps(api)
        .delete(CONFIGMAP_NAME, &DeleteParams::default())
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.is_not_found() => {}
        Err(e) => panic!("deleting the ConfigMap: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_adopt_conflict_race_and_invalid_against_the_lab_apiserver() {
    let lab = lab::start("cc", 1).await;
    let api = lab::admin_api(&lab).await;
    assert!(
        api.server().contains(&lab.api_port().to_string()),
        "{}",
        api.server()
    );
    assert_eq!(
        read_cluster_config(&api).await.expect("read"),
        None,
        "a fresh cluster has no knet config"
    );

    // The first node creates it from its file.
    let first = "pod-cidr: 10.50.0.0/16\nnetwork:\n  vxlan-port: 4789\ndns:\n  cluster-domain: corp.local\n";
    let (cfg, origin) = ensure_cluster_config(&api, Some(first))
        .await
        .expect("create");
    assert_eq!(origin, ConfigOrigin::Created);
    assert_eq!(cfg.pod_cidr.to_string(), "10.50.0.0/16");
    assert_eq!(cfg.network.vxlan_port, 4789);
    let cm = configmaps(&api).get(CONFIGMAP_NAME).await.expect("get");
    let labels = cm.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("knet"),
        "{labels:?}"
    );
    let yaml = cm
        .data
        .as_ref()
        .and_then(|d| d.get(CONFIGMAP_KEY))
        .expect("config.yaml");
    assert!(yaml.contains("cluster-domain: corp.local"), "{yaml}");
    assert_eq!(ClusterConfig::from_yaml(yaml).expect("parse"), cfg);
    assert_eq!(
        read_cluster_config(&api).await.expect("read"),
        Some(cfg.clone())
    );

    // Further nodes adopt it: without a file nothing is ignored.
    let (adopted, origin) = ensure_cluster_config(&api, None).await.expect("adopt");
    assert_eq!(adopted, cfg);
    assert_eq!(origin, ConfigOrigin::Adopted { ignored: vec![] });

    // A file that differs on a mutable key: the cluster's value wins and the key is listed.
    let (adopted, origin) = ensure_cluster_config(&api, Some("network:\n  vxlan-port: 8472\n"))
        .await
        .expect("adopt with a mutable difference");
    assert_eq!(adopted.network.vxlan_port, 4789, "the cluster's value wins");
    let ConfigOrigin::Adopted { ignored } = &origin else {
        panic!("expected an adoption, got {origin:?}");
    };
    assert_eq!(ignored.len(), 1, "{ignored:?}");
    assert_eq!(ignored[0].key, "network.vxlan-port");
    assert!(
        origin.to_string().contains("network.vxlan-port"),
        "{origin}"
    );

    // An immutable key with another value is refused with both values; nothing changes.
    let err = ensure_cluster_config(&api, Some("pod-cidr: 10.1.0.0/16\n"))
        .await
        .expect_err("immutable conflict");
    let BootstrapError::ConfigConflict { key, cluster, file } = &err else {
        panic!("expected a conflict, got {err:?}");
    };
    assert_eq!(
        (key.as_str(), cluster.as_str(), file.as_str()),
        ("pod-cidr", "10.50.0.0/16", "10.1.0.0/16"),
        "{err}"
    );
    assert_eq!(read_cluster_config(&api).await.expect("read"), Some(cfg));

    // Two nodes racing to create it both end up with the winner's config.
    delete_cluster_config(&api).await;
    let (a, b) = tokio::join!(
        ensure_cluster_config(&api, Some("dns:\n  cluster-domain: a.example\n")),
        ensure_cluster_config(&api, Some("dns:\n  cluster-domain: b.example\n")),
    );
    let ((ca, oa), (cb, ob)) = (a.expect("racer a"), b.expect("racer b"));
    assert_eq!(ca, cb, "both racers hold the same config");
    let created = [&oa, &ob]
        .iter()
        .filter(|o| ***o == ConfigOrigin::Created)
        .count();
    assert_eq!(created, 1, "exactly one racer created it: {oa:?} {ob:?}");
    let stored = read_cluster_config(&api)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(stored, ca);

    // An invalid document in the cluster is reported as such, naming the ConfigMap.
    delete_cluster_config(&api).await;
    let bad = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(CONFIGMAP_NAME.into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            CONFIGMAP_KEY.to_owned(),
            "pod-cidr: banana\n".to_owned(),
        )])),
        ..Default::default()
    };
    configmaps(&api)
        .create(&PostParams::default(), &bad)
        .await
        .expect("create an invalid ConfigMap");
    let err = ensure_cluster_config(&api, None)
        .await
        .expect_err("invalid");
    assert!(
        matches!(err, BootstrapError::ClusterConfigInvalid { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("kube-system/knet-config"), "{err}");
}

#[tokio::test]
async fn unreachable_api_server_is_one_line_naming_the_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("http://127.0.0.1:{}", closed_port());
    let api = ClusterApi::from_kubeconfig(Some(&write_kubeconfig(dir.path(), &url)))
        .await
        .expect("client from kubeconfig");
    let started = std::time::Instant::now();
    let err = ensure_cluster_config(&api, None)
        .await
        .expect_err("unreachable");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert!(
        matches!(err, BootstrapError::ApiUnreachable { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&url), "{msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");
}

#[tokio::test]
async fn bad_kubeconfig_is_reported_with_its_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("missing-kubeconfig");
    let err = ClusterApi::from_kubeconfig(Some(&path))
        .await
        .expect_err("missing");
    assert!(err.to_string().contains("missing-kubeconfig"), "{err}");
    assert!(err.to_string().contains("--kubeconfig"), "{err}");
}
