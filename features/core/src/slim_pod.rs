//! [`SlimPod`]: the part of a Pod that knet's features read, and all that the shared Pod watch
//! keeps.
//!
//! A cluster has far more Pods than any other object, and `k8s_openapi`'s `Pod` spends about
//! 2.5 KB of fixed size per object plus about 1 KB per container before a single string is
//! stored. The watch deserializes each Pod straight into this type instead (serde skips the
//! rest), so every node pays a few hundred bytes per Pod in the cluster. A feature that needs
//! another Pod field adds it here: watches are per Rust type, so `watches.get::<Pod>()` would
//! start a second watch holding every full Pod next to this one.

use std::borrow::Cow;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ContainerPort, Pod, PodIP};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

/// A Pod, as far as knet's features read it.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct SlimPod {
    /// Name, namespace, labels, uid, resourceVersion, deletion timestamp.
    pub metadata: ObjectMeta,
    /// Where it runs and what it listens on.
    pub spec: Option<SlimPodSpec>,
    /// Its phase and addresses.
    pub status: Option<SlimPodStatus>,
}

/// `spec`: the node, host networking, the containers' ports.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimPodSpec {
    /// `spec.nodeName`.
    pub node_name: Option<String>,
    /// `spec.hostNetwork`.
    pub host_network: Option<bool>,
    /// `spec.containers`, name and ports only.
    #[serde(default)]
    pub containers: Vec<SlimContainer>,
}

/// One container's name and ports.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct SlimContainer {
    /// `name`.
    #[serde(default)]
    pub name: String,
    /// `ports` (named ports are what NetworkPolicy resolves).
    pub ports: Option<Vec<ContainerPort>>,
}

/// `status`: the phase and the addresses.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimPodStatus {
    /// `status.phase`.
    pub phase: Option<String>,
    /// `status.podIP`.
    #[serde(rename = "podIP")]
    pub pod_ip: Option<String>,
    /// `status.podIPs`.
    #[serde(rename = "podIPs")]
    pub pod_ips: Option<Vec<PodIP>>,
    /// `status.hostIP`.
    #[serde(rename = "hostIP")]
    pub host_ip: Option<String>,
}

impl SlimPod {
    /// The slim view of a full Pod (through its JSON form, exactly as the watch builds it).
    pub fn from_pod(pod: &Pod) -> Result<SlimPod, serde_json::Error> {
        let mut slim: SlimPod = serde_json::from_value(serde_json::to_value(pod)?)?;
        slim.trim_metadata();
        Ok(slim)
    }

    /// Keeps of the metadata only name, namespace, uid, resourceVersion, labels and the
    /// deletion timestamp.
    pub fn trim_metadata(&mut self) {
        let meta = std::mem::take(&mut self.metadata);
        self.metadata = ObjectMeta {
            name: meta.name,
            namespace: meta.namespace,
            uid: meta.uid,
            resource_version: meta.resource_version,
            labels: meta.labels,
            deletion_timestamp: meta.deletion_timestamp,
            ..ObjectMeta::default()
        };
    }
}

impl kube::Resource for SlimPod {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("Pod")
    }

    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("")
    }

    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("v1")
    }

    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("pods")
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use kube::Resource;

    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "web-1", "namespace": "shop", "uid": "u-1", "resourceVersion": "7",
                "labels": {"app": "web"},
                "annotations": {"team": "a"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "r"}]
            },
            "spec": {
                "nodeName": "node-1",
                "hostNetwork": true,
                "volumes": [{"name": "data", "emptyDir": {}}],
                "containers": [{
                    "name": "app", "image": "agnhost", "args": ["netexec"],
                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
                }, {"name": "sidecar", "image": "envoy"}]
            },
            "status": {
                "phase": "Running", "podIP": "10.1.0.5", "podIPs": [{"ip": "10.1.0.5"}, {"ip": "fd00::5"}],
                "hostIP": "192.168.0.1",
                "conditions": [{"type": "Ready", "status": "True"}]
            }
        }))
        .expect("pod")
    }

    #[test]
    fn from_pod_keeps_what_features_read() {
        let slim = SlimPod::from_pod(&pod()).expect("slim");
        assert_eq!(slim.metadata.name.as_deref(), Some("web-1"));
        assert_eq!(slim.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(slim.metadata.uid.as_deref(), Some("u-1"));
        assert_eq!(slim.metadata.resource_version.as_deref(), Some("7"));
        let labels = slim.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels.get("app").map(String::as_str), Some("web"));
        let spec = slim.spec.as_ref().expect("spec");
        assert_eq!(spec.node_name.as_deref(), Some("node-1"));
        assert_eq!(spec.host_network, Some(true));
        let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["app", "sidecar"]);
        let port = &spec.containers[0].ports.as_ref().expect("ports")[0];
        assert_eq!(
            (
                port.name.as_deref(),
                port.container_port,
                port.protocol.as_deref()
            ),
            (Some("http"), 8080, Some("TCP"))
        );
        assert_eq!(spec.containers[1].ports, None);
        let status = slim.status.as_ref().expect("status");
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(status.pod_ip.as_deref(), Some("10.1.0.5"));
        let ips: Vec<&str> = status
            .pod_ips
            .iter()
            .flatten()
            .map(|i| i.ip.as_str())
            .collect();
        assert_eq!(ips, ["10.1.0.5", "fd00::5"]);
        assert_eq!(status.host_ip.as_deref(), Some("192.168.0.1"));
    }

    #[test]
    fn from_pod_drops_the_metadata_no_feature_reads() {
        let slim = SlimPod::from_pod(&pod()).expect("slim");
        assert_eq!(slim.metadata.annotations, None);
        assert_eq!(slim.metadata.owner_references, None);
    }

    #[test]
    fn is_watched_as_core_v1_pods() {
        assert_eq!(SlimPod::api_version(&()), "v1");
        assert_eq!(SlimPod::kind(&()), "Pod");
        assert_eq!(
            SlimPod::url_path(&(), Some("shop")),
            "/api/v1/namespaces/shop/pods"
        );
        assert_eq!(SlimPod::url_path(&(), None), "/api/v1/pods");
    }

    #[test]
    fn a_minimal_pod_deserializes() {
        let slim: SlimPod =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "spec": {}}))
                .expect("slim");
        assert_eq!(slim.spec.expect("spec").containers.len(), 0);
        assert_eq!(slim.status, None);
    }
}
