//! Stale UDP conntrack entries: a UDP "connection" to a Service keeps going to the endpoint it
//! was DNATed to until its conntrack entry expires, even after that endpoint is gone. Like
//! kube-proxy, delete the entries whose reply comes from a removed endpoint, and the entries of
//! a Service that had no endpoints (they were rejected; the next datagram must be translated).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;

use super::exec::run;
use super::model::{Proto, ServicePort, Target};

/// One (front address or NodePort, endpoint) pair of a UDP Service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Flow {
    /// Traffic to `vip:port` translated to `endpoint`.
    Vip {
        /// Service address.
        vip: IpAddr,
        /// Service port.
        port: u16,
        /// Endpoint address (None: the Service rejected).
        endpoint: Option<IpAddr>,
    },
    /// Traffic to a NodePort translated to `endpoint`.
    NodePort {
        /// The NodePort.
        port: u16,
        /// Endpoint address (None: the Service rejected).
        endpoint: Option<IpAddr>,
    },
}

/// Every UDP flow these service ports program.
pub fn udp_flows<'a>(ports: impl IntoIterator<Item = &'a ServicePort>) -> BTreeSet<Flow> {
    let mut out = BTreeSet::new();
    for p in ports.into_iter().filter(|p| p.key.proto == Proto::Udp) {
        let eps = |t: &Target| -> Vec<Option<IpAddr>> {
            match t {
                Target::Endpoints(e) => e.iter().map(|e| Some(e.ip)).collect(),
                Target::Reject => vec![None],
                Target::Drop => Vec::new(),
            }
        };
        for endpoint in eps(&p.cluster) {
            if let Some(vip) = p.cluster_ip {
                out.insert(Flow::Vip {
                    vip,
                    port: p.port,
                    endpoint,
                });
            }
        }
        for endpoint in eps(&p.external) {
            for vip in &p.external_ips {
                out.insert(Flow::Vip {
                    vip: *vip,
                    port: p.port,
                    endpoint,
                });
            }
            if let Some(port) = p.node_port {
                out.insert(Flow::NodePort { port, endpoint });
            }
        }
    }
    out
}

/// `conntrack -D` arguments for each flow that was programmed before and is not any more.
pub fn stale(prev: &BTreeSet<Flow>, next: &BTreeSet<Flow>) -> Vec<Vec<String>> {
    prev.difference(next)
        .map(|f| {
            let mut a: Vec<String> = vec!["-D".into(), "-p".into(), "udp".into()];
            let (endpoint, rest): (Option<IpAddr>, Vec<String>) = match f {
                Flow::Vip {
                    vip,
                    port,
                    endpoint,
                } => (
                    *endpoint,
                    vec![
                        "--orig-dst".into(),
                        vip.to_string(),
                        "--orig-port-dst".into(),
                        port.to_string(),
                    ],
                ),
                Flow::NodePort { port, endpoint } => {
                    (*endpoint, vec!["--orig-port-dst".into(), port.to_string()])
                }
            };
            a.extend(rest);
            if let Some(ep) = endpoint {
                a.push("--reply-src".into());
                a.push(ep.to_string());
            }
            if endpoint.is_some_and(|e| e.is_ipv6())
                || matches!(f, Flow::Vip { vip, .. } if vip.is_ipv6())
            {
                a.push("-f".into());
                a.push("ipv6".into());
            }
            a
        })
        .collect()
}

/// Runs the deletions (best effort: "0 flow entries" exits 1 and is fine).
pub async fn flush(netns: Option<&Path>, deletions: &[Vec<String>]) {
    for args in deletions {
        let mut argv: Vec<&str> = vec!["conntrack"];
        argv.extend(args.iter().map(String::as_str));
        match run(netns, &argv, "").await {
            Ok(out) => tracing::debug!(
                args = %args.join(" "),
                stderr = %String::from_utf8_lossy(&out.stderr).trim(),
                "conntrack flush"
            ),
            Err(error) => tracing::warn!(%error, "cannot flush stale UDP conntrack entries"),
        }
    }
}
