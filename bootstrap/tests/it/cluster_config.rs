//! The cluster config in the Kubernetes API, against the in-process fake apiserver. The same
//! scenario functions (`knet_bootstrap::testing`) run against the lab's real apiserver.

use knet_bootstrap::{BootstrapError, ClusterApi, ConfigOrigin, ensure_cluster_config, testing};

use crate::support::apiserver::{FakeApiServer, closed_port, write_kubeconfig};

async fn api_for(server: &str, dir: &std::path::Path) -> ClusterApi {
    let kubeconfig = write_kubeconfig(dir, server);
    ClusterApi::from_kubeconfig(Some(&kubeconfig))
        .await
        .expect("client from kubeconfig")
}

#[tokio::test]
async fn create_then_adopt_scenario_against_the_fake() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = FakeApiServer::start().await;
    let api = api_for(&fake.url(), dir.path()).await;
    assert_eq!(api.server(), format!("{}/", fake.url()));
    testing::create_then_adopt(&api).await.expect("scenario");
    let requests = fake.requests.lock().expect("lock").clone();
    assert!(
        requests
            .iter()
            .any(|r| r == "POST /api/v1/namespaces/kube-system/configmaps"),
        "{requests:?}"
    );
}

#[tokio::test]
async fn stored_document_is_the_yaml_of_the_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = FakeApiServer::start().await;
    let api = api_for(&fake.url(), dir.path()).await;
    let (cfg, origin) = ensure_cluster_config(&api, Some("dns:\n  cluster-domain: corp.local\n"))
        .await
        .expect("create");
    assert_eq!(origin, ConfigOrigin::Created);
    let yaml = fake.config_yaml().expect("stored");
    assert_eq!(
        knet_core::config::ClusterConfig::from_yaml(&yaml).expect("parse"),
        cfg
    );
    assert!(yaml.contains("cluster-domain: corp.local"), "{yaml}");
    let labels = fake.objects.lock().expect("lock")["knet-config"]["metadata"]["labels"].clone();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "knet");
}

#[tokio::test]
async fn invalid_config_in_the_cluster_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = FakeApiServer::start().await;
    fake.objects.lock().expect("lock").insert(
        "knet-config".into(),
        serde_json::json!({"apiVersion":"v1","kind":"ConfigMap",
            "metadata":{"name":"knet-config","namespace":"kube-system"},
            "data":{"config.yaml":"pod-cidr: banana\n"}}),
    );
    let api = api_for(&fake.url(), dir.path()).await;
    let err = ensure_cluster_config(&api, None)
        .await
        .expect_err("invalid");
    assert!(
        matches!(err, BootstrapError::ClusterConfigInvalid { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("kube-system/knet-config"), "{err}");
}

#[tokio::test]
async fn unreachable_api_server_is_one_line_naming_the_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("http://127.0.0.1:{}", closed_port());
    let api = api_for(&url, dir.path()).await;
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
