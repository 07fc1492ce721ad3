//! The `kube-system/knet-dns` Service: it reserves the cluster DNS IP in the API server's
//! allocator, so no other Service gets it, and gives it a name. It has no selector and no
//! endpoints: every node answers on that IP itself.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use tokio_util::sync::CancellationToken;

/// Namespace of the Service.
pub const NAMESPACE: &str = "kube-system";
/// Name of the Service.
pub const NAME: &str = "knet-dns";
/// Marks the Service as ours.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "knet");
/// Tells service proxies (kube-proxy, and knet's own) not to program this Service: its IP is
/// answered locally on every node, not load-balanced to endpoints (it has none).
pub const PROXY_NAME: (&str, &str) = ("service.kubernetes.io/service-proxy-name", "knet-dns");

/// The Service we want for `ip`.
pub fn desired(ip: IpAddr) -> Service {
    let port = |proto: &str| ServicePort {
        name: Some(format!("dns-{}", proto.to_ascii_lowercase())),
        protocol: Some(proto.to_string()),
        port: 53,
        ..ServicePort::default()
    };
    let family = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
    Service {
        metadata: ObjectMeta {
            name: Some(NAME.into()),
            namespace: Some(NAMESPACE.into()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
                (PROXY_NAME.0.to_string(), PROXY_NAME.1.to_string()),
                ("kubernetes.io/name".to_string(), "knet-dns".to_string()),
            ])),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: Some(ip.to_string()),
            cluster_ips: Some(vec![ip.to_string()]),
            ip_families: Some(vec![family.into()]),
            ports: Some(vec![port("UDP"), port("TCP")]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn cluster_ip(svc: &Service) -> Option<&str> {
    svc.spec.as_ref()?.cluster_ip.as_deref()
}

/// Whether knet created this Service.
pub fn is_ours(svc: &Service) -> bool {
    svc.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY.0))
        .is_some_and(|v| v == MANAGED_BY.1)
}

/// Makes sure the Service exists with `ip`. Every node does this; the first create wins and the
/// others see 409 (fine). A Service of ours with another IP (the config changed) is replaced;
/// someone else's Service of that name is left alone, with a warning.
pub async fn ensure(client: kube::Client, ip: IpAddr) -> Result<(), kube::Error> {
    let api: Api<Service> = Api::namespaced(client, NAMESPACE);
    if let Some(existing) = api.get_opt(NAME).await? {
        let want = ip.to_string();
        if cluster_ip(&existing) == Some(want.as_str()) {
            return Ok(());
        }
        if !is_ours(&existing) {
            tracing::warn!(
                service = %format!("{NAMESPACE}/{NAME}"),
                "a Service not created by knet has this name; leaving it alone"
            );
            return Ok(());
        }
        tracing::info!(ip = %ip, "dns service IP changed; recreating kube-system/knet-dns");
        match api.delete(NAME, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    match api.create(&PostParams::default(), &desired(ip)).await {
        Ok(_) => {
            tracing::info!(ip = %ip, "created Service kube-system/knet-dns");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.is_already_exists() || s.is_conflict() => Ok(()),
        Err(e) => Err(e),
    }
}

/// [`ensure`] until `stop` is cancelled: retried with backoff after a failure, and re-checked
/// every 30 s after a success, so a Service deleted by someone else (an operator, or
/// `knet reset` on another node) comes back while any node serves DNS.
pub async fn keep_ensured(client: kube::Client, ip: IpAddr, stop: CancellationToken) {
    const RECHECK: Duration = Duration::from_secs(30);
    let mut delay = Duration::from_secs(1);
    loop {
        match ensure(client.clone(), ip).await {
            Ok(()) => delay = RECHECK,
            Err(error) => {
                tracing::warn!(%error, "cannot ensure Service kube-system/knet-dns; retrying")
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desired_service_reserves_the_ip() {
        let svc = desired("10.152.183.10".parse().expect("ip"));
        let spec = svc.spec.as_ref().expect("spec");
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.152.183.10"));
        assert!(spec.selector.is_none(), "selector-less: no endpoints");
        let ports: Vec<(String, i32)> = spec
            .ports
            .iter()
            .flatten()
            .map(|p| (p.protocol.clone().unwrap_or_default(), p.port))
            .collect();
        assert_eq!(
            ports,
            vec![("UDP".to_string(), 53), ("TCP".to_string(), 53)]
        );
        assert!(is_ours(&svc));
    }
}
