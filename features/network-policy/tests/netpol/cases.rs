//! The upstream NetworkPolicy e2e cases (kubernetes test/e2e/network/netpol/network_policy.go,
//! TCP and UDP; SCTP cases probe that SCTP-only rules do not admit TCP, since this kernel has no
//! SCTP sockets), plus endPort, ipBlock and cross-node cases of our own. Each step replaces the
//! whole set of policies (and may change labels), then probes the listed port/protocols.

use serde_json::{Value, json};

use super::model::Model;

pub type Probe = (u16, &'static str);
pub const TCP80: Probe = (80, "TCP");
pub const TCP81: Probe = (81, "TCP");
pub const UDP80: Probe = (80, "UDP");
pub const UDP81: Probe = (81, "UDP");

pub struct Step {
    pub policies: Vec<Value>,
    pub mutate: Option<fn(&mut Model)>,
    pub probes: Vec<Probe>,
}

pub struct Case {
    pub name: &'static str,
    pub steps: Vec<Step>,
}

pub fn np(ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"namespace": ns, "name": name}, "spec": spec})
}

fn ml(k: &str, v: &str) -> Value {
    json!({"matchLabels": {k: v}})
}

fn expr(k: &str, op: &str, vs: &[&str]) -> Value {
    json!({"matchExpressions": [{"key": k, "operator": op, "values": vs}]})
}

fn step(policies: Vec<Value>, probes: &[Probe]) -> Step {
    Step {
        policies,
        mutate: None,
        probes: probes.to_vec(),
    }
}

fn one(name: &'static str, policies: Vec<Value>, probes: &[Probe]) -> Case {
    Case {
        name,
        steps: vec![step(policies, probes)],
    }
}

fn a() -> Value {
    ml("pod", "a")
}

/// x/a admits ingress by `rules`.
fn ingress_a(name: &str, rules: Value) -> Value {
    np(
        "x",
        name,
        json!({"podSelector": a(), "policyTypes": ["Ingress"], "ingress": rules}),
    )
}

/// x/a may send by `rules`.
fn egress_a(name: &str, rules: Value) -> Value {
    np(
        "x",
        name,
        json!({"podSelector": a(), "policyTypes": ["Egress"], "egress": rules}),
    )
}

fn deny_all_ingress(ns: &str) -> Value {
    np(
        ns,
        "deny-ingress",
        json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
    )
}

pub fn all(model: &Model) -> Vec<Case> {
    let yb = format!("{}/32", model.pod("y/b").ip);
    let mut v = vec![
        one(
            "default-deny-ingress",
            vec![deny_all_ingress("x")],
            &[TCP80],
        ),
        one(
            "default-deny-all",
            vec![np(
                "x",
                "deny-all",
                json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
            )],
            &[TCP80, TCP81],
        ),
        one(
            "allow from pods within server namespace by PodSelector",
            vec![ingress_a(
                "p",
                json!([{"from": [{"podSelector": ml("pod", "b")}]}]),
            )],
            &[TCP80],
        ),
        one(
            "allow ingress traffic for a target",
            vec![deny_all_ingress("x"), ingress_a("allow-a", json!([{}]))],
            &[TCP80],
        ),
        one(
            "allow ingress from pods in all namespaces",
            vec![ingress_a(
                "p",
                json!([{"from": [{"namespaceSelector": {}}]}]),
            )],
            &[TCP80],
        ),
        one(
            "allow only from a different namespace by NamespaceSelector",
            vec![ingress_a(
                "p",
                json!([{"from": [{"namespaceSelector": ml("ns", "y")}]}]),
            )],
            &[TCP80],
        ),
        one(
            "PodSelector with MatchExpressions",
            vec![ingress_a(
                "p",
                json!([{"from": [{"podSelector": expr("pod", "In", &["b"])}]}]),
            )],
            &[TCP80],
        ),
        one(
            "NamespaceSelector with MatchExpressions",
            vec![ingress_a(
                "p",
                json!([{"from": [{"namespaceSelector": expr("ns", "In", &["y"])}]}]),
            )],
            &[TCP80],
        ),
        one(
            "PodSelector or NamespaceSelector",
            vec![ingress_a(
                "p",
                json!([{"from": [{"namespaceSelector": expr("ns", "NotIn", &["x"])}, {"podSelector": ml("pod", "b")}]}]),
            )],
            &[TCP80],
        ),
        one(
            "PodSelector and NamespaceSelector",
            vec![ingress_a(
                "p",
                json!([{"from": [{"namespaceSelector": expr("ns", "NotIn", &["x"]), "podSelector": ml("pod", "b")}]}]),
            )],
            &[TCP80],
        ),
        one(
            "multiple PodSelectors and NamespaceSelectors",
            vec![ingress_a(
                "p",
                json!([{"from": [{"namespaceSelector": expr("ns", "NotIn", &["x"]), "podSelector": expr("pod", "In", &["b", "c"])}]}]),
            )],
            &[TCP80],
        ),
        one(
            "any PodSelectors",
            vec![ingress_a(
                "p",
                json!([{"from": [{"podSelector": ml("pod", "b")}, {"podSelector": ml("pod", "c")}]}]),
            )],
            &[TCP80],
        ),
        one(
            "only from a pod in a different namespace by PodSelector and NamespaceSelector",
            vec![ingress_a(
                "p",
                json!([{"from": [{"namespaceSelector": ml("ns", "y"), "podSelector": ml("pod", "a")}]}]),
            )],
            &[TCP80],
        ),
        one(
            "Ports",
            vec![ingress_a(
                "p",
                json!([{"from": [{"namespaceSelector": ml("ns", "y")}], "ports": [{"port": 81}]}]),
            )],
            &[TCP80, TCP81],
        ),
        Case {
            name: "multiple stacked policies with overlapping podSelectors",
            steps: vec![
                step(
                    vec![ingress_a(
                        "p81",
                        json!([{"from": [{"namespaceSelector": ml("ns", "y")}], "ports": [{"port": 81}]}]),
                    )],
                    &[TCP80, TCP81],
                ),
                step(
                    vec![
                        ingress_a(
                            "p81",
                            json!([{"from": [{"namespaceSelector": ml("ns", "y")}], "ports": [{"port": 81}]}]),
                        ),
                        ingress_a(
                            "p80",
                            json!([{"from": [{"namespaceSelector": ml("ns", "y")}], "ports": [{"port": 80}]}]),
                        ),
                    ],
                    &[TCP80, TCP81],
                ),
            ],
        },
        one(
            "allow-all",
            vec![np(
                "x",
                "allow-all",
                json!({"podSelector": {}, "ingress": [{}]}),
            )],
            &[TCP80, TCP81],
        ),
        one(
            "ingress on one named port",
            vec![ingress_a(
                "p",
                json!([{"ports": [{"port": "serve-81-tcp"}]}]),
            )],
            &[TCP80, TCP81],
        ),
        one(
            "ingress from namespace on one named port",
            vec![ingress_a(
                "p",
                json!([{"from": [{"namespaceSelector": ml("ns", "y")}], "ports": [{"port": "serve-80-tcp"}]}]),
            )],
            &[TCP80, TCP81],
        ),
        one(
            "egress on one named port",
            vec![egress_a(
                "p",
                json!([{"ports": [{"port": "serve-80-tcp"}]}]),
            )],
            &[TCP80, TCP81],
        ),
        Case {
            name: "updated policy",
            steps: vec![
                step(
                    vec![ingress_a(
                        "p",
                        json!([{"ports": [{"port": "serve-81-tcp"}]}]),
                    )],
                    &[TCP80, TCP81],
                ),
                step(
                    vec![ingress_a(
                        "p",
                        json!([{"ports": [{"port": "serve-80-tcp"}]}]),
                    )],
                    &[TCP80, TCP81],
                ),
            ],
        },
        Case {
            name: "ingress from updated namespace",
            steps: vec![
                step(
                    vec![ingress_a(
                        "p",
                        json!([{"from": [{"namespaceSelector": ml("ns2", "updated")}]}]),
                    )],
                    &[TCP80],
                ),
                Step {
                    mutate: Some(|m| {
                        m.ns_labels
                            .get_mut("y")
                            .expect("y")
                            .insert("ns2".into(), "updated".into());
                    }),
                    ..step(
                        vec![ingress_a(
                            "p",
                            json!([{"from": [{"namespaceSelector": ml("ns2", "updated")}]}]),
                        )],
                        &[TCP80],
                    )
                },
            ],
        },
        Case {
            name: "ingress from updated pod",
            steps: vec![
                step(
                    vec![ingress_a(
                        "p",
                        json!([{"from": [{"podSelector": ml("pod2", "updated")}]}]),
                    )],
                    &[TCP80],
                ),
                Step {
                    mutate: Some(|m| {
                        m.pod_mut("x/b")
                            .labels
                            .insert("pod2".into(), "updated".into());
                    }),
                    ..step(
                        vec![ingress_a(
                            "p",
                            json!([{"from": [{"podSelector": ml("pod2", "updated")}]}]),
                        )],
                        &[TCP80],
                    )
                },
            ],
        },
        one(
            "deny ingress from pods on other namespaces",
            vec![np(
                "x",
                "p",
                json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}),
            )],
            &[TCP80],
        ),
        Case {
            name: "deny ingress to updated pod",
            steps: vec![
                step(
                    vec![np(
                        "x",
                        "p",
                        json!({"podSelector": ml("target", "isolated"), "policyTypes": ["Ingress"]}),
                    )],
                    &[TCP80],
                ),
                Step {
                    mutate: Some(|m| {
                        m.pod_mut("x/a")
                            .labels
                            .insert("target".into(), "isolated".into());
                    }),
                    ..step(
                        vec![np(
                            "x",
                            "p",
                            json!({"podSelector": ml("target", "isolated"), "policyTypes": ["Ingress"]}),
                        )],
                        &[TCP80],
                    )
                },
            ],
        },
        one(
            "deny egress from pods by PodSelector",
            vec![egress_a("p", json!([]))],
            &[TCP80],
        ),
        one(
            "deny egress from all pods in a namespace",
            vec![np(
                "x",
                "p",
                json!({"podSelector": {}, "policyTypes": ["Egress"]}),
            )],
            &[TCP80],
        ),
        one(
            "Ingress and Egress together",
            vec![np(
                "x",
                "p",
                json!({"podSelector": a(), "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"namespaceSelector": {}}]}], "egress": [{"to": [{"podSelector": ml("pod", "b")}]}]}),
            )],
            &[TCP80],
        ),
        one(
            "deny egress on the client side even if the server allows",
            vec![
                egress_a("p", json!([])),
                np(
                    "y",
                    "allow-all",
                    json!({"podSelector": {}, "ingress": [{}]}),
                ),
            ],
            &[TCP80],
        ),
        one(
            "egress to a server in another namespace by PodSelector and NamespaceSelector",
            vec![egress_a(
                "p",
                json!([{"to": [{"namespaceSelector": ml("ns", "y"), "podSelector": ml("pod", "a")}]}]),
            )],
            &[TCP80],
        ),
        one(
            "ingress any port on a specific protocol",
            vec![ingress_a("p", json!([{"ports": [{"protocol": "TCP"}]}]))],
            &[TCP80, UDP80],
        ),
        Case {
            name: "multiple ingress policies, allow-all takes precedence",
            steps: vec![
                step(
                    vec![ingress_a(
                        "p",
                        json!([{"from": [{"podSelector": ml("pod", "b")}], "ports": [{"port": 80}]}]),
                    )],
                    &[TCP80, TCP81],
                ),
                step(
                    vec![
                        ingress_a(
                            "p",
                            json!([{"from": [{"podSelector": ml("pod", "b")}], "ports": [{"port": 80}]}]),
                        ),
                        ingress_a("all", json!([{}])),
                    ],
                    &[TCP80, TCP81],
                ),
            ],
        },
        Case {
            name: "multiple egress policies, allow-all takes precedence",
            steps: vec![
                step(
                    vec![egress_a("p", json!([{"ports": [{"port": 80}]}]))],
                    &[TCP80, TCP81],
                ),
                step(
                    vec![
                        egress_a("p", json!([{"ports": [{"port": 80}]}])),
                        egress_a("all", json!([{}])),
                    ],
                    &[TCP80, TCP81],
                ),
            ],
        },
        Case {
            name: "stop enforcing policies after they are deleted",
            steps: vec![
                step(
                    vec![np(
                        "x",
                        "deny-all",
                        json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
                    )],
                    &[TCP80],
                ),
                step(vec![], &[TCP80]),
            ],
        },
        one(
            "egress to a server in a CIDR block",
            vec![egress_a("p", json!([{"to": [{"ipBlock": {"cidr": yb}}]}]))],
            &[TCP80],
        ),
        one(
            "except clause of an egress CIDR block",
            vec![egress_a(
                "p",
                json!([{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": [yb]}}]}]),
            )],
            &[TCP80],
        ),
        Case {
            name: "an IP in both CIDR and except is allowed by another policy",
            steps: vec![
                step(
                    vec![egress_a(
                        "p",
                        json!([{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": [yb]}}]}]),
                    )],
                    &[TCP80],
                ),
                step(
                    vec![
                        egress_a(
                            "p",
                            json!([{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": [yb]}}]}]),
                        ),
                        egress_a("p2", json!([{"to": [{"ipBlock": {"cidr": yb}}]}])),
                    ],
                    &[TCP80],
                ),
            ],
        },
        Case {
            name: "ingress and egress controlled independently by PodSelector",
            steps: vec![
                step(
                    vec![egress_a(
                        "p",
                        json!([{"to": [{"podSelector": ml("pod", "b")}]}]),
                    )],
                    &[TCP80],
                ),
                step(
                    vec![
                        egress_a("p", json!([{"to": [{"podSelector": ml("pod", "b")}]}])),
                        np(
                            "x",
                            "deny-b",
                            json!({"podSelector": ml("pod", "b"), "policyTypes": ["Ingress"]}),
                        ),
                    ],
                    &[TCP80],
                ),
            ],
        },
        one(
            "no TCP when a policy allows only UDP",
            vec![ingress_a(
                "p",
                json!([{"ports": [{"port": 81, "protocol": "UDP"}]}]),
            )],
            &[TCP81, UDP81],
        ),
        one(
            "NamespaceSelector matchLabels on the default namespace label",
            vec![ingress_a(
                "p",
                json!([{"from": [{"namespaceSelector": ml("kubernetes.io/metadata.name", "y")}]}]),
            )],
            &[TCP80],
        ),
        one(
            "NamespaceSelector matchExpressions on the default namespace label",
            vec![ingress_a(
                "p",
                json!([{"from": [{"namespaceSelector": expr("kubernetes.io/metadata.name", "In", &["y"])}]}]),
            )],
            &[TCP80],
        ),
        one(
            "SCTP is not TCP",
            vec![ingress_a(
                "p",
                json!([{"ports": [{"port": 80, "protocol": "SCTP"}]}]),
            )],
            &[TCP80],
        ),
        one(
            "a policy allowing SCTP still isolates",
            vec![ingress_a("p", json!([{"ports": [{"protocol": "SCTP"}]}]))],
            &[TCP80, UDP80],
        ),
        one(
            "no TCP when a policy allows only SCTP",
            vec![np(
                "x",
                "p",
                json!({"podSelector": {}, "ingress": [{"ports": [{"port": 81, "protocol": "SCTP"}]}]}),
            )],
            &[TCP81],
        ),
        one(
            "UDP: default-deny-ingress",
            vec![deny_all_ingress("x")],
            &[UDP80],
        ),
        one(
            "UDP: Ports",
            vec![ingress_a(
                "p",
                json!([{"from": [{"namespaceSelector": ml("ns", "y")}], "ports": [{"port": 81, "protocol": "UDP"}]}]),
            )],
            &[UDP80, UDP81],
        ),
        one(
            "UDP: only from a pod in a different namespace",
            vec![ingress_a(
                "p",
                json!([{"from": [{"namespaceSelector": ml("ns", "y"), "podSelector": ml("pod", "a")}], "ports": [{"port": 80, "protocol": "UDP"}]}]),
            )],
            &[UDP80],
        ),
    ];
    v.extend(extra(model));
    v
}

/// Cases beyond the upstream suite: endPort, ipBlock on ingress, NotIn/DoesNotExist, cross-node
/// targets, per-namespace isolation.
fn extra(_model: &Model) -> Vec<Case> {
    vec![
        one("endPort range on ingress", vec![ingress_a("p", json!([{"from": [{"namespaceSelector": ml("ns", "y")}], "ports": [{"port": 80, "endPort": 81}]}]))], &[TCP80, TCP81, UDP80]),
        one("endPort range on UDP egress", vec![egress_a("p", json!([{"ports": [{"port": 81, "endPort": 90, "protocol": "UDP"}]}]))], &[UDP80, UDP81]),
        one("egress on one named UDP port", vec![egress_a("p", json!([{"ports": [{"port": "serve-81-udp", "protocol": "UDP"}]}]))], &[UDP80, UDP81]),
        one("ingress ipBlock with except", vec![ingress_a("p", json!([{"from": [{"ipBlock": {"cidr": "10.99.0.0/24", "except": ["10.99.0.16/28"]}}]}]))], &[TCP80]),
        one("NotIn and DoesNotExist", vec![ingress_a("p", json!([{"from": [
            {"podSelector": {"matchExpressions": [{"key": "pod", "operator": "NotIn", "values": ["b"]}, {"key": "pod2", "operator": "DoesNotExist"}]}}]}]))], &[TCP80]),
        one("egress default deny, then port 81 to namespace y", vec![
            np("x", "deny", json!({"podSelector": {}, "policyTypes": ["Egress"]})),
            np("x", "to-y", json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"namespaceSelector": ml("ns", "y")}], "ports": [{"port": 81}]}]})),
        ], &[TCP80, TCP81]),
        one("a target on the other node", vec![np("y", "p", json!({"podSelector": ml("pod", "c"), "ingress": [{"from": [{"namespaceSelector": ml("ns", "x"), "podSelector": a()}]}]}))], &[TCP80]),
        one("every namespace isolated to itself", ["x", "y", "z"].iter().map(|ns| np(ns, "own", json!({
            "podSelector": {}, "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": {}}]}], "egress": [{"to": [{"podSelector": {}}]}]}))).collect(), &[TCP80, UDP81]),
    ]
}
