//! Stale UDP conntrack entries: a UDP "connection" to a Service keeps going to the endpoint it
//! was DNATed to until its conntrack entry expires, even after that endpoint is gone. Like
//! kube-proxy, delete the entries whose reply comes from a removed endpoint, and the entries of
//! a Service that had no endpoints (they were rejected; the next datagram must be translated).

use std::collections::{BTreeMap, BTreeSet};
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

/// The programmed UDP flows, counted per Service (a flow two Services program counts twice),
/// so that a per-Service change tells which flows nobody programs any more.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FlowCounts(BTreeMap<Flow, usize>);

// === impl FlowCounts ===

impl FlowCounts {
    /// The counts for every Service's ports.
    pub fn of<'a>(services: impl IntoIterator<Item = &'a [ServicePort]>) -> FlowCounts {
        let mut c = FlowCounts::default();
        for ports in services {
            for f in udp_flows(ports) {
                *c.0.entry(f).or_default() += 1;
            }
        }
        c
    }

    /// The flows counted here and not in `next`.
    pub fn gone(&self, next: &FlowCounts) -> Vec<Flow> {
        self.0
            .keys()
            .filter(|f| !next.0.contains_key(*f))
            .cloned()
            .collect()
    }

    /// Applies one Service's change from `before` to `after`; the flows nobody programs now.
    pub fn change(&mut self, before: &[ServicePort], after: &[ServicePort]) -> Vec<Flow> {
        let (old, new) = (udp_flows(before), udp_flows(after));
        for f in new.difference(&old) {
            *self.0.entry(f.clone()).or_default() += 1;
        }
        let mut gone = Vec::new();
        for f in old.difference(&new) {
            if let Some(n) = self.0.get_mut(f) {
                *n -= 1;
                if *n == 0 {
                    self.0.remove(f);
                    gone.push(f.clone());
                }
            }
        }
        gone
    }
}

/// `conntrack -D` arguments for each of `flows`.
pub fn deletions(flows: &[Flow]) -> Vec<Vec<String>> {
    flows
        .iter()
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::services::model::ServiceTable;

    fn ports(eps: &[&str]) -> Vec<ServicePort> {
        let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
            "metadata": {"namespace": "ns", "name": "dns"},
            "spec": {"clusterIP": "10.152.183.10",
                     "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}}))
        .expect("svc");
        let endpoints: Vec<_> = eps.iter().map(|ip| json!({"addresses": [ip]})).collect();
        let slice: k8s_openapi::api::discovery::v1::EndpointSlice = serde_json::from_value(json!({
                "metadata": {"namespace": "ns", "name": "dns-1",
                             "labels": {"kubernetes.io/service-name": "dns"}},
                "addressType": "IPv4",
                "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}],
                "endpoints": endpoints}))
        .expect("slice");
        ServiceTable::build([&svc], [&slice], "n", false).ports
    }

    #[test]
    fn a_flow_is_gone_when_no_service_programs_it_any_more() {
        let (a, ab) = (ports(&["10.1.0.1"]), ports(&["10.1.0.1", "10.1.0.2"]));
        // Two Services programming the same flows (the same VIP twice, as a stand-in).
        let mut c = FlowCounts::of([ab.as_slice(), a.as_slice()]);
        assert_eq!(
            c.change(&ab, &a),
            vec![Flow::Vip {
                vip: "10.152.183.10".parse().expect("ip"),
                port: 53,
                endpoint: Some("10.1.0.2".parse().expect("ip")),
            }]
        );
        assert!(
            c.change(&a, &[]).is_empty(),
            "the other Service still has 10.1.0.1"
        );
        assert_eq!(c.change(&a, &[]).len(), 1);
        assert_eq!(c, FlowCounts::default());
        assert_eq!(
            deletions(&FlowCounts::of([ab.as_slice()]).gone(&c)).len(),
            2
        );
    }
}
