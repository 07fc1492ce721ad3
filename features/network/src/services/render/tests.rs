use serde_json::json;

use super::*;
use crate::services::model::{Proto, ServiceTable};

/// A chain's rules as text.
fn texts(rules: &[Rule]) -> Vec<String> {
    rules.iter().map(ToString::to_string).collect()
}

fn np(port: u16) -> ElemKey {
    ElemKey::node_port(Proto::Tcp, port)
}

fn table(svc: serde_json::Value, eps: &[(&str, &str)]) -> ServiceTable {
    let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(svc).expect("svc");
    let endpoints: Vec<serde_json::Value> = eps
        .iter()
        .map(|(ip, node)| json!({"addresses": [ip], "nodeName": node}))
        .collect();
    let slice: k8s_openapi::api::discovery::v1::EndpointSlice = serde_json::from_value(json!({
        "metadata": {"namespace": "ns", "name": "web-1",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints}))
    .expect("slice");
    ServiceTable::build([&svc], [&slice], "node-1", false)
}

fn web(extra: serde_json::Value) -> serde_json::Value {
    let mut spec = json!({"clusterIP": "10.152.183.5",
        "ports": [{"name": "http", "port": 80, "nodePort": 30080}]});
    for (k, v) in extra.as_object().expect("object") {
        spec[k] = v.clone();
    }
    json!({"metadata": {"namespace": "ns", "name": "web"}, "spec": spec})
}

fn pods() -> Vec<IpNet> {
    vec!["10.1.0.0/16".parse().expect("cidr")]
}

#[test]
fn cluster_ip_dispatches_through_the_map_and_balances_with_a_numgen_cascade() {
    let r = Ruleset::render(
        &table(
            web(json!({})),
            &[("10.1.0.5", "node-1"), ("10.1.1.5", "node-2")],
        ),
        &pods(),
    );
    let els = &r.elements["service-ips-v4"];
    assert_eq!(els.len(), 1);
    let (key, verdict) = els.iter().next().expect("element");
    assert_eq!(key.to_string(), "10.152.183.5 . tcp . 80");
    let svc = verdict.0.as_str();
    // svc4-<16 hex digits>-ns/web/tcp/http
    let tag = svc
        .strip_prefix("svc4-")
        .and_then(|s| s.strip_suffix("-ns/web/tcp/http"))
        .expect("svc4-<tag>-<readable>");
    assert!(
        tag.len() == 16 && tag.bytes().all(|b| b.is_ascii_hexdigit()),
        "{svc}"
    );
    let rules = texts(&r.chains[svc]);
    assert_eq!(rules.len(), 2);
    assert!(
        rules[0].starts_with("numgen random mod 2 == 0 goto ep4-"),
        "{rules:?}"
    );
    assert!(rules[1].starts_with("goto ep4-"), "{rules:?}");
    // The endpoint chains carry the service port's tag and the endpoint.
    let ep = format!("ep4-{tag}-10.1.0.5/8080");
    assert!(r.chains.contains_key(&format!("ep4-{tag}-10.1.1.5/8080")));
    assert_eq!(
        texts(&r.chains[&ep]),
        vec![
            "ip saddr 10.1.0.5 meta mark set meta mark | 0x4000".to_owned(),
            "meta l4proto tcp dnat ip to 10.1.0.5:8080".to_owned(),
        ]
    );
    assert!(
        r.elements["service-nodeports-v4"].is_empty(),
        "ClusterIP type"
    );
}

#[test]
fn node_port_with_cluster_policy_masquerades_then_uses_the_service_chain() {
    let r = Ruleset::render(
        &table(web(json!({"type": "NodePort"})), &[("10.1.0.5", "node-1")]),
        &pods(),
    );
    let ext = &r.elements["service-nodeports-v4"][&np(30080)].0;
    assert!(ext.starts_with("ext4-"));
    let rules = texts(&r.chains[ext]);
    assert_eq!(rules[0], "meta mark set meta mark | 0x4000");
    assert!(rules[1].starts_with("goto svc4-"), "{rules:?}");
}

#[test]
fn external_policy_local_keeps_the_source_and_short_circuits_pods_and_the_node() {
    let r = Ruleset::render(
        &table(
            web(json!({"type": "NodePort", "externalTrafficPolicy": "Local"})),
            &[("10.1.0.5", "node-1"), ("10.1.1.5", "node-2")],
        ),
        &pods(),
    );
    let ext = r.elements["service-nodeports-v4"][&np(30080)].0.clone();
    let rules = texts(&r.chains[&ext]);
    assert_eq!(
        rules[0],
        "fib saddr type local meta mark set meta mark | 0x4000"
    );
    assert!(rules[1].starts_with("fib saddr type local goto svc4-"));
    assert!(rules[2].starts_with("ip saddr 10.1.0.0/16 goto svc4-"));
    let svl = rules[3].strip_prefix("goto ").expect("goto svl");
    assert!(svl.starts_with("svl4-"));
    assert_eq!(r.chains[svl].len(), 1);
    assert!(
        r.chains[svl][0].to_string().ends_with("-10.1.0.5/8080"),
        "local only"
    );
}

#[test]
fn no_endpoints_go_to_the_reject_maps() {
    let r = Ruleset::render(&table(web(json!({"type": "NodePort"})), &[]), &pods());
    let vip = ElemKey::vip("10.152.183.5".parse().expect("ip"), Proto::Tcp, 80);
    assert_eq!(
        r.elements["no-endpoint-services-v4"][&vip].to_string(),
        "goto reject-chain"
    );
    assert_eq!(
        r.elements["no-endpoint-nodeports-v4"][&np(30080)].to_string(),
        "goto reject-chain"
    );
    assert!(r.elements["service-ips-v4"].is_empty());
    assert!(r.chains.is_empty());
}

#[test]
fn affinity_uses_one_timeout_set_per_endpoint() {
    let r = Ruleset::render(
        &table(
            web(json!({"sessionAffinity": "ClientIP",
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 7}}})),
            &[("10.1.0.5", "node-1"), ("10.1.0.6", "node-1")],
        ),
        &pods(),
    );
    assert_eq!(r.sets.len(), 2);
    let (name, body) = r.sets.iter().next().expect("set");
    assert!(name.starts_with("aff4-") && name.ends_with("-7"), "{name}");
    assert_eq!(
        body.to_string(),
        "type ipv4_addr; flags dynamic,timeout; timeout 7s;"
    );
    let svc = r
        .chains
        .keys()
        .find(|k| k.starts_with("svc4-"))
        .expect("svc");
    assert!(
        r.chains[svc][0]
            .to_string()
            .starts_with(&format!("ip saddr @{name} goto ep4-"))
    );
    let ep = r
        .chains
        .iter()
        .find(|(k, _)| k.starts_with("ep4-") && k.contains("10.1.0.5"))
        .expect("ep");
    assert!(texts(ep.1).contains(&format!("update @{name} {{ ip saddr }}")));
}

#[test]
fn load_balancer_source_ranges_drop_other_sources_before_dnat() {
    let mut svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(web(
        json!({"type": "LoadBalancer", "loadBalancerSourceRanges": ["203.0.113.0/24"]}),
    ))
    .expect("svc");
    svc.status =
        serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}))
            .expect("status");
    let table = ServiceTable::build([&svc], [], "node-1", false);
    let node = ["192.0.2.50".parse().expect("ip")];
    let r = Ruleset::render_ports(&table.ports, &pods(), &node);
    let vip = ElemKey::vip("192.0.2.1".parse().expect("ip"), Proto::Tcp, 80);
    let fw = &r.elements["firewall-ips-v4"][&vip].0;
    assert!(fw.starts_with("fw4-"), "{fw}");
    assert_eq!(
        texts(&r.chains[fw]),
        vec!["ip saddr 203.0.113.0/24 return", "drop"],
        "the node (192.0.2.50) is outside the ranges: no allowance for the LB IP itself"
    );
    // The firewall holds even without endpoints (the LB IP rejects for allowed sources).
    assert!(r.elements["no-endpoint-services-v4"].contains_key(&vip));
    // A node inside the ranges may reach a VIP bound locally, seen with the VIP as source.
    let node = ["203.0.113.9".parse().expect("ip")];
    let r = Ruleset::render_ports(&table.ports, &pods(), &node);
    assert_eq!(
        texts(&r.chains[fw]),
        vec![
            "ip saddr 203.0.113.0/24 return",
            "ip saddr 192.0.2.1 return",
            "drop"
        ]
    );
}

#[test]
fn chain_and_set_names_of_different_service_ports_never_collide() {
    // The worst case for the short endpoint names: many Services (two ports, both families,
    // affinity, Local policy, NodePorts) over the same endpoints.
    let mut svcs = Vec::new();
    for i in 0..1500 {
        let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
            "metadata": {"namespace": format!("ns-{}", i % 7), "name": format!("web-{i}")},
            "spec": {"type": "NodePort", "ipFamilies": ["IPv4", "IPv6"],
                "clusterIPs": [format!("10.152.{}.{}", i / 256, i % 256),
                               format!("fd00:152::{i:x}")],
                "externalTrafficPolicy": if i % 2 == 0 { "Local" } else { "Cluster" },
                "sessionAffinity": "ClientIP",
                "ports": [{"name": "http", "port": 80, "nodePort": 30000 + i},
                          {"name": "dns", "port": 53, "protocol": "UDP"}]}}))
        .expect("svc");
        svcs.push(svc);
    }
    let mut slices = Vec::new();
    for svc in &svcs {
        let name = svc.metadata.name.clone().expect("name");
        let ns = svc.metadata.namespace.clone().expect("ns");
        for (family, ips) in [
            ("IPv4", ["10.1.0.5", "10.1.0.6", "10.1.1.7"]),
            ("IPv6", ["fd00:1::5", "fd00:1::6", "fd00:1::7"]),
        ] {
            let endpoints: Vec<serde_json::Value> = ips
                .iter()
                .enumerate()
                .map(|(i, ip)| json!({"addresses": [ip], "nodeName": format!("node-{}", i % 2)}))
                .collect();
            let slice: k8s_openapi::api::discovery::v1::EndpointSlice =
                serde_json::from_value(json!({
                    "metadata": {"namespace": ns, "name": format!("{name}-{family}"),
                                 "labels": {"kubernetes.io/service-name": name}},
                    "addressType": family,
                    "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                              {"name": "dns", "port": 5353, "protocol": "UDP"}],
                    "endpoints": endpoints}))
                .expect("slice");
            slices.push(slice);
        }
    }
    let table = ServiceTable::build(&svcs, &slices, "node-1", false);
    assert_eq!(table.ports.len(), 1500 * 2 * 2);
    let all = Ruleset::render(&table, &pods());
    // Rendered one at a time, the service ports' chains and sets add up to the whole: no name
    // of one port is also a name of another.
    let (mut chains, mut sets) = (0, 0);
    for p in &table.ports {
        let one = Ruleset::render_ports(std::slice::from_ref(p), &pods(), &[]);
        chains += one.chains.len();
        sets += one.sets.len();
        for name in one.chains.keys().chain(one.sets.keys()) {
            assert!(name.len() < 256, "{name}");
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-/._".contains(&b)),
                "{name}"
            );
        }
    }
    assert_eq!(all.chains.len(), chains);
    assert_eq!(all.sets.len(), sets);
    assert!(chains > 1500 * 2 * 2 * 3, "{chains}");
}
