use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::json;

use super::*;
use crate::compile::compile;
use crate::model::{Cluster, PodInfo, Policy};

fn cluster() -> Cluster {
    let pod = |name: &str, ips: &[&str]| PodInfo {
        namespace: "x".into(),
        name: name.into(),
        labels: BTreeMap::from([("pod".to_owned(), name.to_owned())]),
        ips: ips.iter().map(|i| i.parse().expect("ip")).collect(),
        node: Some("n1".into()),
        host_network: false,
        ports: vec![],
    };
    let np: NetworkPolicy = serde_json::from_value(json!({
        "metadata": {"namespace": "x", "name": "web"},
        "spec": {"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}},
                                   {"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.1.0/24"]}}],
                         "ports": [{"port": 80}, {"port": 81, "endPort": 90, "protocol": "UDP"}]}],
            "egress": [{}]}
    }))
    .expect("json");
    Cluster {
        pods: vec![
            pod("a", &["10.1.0.1", "fd01::1"]),
            pod("b", &["10.1.0.2", "fd01::2"]),
        ],
        namespaces: BTreeMap::new(),
        policies: vec![Policy::from_api(&np).expect("policy")],
    }
}

#[test]
fn the_script_replaces_the_whole_table_atomically() {
    let s = render(&compile(&cluster(), "n1"));
    assert!(s.starts_with(
        "table inet knet-network-policy {}\ndelete table inet knet-network-policy\ntable inet knet-network-policy {\n"
    ));
    let forward = s.find("chain forward").expect("forward chain");
    let ct = s
        .find("ct state established,related accept")
        .expect("ct rule");
    let vmap = s.find("ip saddr vmap @egress_v4").expect("egress vmap");
    assert!(forward < ct && ct < vmap, "conntrack first:\n{s}");
    assert!(s.contains("ip6 daddr vmap @ingress_v6"));
}

#[test]
fn pods_jump_to_their_chains_by_address() {
    let s = render(&compile(&cluster(), "n1"));
    assert!(
        s.contains("elements = { 10.1.0.1 : jump ingress/x/a }"),
        "{s}"
    );
    assert!(
        s.contains("elements = { fd01::1 : jump ingress/x/a }"),
        "{s}"
    );
    assert!(
        s.contains("elements = { 10.1.0.1 : jump egress/x/a }"),
        "{s}"
    );
}

#[test]
fn rules_use_peer_sets_interval_sets_and_ports() {
    let s = render(&compile(&cluster(), "n1"));
    for want in [
        "set peer0_v4 {\n    type ipv4_addr\n    elements = { 10.1.0.2 }",
        "set peer0_v6 {\n    type ipv6_addr\n    elements = { fd01::2 }",
        "set block0_v4 {\n    type ipv4_addr\n    flags interval\n    elements = { 192.168.0.0-192.168.0.255, 192.168.2.0-192.168.255.255 }",
        "ip saddr @peer0_v4 meta l4proto tcp th dport 80 counter accept comment \"x/web ingress[0]\"",
        "ip6 saddr @peer0_v6 meta l4proto udp th dport 81-90 counter accept",
        "ip saddr @block0_v4 meta l4proto tcp th dport 80 counter accept",
        "counter drop comment \"x/a ingress: no rule of x/web allows\"",
    ] {
        assert!(s.contains(want), "missing {want:?} in\n{s}");
    }
    assert!(!s.contains("block0_v6"), "no empty IPv6 block set");
    let egress = s.split("chain egress/x/a {").nth(1).expect("egress chain");
    assert!(
        egress.starts_with("\n    counter return comment \"x/web egress[0]\""),
        "{egress}"
    );
}

#[test]
fn rendering_is_deterministic() {
    let c = cluster();
    assert_eq!(
        render(&compile(&c, "n1")),
        render(&compile(&c.clone(), "n1"))
    );
}

#[test]
fn delete_script_tolerates_a_missing_table() {
    assert_eq!(
        render_delete(),
        "table inet knet-network-policy {}\ndelete table inet knet-network-policy\n"
    );
}

#[test]
fn comments_are_bounded_and_unquoted() {
    let c = comment(&format!("a\"b{}", "é".repeat(100)));
    assert!(c.len() <= 120);
    assert!(!c.contains('"'));
}
