//! The upstream e2e model: namespaces x, y, z (label `ns: <name>`), pods a, b, c (label
//! `pod: <name>`) each serving TCP and UDP on ports 80 and 81, named `serve-<port>-<proto>`.
//! Pods a and b run on node-1, pod c on node-2, so every case mixes same-node and cross-node
//! traffic.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use k8s_openapi::api::core::v1::Namespace;
use knet_core::slim_pod::SlimPod;
use serde_json::{Value, json};

pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
pub const PODS: [&str; 3] = ["a", "b", "c"];
pub const NODES: [&str; 2] = ["node-1", "node-2"];

/// One pod of the model.
#[derive(Debug, Clone)]
pub struct ModelPod {
    pub ns: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub ip: Ipv4Addr,
    /// The pod's IPv6 address in the netns harness (`None` in the lab, which is single-stack).
    pub ip6: Option<Ipv6Addr>,
    pub node: &'static str,
    pub index: usize,
}

/// The model's mutable state: labels change in some cases.
#[derive(Debug, Clone)]
pub struct Model {
    pub pods: Vec<ModelPod>,
    pub ns_labels: BTreeMap<String, BTreeMap<String, String>>,
}

impl ModelPod {
    pub fn key(&self) -> String {
        format!("{}/{}", self.ns, self.name)
    }

    /// Named ports every pod serves.
    pub fn named_port(&self, name: &str, proto: &str) -> Option<u16> {
        let (p, pr) = match name {
            "serve-80-tcp" => (80, "TCP"),
            "serve-80-udp" => (80, "UDP"),
            "serve-81-tcp" => (81, "TCP"),
            "serve-81-udp" => (81, "UDP"),
            _ => return None,
        };
        (pr == proto).then_some(p)
    }
}

impl Model {
    pub fn new() -> Model {
        let mut pods = Vec::new();
        let mut ns_labels = BTreeMap::new();
        for (n, ns) in NAMESPACES.iter().enumerate() {
            let mut l = BTreeMap::new();
            l.insert("ns".to_owned(), (*ns).to_owned());
            l.insert("kubernetes.io/metadata.name".to_owned(), (*ns).to_owned());
            ns_labels.insert((*ns).to_owned(), l);
            for (p, pod) in PODS.iter().enumerate() {
                let index = n * 3 + p;
                pods.push(ModelPod {
                    ns: (*ns).to_owned(),
                    name: (*pod).to_owned(),
                    labels: BTreeMap::from([("pod".to_owned(), (*pod).to_owned())]),
                    ip: Ipv4Addr::new(10, 99, 0, 10 + u8::try_from(index).expect("small")),
                    ip6: Some(Ipv6Addr::new(
                        0xfd99,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0,
                        10 + u16::try_from(index).expect("small"),
                    )),
                    node: if p == 2 { NODES[1] } else { NODES[0] },
                    index,
                });
            }
        }
        Model { pods, ns_labels }
    }

    /// Uses the addresses the cluster actually gave the pods.
    pub fn set_ip(&mut self, key: &str, ip: Ipv4Addr) {
        let p = self.pod_mut(key);
        p.ip = ip;
        p.ip6 = None;
    }

    pub fn pod(&self, key: &str) -> &ModelPod {
        self.pods
            .iter()
            .find(|p| p.key() == key)
            .expect("model pod")
    }

    pub fn pod_mut(&mut self, key: &str) -> &mut ModelPod {
        self.pods
            .iter_mut()
            .find(|p| p.key() == key)
            .expect("model pod")
    }

    /// The model's pods as the shared Pod watch stores them.
    pub fn api_pods(&self) -> Vec<SlimPod> {
        self.pods
            .iter()
            .map(|p| {
                let ports: Vec<Value> = [(80, "TCP"), (80, "UDP"), (81, "TCP"), (81, "UDP")]
                    .iter()
                    .map(|(n, pr)| json!({"name": format!("serve-{n}-{}", pr.to_lowercase()), "containerPort": n, "protocol": pr}))
                    .collect();
                serde_json::from_value(json!({
                    "metadata": {"namespace": p.ns, "name": p.name, "labels": p.labels},
                    "spec": {"nodeName": p.node, "containers": [{"name": "c", "ports": ports}]},
                    "status": {"phase": "Running", "podIP": p.ip.to_string(),
                               "podIPs": std::iter::once(p.ip.to_string()).chain(p.ip6.map(|i| i.to_string())).map(|ip| json!({"ip": ip})).collect::<Vec<_>>()},
                }))
                .expect("pod json")
            })
            .collect()
    }

    pub fn api_namespaces(&self) -> Vec<Namespace> {
        self.ns_labels
            .iter()
            .map(|(n, l)| {
                serde_json::from_value(json!({"metadata": {"name": n, "labels": l}}))
                    .expect("ns json")
            })
            .collect()
    }
}
