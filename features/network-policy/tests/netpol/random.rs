//! Seeded random policies over the model: selectors (matchLabels and every operator), namespace
//! selectors, ipBlocks with holes, ports by number, name and range, both directions.

use serde_json::{Value, json};

use super::cases::np;

/// splitmix64: tiny, seedable, reproducible.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap_or(0)
    }

    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

fn selector(r: &mut Rng, key: &str, values: &[&str]) -> Value {
    match r.below(6) {
        0 => json!({}),
        1 | 2 => json!({"matchLabels": {key: r.pick(values)}}),
        _ => {
            let op = r.pick(&["In", "NotIn", "Exists", "DoesNotExist"]);
            let vals: Vec<&str> = values.iter().copied().filter(|_| r.chance(50)).collect();
            if op == "Exists" || op == "DoesNotExist" {
                json!({"matchExpressions": [{"key": key, "operator": op}]})
            } else {
                json!({"matchExpressions": [{"key": key, "operator": op, "values": if vals.is_empty() { vec![values[0]] } else { vals }}]})
            }
        }
    }
}

fn peer(r: &mut Rng) -> Value {
    match r.below(5) {
        0 => json!({"podSelector": selector(r, "pod", &["a", "b", "c"])}),
        1 => json!({"namespaceSelector": selector(r, "ns", &["x", "y", "z"])}),
        2 => {
            json!({"namespaceSelector": selector(r, "ns", &["x", "y", "z"]), "podSelector": selector(r, "pod", &["a", "b", "c"])})
        }
        3 => {
            let base = 8 + r.below(11);
            let len = 28 + r.below(5);
            let cidr = format!("10.99.0.{}/{len}", base & !((1usize << (32 - len)) - 1));
            if r.chance(50) {
                json!({"ipBlock": {"cidr": "10.99.0.0/24", "except": [cidr]}})
            } else {
                json!({"ipBlock": {"cidr": cidr}})
            }
        }
        _ => json!({"podSelector": {}}),
    }
}

fn port(r: &mut Rng) -> Value {
    let proto = r.pick(&["TCP", "UDP"]);
    match r.below(5) {
        0 => json!({"protocol": proto}),
        1 => json!({"protocol": proto, "port": 80}),
        2 => json!({"protocol": proto, "port": 81}),
        3 => json!({"protocol": proto, "port": 79, "endPort": 80 + r.below(2)}),
        _ => {
            json!({"protocol": proto, "port": format!("serve-{}-{}", 80 + r.below(2), proto.to_lowercase())})
        }
    }
}

fn rules(r: &mut Rng, peers_key: &str) -> Value {
    let n = r.below(3);
    let rules: Vec<Value> = (0..n)
        .map(|_| {
            let mut rule = serde_json::Map::new();
            if r.chance(75) {
                rule.insert(
                    peers_key.into(),
                    Value::Array((0..=r.below(2)).map(|_| peer(r)).collect()),
                );
            }
            if r.chance(60) {
                rule.insert(
                    "ports".into(),
                    Value::Array((0..=r.below(2)).map(|_| port(r)).collect()),
                );
            }
            Value::Object(rule)
        })
        .collect();
    Value::Array(rules)
}

/// One random policy named `name`.
pub fn policy(r: &mut Rng, name: &str) -> Value {
    let ns = r.pick(&["x", "y", "z"]);
    let types: Vec<&str> = match r.below(3) {
        0 => vec!["Ingress"],
        1 => vec!["Egress"],
        _ => vec!["Ingress", "Egress"],
    };
    let mut spec =
        json!({"podSelector": selector(r, "pod", &["a", "b", "c"]), "policyTypes": types});
    spec["ingress"] = rules(r, "from");
    spec["egress"] = rules(r, "to");
    np(ns, name, spec)
}
