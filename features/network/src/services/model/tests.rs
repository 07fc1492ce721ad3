use serde_json::json;

use super::*;

fn svc(v: serde_json::Value) -> Service {
    serde_json::from_value(v).expect("service")
}

fn slice(v: serde_json::Value) -> EndpointSlice {
    serde_json::from_value(v).expect("slice")
}

fn web(spec: serde_json::Value) -> Service {
    let mut s = json!({"metadata": {"namespace": "ns", "name": "web"},
        "spec": {"clusterIP": "10.152.183.5", "clusterIPs": ["10.152.183.5"],
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}]}});
    if let (Some(dst), Some(src)) = (s["spec"].as_object_mut(), spec.as_object()) {
        for (k, v) in src {
            dst.insert(k.clone(), v.clone());
        }
    }
    svc(s)
}

fn ep(ip: &str, node: &str, ready: bool, serving: bool, terminating: bool) -> serde_json::Value {
    json!({"addresses": [ip], "nodeName": node,
           "conditions": {"ready": ready, "serving": serving, "terminating": terminating}})
}

fn web_slice(name: &str, port: u16, eps: Vec<serde_json::Value>) -> EndpointSlice {
    slice(json!({"metadata": {"namespace": "ns", "name": name,
                              "labels": {"kubernetes.io/service-name": "web"}},
                 "addressType": "IPv4",
                 "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
                 "endpoints": eps}))
}

fn build(s: &[Service], e: &[EndpointSlice]) -> ServiceTable {
    ServiceTable::build(s, e, "node-1", false)
}

fn eps(t: &Target) -> Vec<(String, u16, bool)> {
    match t {
        Target::Endpoints(e) => e
            .iter()
            .map(|e| (e.ip.to_string(), e.port, e.local))
            .collect(),
        other => panic!("expected endpoints, got {other:?}"),
    }
}

#[test]
fn cluster_ip_resolves_named_target_ports_per_slice() {
    let t = build(
        &[web(json!({}))],
        &[
            web_slice("a", 8080, vec![ep("10.1.0.5", "node-1", true, true, false)]),
            web_slice("b", 9090, vec![ep("10.1.1.5", "node-2", true, true, false)]),
        ],
    );
    assert_eq!(t.ports.len(), 1);
    let p = &t.ports[0];
    assert_eq!(p.cluster_ip, Some("10.152.183.5".parse().expect("ip")));
    assert_eq!(p.port, 80);
    assert_eq!(p.node_port, None);
    assert_eq!(
        eps(&p.cluster),
        vec![
            ("10.1.0.5".into(), 8080, true),
            ("10.1.1.5".into(), 9090, false)
        ]
    );
    assert_eq!(p.cluster, p.external);
}

#[test]
fn headless_and_external_name_get_no_rules() {
    let headless = web(json!({"clusterIP": "None", "clusterIPs": ["None"]}));
    let ext = svc(json!({"metadata": {"namespace": "ns", "name": "x"},
        "spec": {"type": "ExternalName", "externalName": "example.com"}}));
    assert!(build(&[headless, ext], &[]).ports.is_empty());
}

#[test]
fn no_endpoints_rejects() {
    let t = build(&[web(json!({}))], &[]);
    assert_eq!(t.ports[0].cluster, Target::Reject);
    assert_eq!(t.ports[0].external, Target::Reject);
}

#[test]
fn terminating_serving_endpoints_are_used_only_when_none_is_ready() {
    let both = build(
        &[web(json!({}))],
        &[web_slice(
            "a",
            8080,
            vec![
                ep("10.1.0.5", "node-1", true, true, false),
                ep("10.1.0.6", "node-1", false, true, true),
                ep("10.1.0.7", "node-1", false, false, true),
            ],
        )],
    );
    assert_eq!(eps(&both.ports[0].cluster).len(), 1);
    let fallback = build(
        &[web(json!({}))],
        &[web_slice(
            "a",
            8080,
            vec![
                ep("10.1.0.6", "node-1", false, true, true),
                ep("10.1.0.7", "node-1", false, false, true),
            ],
        )],
    );
    assert_eq!(
        eps(&fallback.ports[0].cluster),
        vec![("10.1.0.6".into(), 8080, true)]
    );
    let unready = build(
        &[web(json!({}))],
        &[web_slice(
            "a",
            8080,
            vec![ep("10.1.0.8", "node-1", false, false, false)],
        )],
    );
    assert_eq!(unready.ports[0].cluster, Target::Reject);
}

#[test]
fn node_port_load_balancer_and_external_ips() {
    let s = svc(json!({"metadata": {"namespace": "ns", "name": "web"},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.152.183.5",
                 "clusterIPs": ["10.152.183.5", "fd00:152::5"],
                 "externalIPs": ["192.0.2.10"],
                 "ports": [{"name": "http", "port": 80, "nodePort": 30080},
                           {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.20"}, {"ip": "2001:db8::20"}]}}}));
    let t = build(&[s], &[]);
    assert_eq!(t.ports.len(), 4, "2 ports x 2 families");
    let v4: Vec<&ServicePort> = t
        .ports
        .iter()
        .filter(|p| p.key.family == Family::V4)
        .collect();
    assert_eq!(v4.len(), 2);
    let http = v4.iter().find(|p| p.port == 80).expect("http");
    assert_eq!(http.node_port, Some(30080));
    assert_eq!(
        http.external_ips,
        vec![
            "192.0.2.10".parse::<IpAddr>().expect("ip"),
            "192.0.2.20".parse().expect("ip")
        ]
    );
    let dns = v4.iter().find(|p| p.port == 53).expect("dns");
    assert_eq!(dns.key.proto, Proto::Udp);
    let v6 = t
        .ports
        .iter()
        .find(|p| p.key.family == Family::V6 && p.port == 80)
        .expect("v6");
    assert_eq!(v6.cluster_ip, Some("fd00:152::5".parse().expect("ip")));
    assert_eq!(
        v6.external_ips,
        vec!["2001:db8::20".parse::<IpAddr>().expect("ip")]
    );
}

#[test]
fn node_port_type_ignores_load_balancer_status() {
    let s = web(json!({"type": "NodePort",
        "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}));
    let t = build(&[s], &[]);
    assert_eq!(t.ports[0].node_port, Some(30080));
    assert!(t.ports[0].external_ips.is_empty());
}

#[test]
fn external_traffic_policy_local_uses_local_endpoints_or_drops() {
    let s = web(
        json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local",
        "healthCheckNodePort": 32000,
        "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
    );
    let remote_only = build(
        std::slice::from_ref(&s),
        &[web_slice(
            "a",
            8080,
            vec![ep("10.1.1.5", "node-2", true, true, false)],
        )],
    );
    let p = &remote_only.ports[0];
    assert!(p.external_local);
    assert_eq!(p.health_check_node_port, Some(32000));
    assert_eq!(p.local_endpoints, 0);
    assert_eq!(p.external, Target::Drop);
    assert_eq!(eps(&p.cluster).len(), 1, "cluster traffic still reaches it");
    let mixed = build(
        &[s],
        &[web_slice(
            "a",
            8080,
            vec![
                ep("10.1.1.5", "node-2", true, true, false),
                ep("10.1.0.5", "node-1", true, true, false),
            ],
        )],
    );
    assert_eq!(
        eps(&mixed.ports[0].external),
        vec![("10.1.0.5".into(), 8080, true)]
    );
    assert_eq!(mixed.ports[0].local_endpoints, 1);
}

#[test]
fn internal_traffic_policy_local() {
    let s = web(json!({"internalTrafficPolicy": "Local"}));
    let t = build(
        &[s],
        &[web_slice(
            "a",
            8080,
            vec![ep("10.1.1.5", "node-2", true, true, false)],
        )],
    );
    assert_eq!(t.ports[0].cluster, Target::Drop);
}

#[test]
fn session_affinity_timeout() {
    let default = build(&[web(json!({"sessionAffinity": "ClientIP"}))], &[]);
    assert_eq!(default.ports[0].affinity, Some(DEFAULT_AFFINITY_SECONDS));
    let custom = build(
        &[web(json!({"sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 5}}}))],
        &[],
    );
    assert_eq!(custom.ports[0].affinity, Some(5));
    assert_eq!(build(&[web(json!({}))], &[]).ports[0].affinity, None);
}

#[test]
fn sctp_is_skipped_without_kernel_support() {
    let s = web(json!({"ports": [{"name": "s", "port": 9, "protocol": "SCTP"}]}));
    let t = build(std::slice::from_ref(&s), &[]);
    assert!(t.ports.is_empty());
    assert_eq!(t.skipped.len(), 1);
    let with = ServiceTable::build([&s], [], "node-1", true);
    assert_eq!(with.ports.len(), 1);
}

#[test]
fn slices_of_other_services_families_and_protocols_are_ignored() {
    let other = slice(json!({"metadata": {"namespace": "ns", "name": "o",
            "labels": {"kubernetes.io/service-name": "other"}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 1}],
        "endpoints": [ep("10.9.9.9", "node-1", true, true, false)]}));
    let v6 = slice(json!({"metadata": {"namespace": "ns", "name": "v6",
            "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv6", "ports": [{"name": "http", "port": 1}],
        "endpoints": [ep("fd00::9", "node-1", true, true, false)]}));
    let udp = slice(json!({"metadata": {"namespace": "ns", "name": "u",
            "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 1, "protocol": "UDP"}],
        "endpoints": [ep("10.9.9.8", "node-1", true, true, false)]}));
    let t = build(&[web(json!({}))], &[other, v6, udp]);
    assert_eq!(t.ports.len(), 1);
    assert_eq!(t.ports[0].cluster, Target::Reject);
}

#[test]
fn duplicate_endpoints_across_slices_count_once() {
    let t = build(
        &[web(json!({}))],
        &[
            web_slice("a", 8080, vec![ep("10.1.0.5", "node-1", true, true, false)]),
            web_slice("b", 8080, vec![ep("10.1.0.5", "node-1", true, true, false)]),
        ],
    );
    assert_eq!(eps(&t.ports[0].cluster).len(), 1);
}

#[test]
fn services_of_another_proxy_get_no_rules() {
    let mut s = web(json!({}));
    s.metadata.labels = Some(
        [(SERVICE_PROXY_NAME_LABEL.to_owned(), "knet-dns".to_owned())]
            .into_iter()
            .collect(),
    );
    let t = build(&[s], &[]);
    assert!(
        t.ports.is_empty(),
        "a Service labelled service-proxy-name must be skipped: {t:?}"
    );
    let t = build(&[web(json!({}))], &[]);
    assert!(
        !t.ports.is_empty(),
        "the same Service without the label gets rules"
    );
}

#[test]
fn load_balancer_source_ranges_apply_per_family_to_vip_mode_ingress_only() {
    let mut s = web(json!({"type": "LoadBalancer",
        "clusterIPs": ["10.152.183.5", "fd00:152::5"],
        "externalIPs": ["192.0.2.9"],
        "loadBalancerSourceRanges": [" 203.0.113.7/24", "2001:db8::/32"]}));
    s.status = serde_json::from_value(json!({"loadBalancer": {"ingress": [
        {"ip": "192.0.2.1"}, {"ip": "192.0.2.2", "ipMode": "Proxy"}, {"ip": "2001:db8:1::1"}]}}))
    .expect("status");
    let t = build(&[s.clone()], &[]);
    let v4 = &t.ports[0];
    assert_eq!(v4.key.family, Family::V4);
    assert_eq!(v4.lb_ips, vec!["192.0.2.1".parse::<IpAddr>().expect("ip")]);
    assert_eq!(
        v4.external_ips,
        vec![
            "192.0.2.9".parse::<IpAddr>().expect("ip"),
            "192.0.2.1".parse().expect("ip")
        ],
        "the Proxy-mode ingress IP is not captured"
    );
    assert_eq!(
        v4.source_ranges,
        vec!["203.0.113.0/24".parse::<IpNet>().expect("net")],
        "trimmed and truncated"
    );
    assert_eq!(t.ports[1].source_ranges.len(), 1, "IPv6 gets its own range");
    // A range covering the whole family allows everything: no firewall for it.
    s.spec.as_mut().expect("spec").load_balancer_source_ranges =
        Some(vec!["0.0.0.0/0".into(), "10.0.0.0/8".into()]);
    let t = build(&[s], &[]);
    assert!(t.ports[0].source_ranges.is_empty());
    assert_eq!(t.ports[1].source_ranges.len(), 0, "no IPv6 range given");
}
