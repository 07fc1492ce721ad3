//! Reading and creating the ConfigMap. Every call is bounded by [`API_TIMEOUT`]; a transport
//! failure becomes [`BootstrapError::ApiUnreachable`] naming the server.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use knet_core::config::ClusterConfig;
use kube::api::{ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Config};

use super::{CONFIGMAP_KEY, CONFIGMAP_NAME, CONFIGMAP_NAMESPACE, ConfigDecision, ConfigOrigin};
use crate::BootstrapError;

/// The longest one API call may take.
pub const API_TIMEOUT: Duration = Duration::from_secs(20);

/// A Kubernetes client and the server URL it talks to (for messages).
#[derive(Clone)]
pub struct ClusterApi {
    client: kube::Client,
    server: String,
}

impl std::fmt::Debug for ClusterApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterApi")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

// === impl ClusterApi ===

impl ClusterApi {
    /// Wraps an existing client (the lab builds its own).
    pub fn new(client: kube::Client, server: impl Into<String>) -> ClusterApi {
        ClusterApi {
            client,
            server: server.into(),
        }
    }

    /// A client from a kubeconfig file; `None` infers one (`KUBECONFIG`, `~/.kube/config`,
    /// in-cluster). Nothing is contacted yet.
    pub async fn from_kubeconfig(path: Option<&Path>) -> Result<ClusterApi, BootstrapError> {
        let shown = path.map_or_else(
            || "(KUBECONFIG, ~/.kube/config or in-cluster)".to_owned(),
            |p| p.display().to_string(),
        );
        let bad = |reason: String| BootstrapError::Kubeconfig {
            path: shown.clone(),
            reason,
        };
        let mut config = match path {
            Some(p) => {
                let kc = Kubeconfig::read_from(p).map_err(|e| bad(e.to_string()))?;
                Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                    .await
                    .map_err(|e| bad(e.to_string()))?
            }
            None => Config::infer().await.map_err(|e| bad(e.to_string()))?,
        };
        config.connect_timeout = Some(Duration::from_secs(10));
        config.read_timeout = Some(API_TIMEOUT);
        let server = config.cluster_url.to_string();
        let client = kube::Client::try_from(config).map_err(|e| bad(e.to_string()))?;
        Ok(ClusterApi { client, server })
    }

    /// The client.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The API server URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    fn configmaps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), CONFIGMAP_NAMESPACE)
    }

    fn error(&self, action: &str, err: kube::Error) -> BootstrapError {
        match err {
            kube::Error::Api(status) => BootstrapError::Api {
                server: self.server.clone(),
                action: action.to_owned(),
                reason: if status.is_forbidden() {
                    format!(
                        "{} (the kubeconfig's user needs get/create on ConfigMaps in {CONFIGMAP_NAMESPACE})",
                        status.message
                    )
                } else {
                    status.message
                },
            },
            other => BootstrapError::ApiUnreachable {
                server: self.server.clone(),
                reason: error_chain(&other),
            },
        }
    }

    fn timeout(&self) -> BootstrapError {
        BootstrapError::ApiUnreachable {
            server: self.server.clone(),
            reason: format!("no answer within {API_TIMEOUT:?}"),
        }
    }
}

/// The cluster's config, or `None` if no node has bootstrapped yet.
pub async fn read_cluster_config(
    api: &ClusterApi,
) -> Result<Option<ClusterConfig>, BootstrapError> {
    let action = format!("reading ConfigMap {CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME}");
    let cm = tokio::time::timeout(API_TIMEOUT, api.configmaps().get_opt(CONFIGMAP_NAME))
        .await
        .map_err(|_| api.timeout())?
        .map_err(|e| api.error(&action, e))?;
    let Some(cm) = cm else {
        return Ok(None);
    };
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get(CONFIGMAP_KEY))
        .map(String::as_str)
        .unwrap_or_default();
    ClusterConfig::from_yaml(text).map(Some).map_err(|source| {
        BootstrapError::ClusterConfigInvalid {
            server: api.server.clone(),
            source,
        }
    })
}

/// Creates the ConfigMap from `--file` (or defaults) if the cluster has none, else adopts the
/// cluster's config (see [`super::decide`]). Two nodes racing to create it both end up with
/// the one that won.
pub async fn ensure_cluster_config(
    api: &ClusterApi,
    file_text: Option<&str>,
) -> Result<(ClusterConfig, ConfigOrigin), BootstrapError> {
    // Validate the file before contacting anything.
    super::decide(None, file_text)?;
    for _ in 0..3 {
        let current = read_cluster_config(api).await?;
        match super::decide(current.as_ref(), file_text)? {
            ConfigDecision::Adopt { config, ignored } => {
                return Ok((config, ConfigOrigin::Adopted { ignored }));
            }
            ConfigDecision::Create(config) => {
                if create(api, &config).await? {
                    return Ok((config, ConfigOrigin::Created));
                }
                tracing::info!("another node created the cluster config first; adopting it");
            }
        }
    }
    Err(BootstrapError::Api {
        server: api.server.clone(),
        action: format!("creating ConfigMap {CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME}"),
        reason: "it exists but cannot be read back; retry knet bootstrap".into(),
    })
}

/// Creates the ConfigMap; `false` if it already existed.
async fn create(api: &ClusterApi, config: &ClusterConfig) -> Result<bool, BootstrapError> {
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(CONFIGMAP_NAME.into()),
            namespace: Some(CONFIGMAP_NAMESPACE.into()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_owned(),
                "knet".to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            CONFIGMAP_KEY.to_owned(),
            config.to_yaml(),
        )])),
        ..ConfigMap::default()
    };
    let action = format!("creating ConfigMap {CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME}");
    match tokio::time::timeout(
        API_TIMEOUT,
        api.configmaps().create(&PostParams::default(), &cm),
    )
    .await
    .map_err(|_| api.timeout())?
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.is_already_exists() || s.is_conflict() => Ok(false),
        Err(e) => Err(api.error(&action, e)),
    }
}

/// `err: cause: cause`, on one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ").replace('\n', " ")
}
