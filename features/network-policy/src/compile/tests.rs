use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::{Value, json};

use super::*;
use crate::model::{NamedPort, PodInfo, Policy};

fn pod(ns: &str, name: &str, ip: &str, node: &str) -> PodInfo {
    PodInfo {
        namespace: ns.into(),
        name: name.into(),
        labels: BTreeMap::from([("pod".to_owned(), name.to_owned())]),
        ips: vec![ip.parse().expect("ip")],
        node: Some(node.into()),
        host_network: false,
        ports: vec![NamedPort {
            name: "serve-80-tcp".into(),
            proto: Proto::Tcp,
            port: 80,
        }],
    }
}

fn policy(ns: &str, name: &str, spec: Value) -> Policy {
    let np: NetworkPolicy = serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"namespace": ns, "name": name}, "spec": spec,
    }))
    .expect("policy json");
    Policy::from_api(&np).expect("policy")
}

/// x/a, x/b on node-1; y/a on node-2; z/c on node-1 (10.0.0.0/24 and fd00::/64).
fn cluster(policies: Vec<Policy>) -> Cluster {
    let mut namespaces = BTreeMap::new();
    for ns in ["x", "y", "z"] {
        namespaces.insert(
            ns.to_owned(),
            BTreeMap::from([("ns".to_owned(), ns.to_owned())]),
        );
    }
    let mut za = pod("z", "c", "10.0.0.5", "node-1");
    za.ips.push("fd00::5".parse().expect("ip"));
    Cluster {
        pods: vec![
            pod("x", "a", "10.0.0.1", "node-1"),
            pod("x", "b", "10.0.0.2", "node-1"),
            pod("y", "a", "10.0.0.3", "node-2"),
            za,
        ],
        namespaces,
        policies,
    }
}

fn chain<'a>(plan: &'a Plan, name: &str) -> &'a PodChain {
    plan.chains
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no chain {name} in {:?}", plan.chains))
}

#[test]
fn without_policies_nothing_is_isolated() {
    let plan = compile(&cluster(vec![]), "node-1");
    assert!(plan.chains.is_empty());
    assert_eq!(plan.isolated_pods(), 0);
}

#[test]
fn default_deny_ingress_isolates_only_local_pods_of_the_namespace() {
    let plan = compile(
        &cluster(vec![policy("x", "deny", json!({"podSelector": {}}))]),
        "node-1",
    );
    let names: Vec<&str> = plan.chains.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["ingress/x/a", "ingress/x/b"]);
    assert!(chain(&plan, "ingress/x/a").rules.is_empty());
    let other = compile(
        &cluster(vec![policy("y", "deny", json!({"podSelector": {}}))]),
        "node-1",
    );
    assert!(other.chains.is_empty(), "y/a runs on node-2");
}

#[test]
fn policy_types_are_inferred_like_the_api_server() {
    let egress_rules =
        json!({"podSelector": {}, "egress": [{"ports": [{"port": 53, "protocol": "UDP"}]}]});
    let plan = compile(&cluster(vec![policy("x", "p", egress_rules)]), "node-1");
    let dirs: BTreeSet<Direction> = plan.chains.iter().map(|c| c.direction).collect();
    assert_eq!(
        dirs,
        BTreeSet::from([Direction::Ingress, Direction::Egress])
    );
    let only_egress = json!({"podSelector": {}, "policyTypes": ["Egress"]});
    let plan = compile(&cluster(vec![policy("x", "p", only_egress)]), "node-1");
    assert!(plan.chains.iter().all(|c| c.direction == Direction::Egress));
    let empty_egress = json!({"podSelector": {}, "egress": []});
    let plan = compile(&cluster(vec![policy("x", "p", empty_egress)]), "node-1");
    assert!(
        plan.chains
            .iter()
            .all(|c| c.direction == Direction::Ingress)
    );
}

#[test]
fn pod_and_namespace_selectors_build_peer_sets() {
    let p = policy(
        "x",
        "p",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [
            {"podSelector": {"matchLabels": {"pod": "b"}}},
            {"namespaceSelector": {"matchLabels": {"ns": "y"}}},
            {"namespaceSelector": {"matchExpressions": [{"key": "ns", "operator": "In", "values": ["z"]}]},
             "podSelector": {"matchLabels": {"pod": "c"}}},
        ]}]}),
    );
    let plan = compile(&cluster(vec![p]), "node-1");
    let c = chain(&plan, "ingress/x/a");
    assert_eq!(c.rules.len(), 3);
    let members: Vec<(Vec<String>, Vec<String>)> = c
        .rules
        .iter()
        .map(|r| match r.peer {
            PeerMatch::Set(i) => (
                plan.sets[i].v4.iter().map(ToString::to_string).collect(),
                plan.sets[i].v6.iter().map(ToString::to_string).collect(),
            ),
            ref other => panic!("expected a set, got {other:?}"),
        })
        .collect();
    assert_eq!(members[0], (vec!["10.0.0.2".to_owned()], vec![]));
    assert_eq!(members[1], (vec!["10.0.0.3".to_owned()], vec![]));
    assert_eq!(
        members[2],
        (vec!["10.0.0.5".to_owned()], vec!["fd00::5".to_owned()])
    );
    assert!(c.rules.iter().all(|r| r.port == PortMatch::Any));
}

#[test]
fn selectors_matching_nobody_admit_nobody() {
    let p = policy(
        "x",
        "p",
        json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "nope"}}}]}]}),
    );
    let plan = compile(&cluster(vec![p]), "node-1");
    assert!(chain(&plan, "ingress/x/a").rules.is_empty());
}

#[test]
fn identical_selectors_share_one_set() {
    let spec = json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]});
    let plan = compile(
        &cluster(vec![
            policy("x", "p1", spec.clone()),
            policy("x", "p2", spec),
        ]),
        "node-1",
    );
    assert_eq!(plan.sets.len(), 1);
    assert_eq!(
        chain(&plan, "ingress/x/a").rules.len(),
        2,
        "one rule per policy"
    );
}

#[test]
fn ip_blocks_with_except_become_ranges() {
    let p = policy(
        "x",
        "p",
        json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/24", "except": ["10.0.0.2/32"]}}]}]}),
    );
    let plan = compile(&cluster(vec![p]), "node-1");
    assert_eq!(plan.blocks.len(), 1);
    let r = &plan.blocks[0].ranges;
    assert!(r.contains("10.0.0.1".parse().expect("ip")));
    assert!(!r.contains("10.0.0.2".parse().expect("ip")));
    assert_eq!(plan.blocks[0].about, "10.0.0.0/24 except 10.0.0.2/32");
}

#[test]
fn ports_numbers_ranges_protocols_and_named_ports_on_ingress() {
    let p = policy(
        "x",
        "p",
        json!({"podSelector": {}, "ingress": [{"ports": [
            {"port": 80},
            {"port": 81, "protocol": "UDP"},
            {"port": 8000, "endPort": 9000, "protocol": "SCTP"},
            {"protocol": "UDP"},
            {"port": "serve-80-tcp"},
            {"port": "serve-80-tcp", "protocol": "UDP"},
            {"port": 80, "protocol": "ICMP"},
        ]}]}),
    );
    let plan = compile(&cluster(vec![p]), "node-1");
    let ports: Vec<PortMatch> = chain(&plan, "ingress/x/a")
        .rules
        .iter()
        .map(|r| r.port)
        .collect();
    assert_eq!(
        ports,
        [
            PortMatch::Range(Proto::Tcp, 80, 80),
            PortMatch::Range(Proto::Udp, 81, 81),
            PortMatch::Range(Proto::Sctp, 8000, 9000),
            PortMatch::Proto(Proto::Udp),
            PortMatch::Range(Proto::Tcp, 80, 80),
        ],
        "a named port resolves with its protocol; unknown protocols match nothing"
    );
}

#[test]
fn a_rule_whose_ports_all_fail_to_resolve_admits_nothing() {
    let p = policy(
        "x",
        "p",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": "no-such-port"}]}]}),
    );
    let plan = compile(&cluster(vec![p]), "node-1");
    assert!(chain(&plan, "ingress/x/a").rules.is_empty());
}

#[test]
fn egress_named_ports_resolve_per_destination_pod() {
    let mut c = cluster(vec![policy(
        "x",
        "p",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"], "egress": [
            {"to": [{"namespaceSelector": {}}], "ports": [{"port": "serve-80-tcp"}]}]}),
    )]);
    c.pods[2].ports[0].port = 8080;
    let plan = compile(&c, "node-1");
    let ch = chain(&plan, "egress/x/a");
    assert_eq!(ch.rules.len(), 1);
    let PeerMatch::Endpoints(eps) = &ch.rules[0].peer else {
        panic!("expected endpoints, got {:?}", ch.rules[0].peer)
    };
    let shown: Vec<String> = eps
        .iter()
        .map(|(ip, p, n)| format!("{ip}/{}/{n}", p.as_str()))
        .collect();
    assert_eq!(
        shown,
        [
            "10.0.0.1/tcp/80",
            "10.0.0.2/tcp/80",
            "10.0.0.3/tcp/8080",
            "10.0.0.5/tcp/80",
            "fd00::5/tcp/80"
        ]
    );
}

#[test]
fn host_network_pods_are_neither_targets_nor_peers() {
    let mut c = cluster(vec![policy(
        "x",
        "p",
        json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}),
    )]);
    c.pods[1].host_network = true;
    let plan = compile(&c, "node-1");
    assert_eq!(plan.chains.len(), 1);
    assert_eq!(
        plan.sets[0].v4,
        vec!["10.0.0.1".parse::<Ipv4Addr>().expect("ip")]
    );
}

#[test]
fn malformed_peers_and_ports_fail_closed() {
    let p = policy(
        "x",
        "p",
        json!({"podSelector": {}, "ingress": [
            {"from": [{"ipBlock": {"cidr": "not-a-cidr"}}]},
            {"ports": [{"port": 0}]},
            {"ports": [{"port": 90, "endPort": 80}]},
        ]}),
    );
    let plan = compile(&cluster(vec![p]), "node-1");
    assert!(chain(&plan, "ingress/x/a").rules.is_empty());
}

#[test]
fn long_names_are_cut_and_stay_unique() {
    let mut a = pod("x", &"a".repeat(250), "10.0.0.9", "node-1");
    a.labels.clear();
    let name = chain_name(Direction::Ingress, &a);
    assert!(name.len() <= MAX_CHAIN_NAME);
    a.name.push('b');
    assert_ne!(name, chain_name(Direction::Ingress, &a));
}
