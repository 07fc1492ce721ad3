//! healthCheckNodePort servers: for a LoadBalancer Service with externalTrafficPolicy Local,
//! an HTTP server on the node answers `200` while the node has a local endpoint and `503`
//! otherwise, with kube-proxy's JSON body (`localEndpoints`), so a load balancer only sends
//! traffic to nodes that can serve it without a second hop.

use std::collections::BTreeMap;
use std::net::{Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::ServicesError;
use super::model::ServicePort;
use crate::kernel::in_netns;

/// What one health port reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// `namespace/name`.
    pub service: String,
    /// Local endpoints (the largest over the Service's ports).
    pub local_endpoints: usize,
}

struct Server {
    service: String,
    count: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

/// The running servers, one per healthCheckNodePort.
#[derive(Default)]
pub struct HealthServers {
    netns: Option<PathBuf>,
    servers: BTreeMap<u16, Server>,
}

impl std::fmt::Debug for HealthServers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthServers")
            .field("ports", &self.servers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The health ports these service ports ask for.
pub fn wanted<'a>(ports: impl IntoIterator<Item = &'a ServicePort>) -> BTreeMap<u16, Health> {
    let mut out: BTreeMap<u16, Health> = BTreeMap::new();
    for p in ports {
        if let Some(port) = p.health_check_node_port {
            let h = out.entry(port).or_insert_with(|| Health {
                service: format!("{}/{}", p.key.namespace, p.key.name),
                local_endpoints: 0,
            });
            h.local_endpoints = h.local_endpoints.max(p.local_endpoints);
        }
    }
    out
}

/// The HTTP answer for a count.
pub fn response(service: &str, local: usize) -> String {
    let (ns, name) = service.split_once('/').unwrap_or(("", service));
    let body = serde_json::json!({
        "service": {"namespace": ns, "name": name},
        "localEndpoints": local,
        "serviceProxyHealthy": true,
    })
    .to_string();
    let status = if local > 0 {
        "200 OK"
    } else {
        "503 Service Unavailable"
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nX-Content-Type-Options: nosniff\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

// === impl HealthServers ===

impl HealthServers {
    /// Servers bound in `netns` (the daemon's own namespace when `None`).
    pub fn new(netns: Option<&Path>) -> HealthServers {
        HealthServers {
            netns: netns.map(Path::to_path_buf),
            servers: BTreeMap::new(),
        }
    }

    /// Starts, stops and updates servers to match `wanted`.
    pub async fn sync(&mut self, wanted: &BTreeMap<u16, Health>) {
        let gone: Vec<u16> = self
            .servers
            .iter()
            .filter(|(p, s)| wanted.get(*p).is_none_or(|h| h.service != s.service))
            .map(|(p, _)| *p)
            .collect();
        for p in gone {
            if let Some(s) = self.servers.remove(&p) {
                s.task.abort();
            }
        }
        for (port, h) in wanted {
            if let Some(s) = self.servers.get(port) {
                s.count.store(h.local_endpoints, Ordering::Relaxed);
                continue;
            }
            match bind(self.netns.as_deref(), *port).await {
                Ok(listener) => {
                    let count = Arc::new(AtomicUsize::new(h.local_endpoints));
                    let task = tokio::spawn(serve(listener, h.service.clone(), count.clone()));
                    self.servers.insert(
                        *port,
                        Server {
                            service: h.service.clone(),
                            count,
                            task,
                        },
                    );
                }
                Err(error) => {
                    tracing::warn!(%error, port, service = %h.service, "cannot serve the health check port");
                }
            }
        }
    }

    /// Stops every server.
    pub fn stop(&mut self) {
        for (_, s) in std::mem::take(&mut self.servers) {
            s.task.abort();
        }
    }
}

impl Drop for HealthServers {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn bind(netns: Option<&Path>, port: u16) -> Result<TcpListener, ServicesError> {
    // [::] with IPV6_V6ONLY off also takes IPv4 connections.
    let addr = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
    let std_listener = match netns {
        None => std::net::TcpListener::bind(addr),
        Some(path) => in_netns(path, move || std::net::TcpListener::bind(addr)).await?,
    }
    .map_err(|e| ServicesError::Exec(format!("binding health check port {port}: {e}")))?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| ServicesError::Exec(e.to_string()))?;
    TcpListener::from_std(std_listener).map_err(|e| ServicesError::Exec(e.to_string()))
}

async fn serve(listener: TcpListener, service: String, count: Arc<AtomicUsize>) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            // Out of descriptors or similar: do not spin.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let answer = response(&service, count.load(Ordering::Relaxed));
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            // Read (part of) the request, bounded, then answer whatever it was.
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(2), conn.read(&mut buf)).await;
            let _ = conn.write_all(answer.as_bytes()).await;
            let _ = conn.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_200_with_local_endpoints_and_503_without() {
        let ok = response("ns/web", 2);
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(ok.ends_with(r#""localEndpoints":2,"service":{"name":"web","namespace":"ns"},"serviceProxyHealthy":true}"#), "{ok}");
        assert!(response("ns/web", 0).starts_with("HTTP/1.1 503"));
    }
}
