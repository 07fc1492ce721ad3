//! The oracle: which connections networking.k8s.io/v1 allows, evaluated per connection straight
//! from the policy JSON and the model, written from the API reference. It shares no code with
//! the crate under test (which compiles policies into per-pod sets and nftables chains).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde_json::Value;

use super::model::{Model, ModelPod};

/// Whether `src` may open a connection to `dst` on `port`/`proto` ("TCP", "UDP").
pub fn allowed(
    m: &Model,
    policies: &[Value],
    src: &ModelPod,
    dst: &ModelPod,
    port: u16,
    proto: &str,
) -> bool {
    direction_allows(m, policies, "Egress", src, dst, port, proto)
        && direction_allows(m, policies, "Ingress", dst, src, port, proto)
}

/// Whether `target`'s policies of `dir` admit traffic with `other` (the destination port is
/// `port` on the destination: `target` for ingress, `other` for egress).
fn direction_allows(
    m: &Model,
    policies: &[Value],
    dir: &str,
    target: &ModelPod,
    other: &ModelPod,
    port: u16,
    proto: &str,
) -> bool {
    let (rules_key, peers_key) = if dir == "Ingress" {
        ("ingress", "from")
    } else {
        ("egress", "to")
    };
    let dst = if dir == "Ingress" { target } else { other };
    let mut isolated = false;
    for p in policies {
        let ns = p["metadata"]["namespace"].as_str().unwrap_or("default");
        let spec = &p["spec"];
        if ns != target.ns || !selects(&spec["podSelector"], &target.labels) || !affects(spec, dir)
        {
            continue;
        }
        isolated = true;
        for rule in spec[rules_key].as_array().into_iter().flatten() {
            if peers_match(m, &rule[peers_key], ns, other)
                && ports_match(&rule["ports"], dst, port, proto)
            {
                return true;
            }
        }
    }
    !isolated
}

/// policyTypes, or the API's inference: Ingress always, Egress if there are egress rules.
fn affects(spec: &Value, dir: &str) -> bool {
    match spec["policyTypes"].as_array() {
        Some(types) => types.iter().any(|t| t == dir),
        None => dir == "Ingress" || spec["egress"].as_array().is_some_and(|e| !e.is_empty()),
    }
}

/// A label selector; null and {} select everything.
fn selects(sel: &Value, labels: &BTreeMap<String, String>) -> bool {
    if let Some(ml) = sel["matchLabels"].as_object()
        && !ml
            .iter()
            .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str())
    {
        return false;
    }
    sel["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| {
            let key = e["key"].as_str().unwrap_or_default();
            let values: Vec<&str> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let have = labels.get(key).map(String::as_str);
            match e["operator"].as_str() {
                Some("In") => have.is_some_and(|v| values.contains(&v)),
                Some("NotIn") => !have.is_some_and(|v| values.contains(&v)),
                Some("Exists") => have.is_some(),
                Some("DoesNotExist") => have.is_none(),
                _ => false,
            }
        })
}

fn peers_match(m: &Model, peers: &Value, policy_ns: &str, other: &ModelPod) -> bool {
    let Some(list) = peers.as_array().filter(|l| !l.is_empty()) else {
        return true; // absent or empty: everyone
    };
    list.iter().any(|peer| {
        if let Some(block) = peer.get("ipBlock") {
            let ip = other.ip;
            let cidr = block["cidr"].as_str().unwrap_or_default();
            return in_cidr(ip, cidr)
                && !block["except"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|e| in_cidr(ip, e.as_str().unwrap_or_default()));
        }
        let ns_sel = peer.get("namespaceSelector");
        let pod_sel = peer.get("podSelector");
        if ns_sel.is_none() && pod_sel.is_none() {
            return false;
        }
        let ns_ok = match ns_sel {
            None => other.ns == policy_ns,
            Some(s) => selects(s, &m.ns_labels[&other.ns]),
        };
        ns_ok && pod_sel.is_none_or(|s| selects(s, &other.labels))
    })
}

fn ports_match(ports: &Value, dst: &ModelPod, port: u16, proto: &str) -> bool {
    let Some(list) = ports.as_array().filter(|l| !l.is_empty()) else {
        return true;
    };
    list.iter().any(|p| {
        let want = p["protocol"].as_str().unwrap_or("TCP");
        if want != proto {
            return false;
        }
        match &p["port"] {
            Value::Null => true,
            Value::Number(n) => {
                let start = n.as_u64().unwrap_or(0);
                let end = p["endPort"].as_u64().unwrap_or(start);
                (start..=end).contains(&u64::from(port))
            }
            Value::String(name) => dst.named_port(name, proto) == Some(port),
            _ => false,
        }
    })
}

fn in_cidr(ip: Ipv4Addr, cidr: &str) -> bool {
    let Some((net, len)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(len)) = (net.parse::<Ipv4Addr>(), len.parse::<u32>()) else {
        return false;
    };
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - len.min(32))
    };
    u32::from(ip) & mask == u32::from(net) & mask
}
