//! What the shared watches drop from each object before storing it: `managedFields` and the
//! `kubectl.kubernetes.io/last-applied-configuration` annotation (a copy of the whole object)
//! from every kind, and from [`SlimPod`]s every piece of metadata no feature reads.

use std::any::Any;

use kube::Resource;

use crate::slim_pod::SlimPod;

/// The annotation `kubectl apply` fills with the object it applied.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops from `obj` what no feature reads, before the shared store keeps it.
pub fn slim<K: Resource + 'static>(obj: &mut K) {
    if let Some(pod) = (obj as &mut dyn Any).downcast_mut::<SlimPod>() {
        pod.trim_metadata();
        return;
    }
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Service;

    use super::*;

    #[test]
    fn annotations_stay_but_not_the_applied_copy_nor_managed_fields() {
        let mut s: Service = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "web", "namespace": "shop",
                "annotations": {LAST_APPLIED: "{...}", "service.kubernetes.io/topology-mode": "Auto"},
                "managedFields": [{"manager": "kubectl"}]
            },
            "spec": {"ports": [{"port": 80}]}
        }))
        .expect("service");
        slim(&mut s);
        let annotations = s.metadata.annotations.expect("annotations kept");
        assert_eq!(annotations.len(), 1);
        assert_eq!(
            annotations
                .get("service.kubernetes.io/topology-mode")
                .map(String::as_str),
            Some("Auto")
        );
        assert_eq!(s.metadata.managed_fields, None);
        assert!(s.spec.is_some());
    }

    #[test]
    fn a_watched_pod_keeps_only_the_metadata_features_read() {
        let mut p: SlimPod = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "web-1", "namespace": "shop", "labels": {"app": "web"},
                "annotations": {"team": "a"}, "managedFields": [{"manager": "kubelet"}]
            }
        }))
        .expect("pod");
        slim(&mut p);
        assert_eq!(p.metadata.name.as_deref(), Some("web-1"));
        assert_eq!(p.metadata.namespace.as_deref(), Some("shop"));
        assert!(p.metadata.labels.is_some());
        assert_eq!(p.metadata.annotations, None);
        assert_eq!(p.metadata.managed_fields, None);
    }
}
