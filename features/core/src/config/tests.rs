//! Config parse / merge / validate: every default, every immutable key, every bad value.

use super::*;
use crate::FeatureId;

fn set(cfg: &ClusterConfig, a: &str) -> Result<ClusterConfig, ConfigError> {
    set_key(cfg, a)
}

fn err(cfg: &ClusterConfig, a: &str) -> String {
    set(cfg, a).expect_err(a).to_string()
}

#[test]
fn defaults_match_the_documented_table() {
    let c = ClusterConfig::default();
    assert_eq!(c.pod_cidr.to_string(), "10.1.0.0/16");
    assert_eq!(c.service_cidr.to_string(), "10.152.183.0/24");
    assert!(c.network.enabled && c.network_policy.enabled && c.dns.enabled);
    assert!(!c.load_balancer.enabled && !c.ingress.enabled && !c.gateway.enabled);
    assert_eq!(c.network.mode, NetworkMode::Auto);
    assert_eq!(c.network.vxlan_port, 8472);
    assert_eq!(c.network.mtu, Mtu::Auto);
    assert_eq!(c.network.nodeport_addresses, vec![NodePortAddress::All]);
    assert_eq!(c.dns.cluster_domain, "cluster.local");
    assert_eq!(c.dns_service_ip().to_string(), "10.152.183.10");
    assert_eq!(c.kubernetes_service_ip().to_string(), "10.152.183.1");
    assert!(c.dns.upstream_nameservers.is_empty());
    assert_eq!(c.dns.ttl, 30);
    assert!(c.load_balancer.l2_mode && !c.load_balancer.bgp_mode);
    assert_eq!(c.load_balancer.bgp_peer_port, 179);
    assert!(c.ingress.default_tls_secret.is_empty() && !c.ingress.enable_proxy_protocol);
    c.validate().expect("defaults are valid");
}

#[test]
fn an_empty_file_and_an_omitted_key_mean_the_defaults() {
    assert_eq!(
        ClusterConfig::from_yaml("").expect("empty"),
        ClusterConfig::default()
    );
    let c =
        ClusterConfig::from_yaml("dns:\n  cluster-domain: example.internal\n").expect("partial");
    assert_eq!(c.dns.cluster_domain, "example.internal");
    assert!(
        c.dns.enabled,
        "omitting dns.enabled keeps the default (enabled)"
    );
    assert!(c.network.enabled);
}

#[test]
fn unknown_keys_in_a_file_fail() {
    let e = ClusterConfig::from_yaml("networkk:\n  enabled: true\n").expect_err("typo");
    assert!(e.to_string().contains("unknown field `networkk`"), "{e}");
    let e = ClusterConfig::from_yaml("dns:\n  domain: x\n").expect_err("typo");
    assert!(e.to_string().contains("unknown field `domain`"), "{e}");
}

#[test]
fn dual_stack_cidrs_parse_and_print() {
    let c = ClusterConfig::from_yaml(
        "pod-cidr: 10.100.0.0/16,fd01::/64\nservice-cidr: 10.200.0.0/16,fd98::/108\n",
    )
    .expect("dual-stack");
    assert_eq!(
        c.pod_cidr.v6().map(|n| n.to_string()),
        Some("fd01::/64".into())
    );
    assert_eq!(c.service_cidr.to_string(), "10.200.0.0/16,fd98::/108");
    assert!(c.to_yaml().contains("pod-cidr: 10.100.0.0/16,fd01::/64"));
}

#[test]
fn bad_cidrs_are_rejected_with_a_hint() {
    for (yaml, needle) in [
        ("pod-cidr: 10.1.0.1/16", "did you mean 10.1.0.0/16"),
        ("pod-cidr: banana", "is not a CIDR"),
        ("pod-cidr: 10.1.0.0/16,10.2.0.0/16", "different families"),
        ("pod-cidr: 10.0.0.0/28", "prefix length"),
        ("service-cidr: fd98::/64", "prefix length"),
        ("service-cidr: 10.1.0.0/24", "overlaps pod-cidr"),
        ("pod-cidr: ''", "expected one CIDR"),
    ] {
        let e = ClusterConfig::from_yaml(yaml).expect_err(yaml).to_string();
        assert!(e.contains(needle), "{yaml}: {e}");
    }
}

#[test]
fn set_changes_typed_values() {
    let c = ClusterConfig::default();
    let c = set(&c, "network.mode=vxlan").expect("mode");
    assert_eq!(c.network.mode, NetworkMode::Vxlan);
    let c = set(&c, "network.vxlan-port=4789").expect("port");
    assert_eq!(c.network.vxlan_port, 4789);
    let c = set(&c, "network.mtu=1400").expect("mtu");
    assert_eq!(c.network.mtu, Mtu::Bytes(1400));
    let c = set(&c, "network.mtu=auto").expect("mtu auto");
    assert_eq!(c.network.mtu, Mtu::Auto);
    let c = set(&c, "dns.upstream-nameservers=9.9.9.9,[2620:fe::fe]:5353").expect("ns");
    assert_eq!(c.dns.upstream_nameservers.len(), 2);
    assert_eq!(c.dns.upstream_nameservers[0].0.port(), 53);
    let c = set(&c, "dns.service-ip=10.152.183.53").expect("service ip");
    assert_eq!(c.dns_service_ip().to_string(), "10.152.183.53");
    let c = set(&c, "dns.service-ip=").expect("unset service ip");
    assert_eq!(c.dns_service_ip().to_string(), "10.152.183.10");
    let c = set(
        &c,
        "load-balancer.cidrs=192.0.2.0/28,192.0.2.100-192.0.2.120",
    )
    .expect("cidrs");
    assert_eq!(c.load_balancer.cidrs.len(), 2);
    let c = set(&c, "load-balancer.l2-interfaces=eth0,eth1").expect("ifaces");
    assert_eq!(c.load_balancer.l2_interfaces, vec!["eth0", "eth1"]);
    let c = set(&c, "ingress.default-tls-secret=1234").expect("string that looks numeric");
    assert_eq!(c.ingress.default_tls_secret, "1234");
    let c = set(&c, "gateway.enabled=true").expect("gateway on");
    assert!(c.enabled(FeatureId::Gateway));
}

#[test]
fn nodeport_addresses_take_keywords_and_cidrs_and_refuse_loopback() {
    let c = ClusterConfig::default();
    let c = set(&c, "network.nodeport-addresses=primary, 192.168.1.7/24").expect("list");
    assert_eq!(
        c.network.nodeport_addresses,
        vec![
            NodePortAddress::Primary,
            NodePortAddress::Cidr("192.168.1.0/24".parse().expect("cidr")),
        ]
    );
    assert_eq!(
        get_key(&c, "network.nodeport-addresses").expect("get"),
        serde_yaml::from_str::<serde_yaml::Value>("[primary, 192.168.1.0/24]").expect("yaml")
    );
    assert_eq!(
        set(&c, "network.nodeport-addresses=0.0.0.0/0")
            .expect("zero CIDR")
            .network
            .nodeport_addresses,
        vec![NodePortAddress::All]
    );
    for (value, says) in [
        ("localhost", "CVE-2020-8558"),
        ("127.0.0.0/8", "CVE-2020-8558"),
        ("::1/128", "CVE-2020-8558"),
        ("eth0", "use all, primary or a CIDR"),
        ("", "list at least one of all, primary or a CIDR"),
    ] {
        let e = err(&c, &format!("network.nodeport-addresses={value}"));
        assert!(e.contains(says), "{value}: {e}");
    }
    let file =
        ClusterConfig::from_yaml("network:\n  nodeport-addresses: [10.0.0.0/8]\n").expect("file");
    assert_eq!(file.network.nodeport_addresses.len(), 1);
    assert!(ClusterConfig::from_yaml("network:\n  nodeport-addresses: [nope]\n").is_err());
}

#[test]
fn set_rejects_every_bad_value_with_the_key_named() {
    let c = ClusterConfig::default();
    for (a, needle) in [
        (
            "network.mode=mesh",
            "invalid value \"mesh\" for network.mode",
        ),
        ("network.vxlan-port=0", "network.vxlan-port"),
        ("network.vxlan-port=70000", "network.vxlan-port"),
        ("network.vxlan-port=abc", "use a whole number"),
        ("network.mtu=100", "between 1280 and 65535"),
        ("network.mtu=big", "not an MTU"),
        ("network.enabled=yes", "use true or false"),
        ("dns.cluster-domain=bad_domain!", "dns.cluster-domain"),
        ("dns.service-ip=10.0.0.10", "inside service-cidr"),
        ("dns.service-ip=not-an-ip", "dns.service-ip"),
        (
            "dns.upstream-nameservers=resolver.example",
            "not a nameserver",
        ),
        ("dns.ttl=100000", "dns.ttl"),
        (
            "load-balancer.cidrs=192.0.2.20-192.0.2.10",
            "ends before it starts",
        ),
        (
            "load-balancer.cidrs=10.1.5.0/28",
            "overlaps the pod or service CIDR",
        ),
        (
            "load-balancer.cidrs=192.0.2.1-2001:db8::1",
            "mixes IPv4 and IPv6",
        ),
        (
            "load-balancer.l2-interfaces=averyveryverylongname",
            "1-15 characters",
        ),
        ("load-balancer.bgp-mode=true", "bgp-local-asn"),
        ("load-balancer.bgp-peer-port=0", "bgp-peer-port"),
        ("ingress.enable-proxy-protocol=1", "use true or false"),
        ("dns.cluster-domain", "expected <feature>.<key>=<value>"),
    ] {
        let e = err(&c, a);
        assert!(e.contains(needle), "{a}: {e}");
    }
}

#[test]
fn unknown_keys_are_rejected_with_the_valid_list() {
    let c = ClusterConfig::default();
    for a in ["dns.domain=x", "nope=1", "dns=1", "network.mode.x=1"] {
        let e = err(&c, a);
        assert!(e.starts_with("unknown key"), "{a}: {e}");
        assert!(
            e.contains("dns.cluster-domain") && e.contains("load-balancer.bgp-peer-port"),
            "{e}"
        );
    }
    let keys = valid_keys();
    assert!(keys.contains(&"pod-cidr".to_string()));
    assert!(keys.contains(&"network.vxlan-port".to_string()));
    assert!(!keys.contains(&"network".to_string()));
}

#[test]
fn bgp_mode_needs_its_keys() {
    let c = ClusterConfig::default();
    let c = set(&c, "load-balancer.bgp-local-asn=64512").expect("asn");
    let c = set(&c, "load-balancer.bgp-peer-address=192.0.2.1").expect("peer");
    let c = set(&c, "load-balancer.bgp-peer-asn=64513").expect("peer asn");
    let c = set(&c, "load-balancer.bgp-mode=true").expect("bgp now complete");
    assert!(c.load_balancer.bgp_mode);
}

#[test]
fn every_immutable_key_is_protected() {
    let old = ClusterConfig::default();
    for a in ["pod-cidr=10.2.0.0/16", "service-cidr=10.153.0.0/24"] {
        let new = set(&old, a).expect("valid on its own");
        let e = check_update(&old, &new).expect_err(a).to_string();
        assert!(e.contains("cannot change after bootstrap"), "{a}: {e}");
    }
    let same = set(&old, "dns.cluster-domain=other.local").expect("mutable");
    check_update(&old, &same).expect("mutable keys may change");
}

#[test]
fn ingress_and_gateway_need_network() {
    let c = set(&ClusterConfig::default(), "network.enabled=false").expect("network off");
    for f in [FeatureId::Ingress, FeatureId::Gateway] {
        let mut n = c.clone();
        n.set_enabled(f, true);
        let e = n.validate().expect_err("dependency").to_string();
        assert_eq!(
            e,
            format!(
                "{f} needs network: enable network first (knet enable network), or disable {f}"
            )
        );
    }
    let mut with_ingress = ClusterConfig::default();
    with_ingress.set_enabled(FeatureId::Ingress, true);
    let mut no_network = with_ingress.clone();
    no_network.set_enabled(FeatureId::Network, false);
    let e = check_update(&with_ingress, &no_network)
        .expect_err("dependant")
        .to_string();
    assert_eq!(
        e,
        "ingress needs network: disable ingress first (knet disable ingress), then network"
    );
}

#[test]
fn get_reads_document_section_and_key() {
    let c = ClusterConfig::default();
    assert_eq!(
        get_key(&c, "dns.cluster-domain").expect("key").as_str(),
        Some("cluster.local")
    );
    assert_eq!(
        get_key(&c, "dns.service-ip").expect("derived").as_str(),
        Some("10.152.183.10")
    );
    assert!(get_key(&c, "network").expect("section").is_mapping());
    assert!(get_key(&c, "").expect("doc").is_mapping());
    assert!(get_key(&c, "pod-cidr").expect("top").is_string());
    assert!(get_key(&c, "dns.nope").is_err());
    assert!(get_key(&c, "nope").is_err());
}

#[test]
fn yaml_round_trip_is_lossless() {
    let mut c = ClusterConfig::default();
    c = set(&c, "load-balancer.cidrs=192.0.2.0/28").expect("cidrs");
    c = set(&c, "network.mtu=1450").expect("mtu");
    let back = ClusterConfig::from_yaml(&c.to_yaml()).expect("round trip");
    assert_eq!(back, c);
}

#[test]
fn every_key_is_documented_in_the_configuration_reference() {
    let doc = include_str!("../../../../docs/configuration.md");
    for key in valid_keys() {
        assert!(
            doc.contains(&format!("| `{key}` |")),
            "docs/configuration.md lacks a row for {key}"
        );
    }
}
