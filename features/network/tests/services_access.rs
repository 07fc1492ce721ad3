//! Who may reach a Service, on the real kernel (the namespaces of tests/services/lab.rs):
//! `loadBalancerSourceRanges` admit only their sources to the load-balancer IPs (changes
//! applied incrementally over netlink), and `network.nodeport-addresses` limits the addresses
//! NodePorts answer on. Needs root; fails without it.

#[path = "services/lab.rs"]
#[allow(dead_code, reason = "shared with tests/services.rs")]
mod lab;

use std::io::ErrorKind;
use std::net::IpAddr;
use std::process::{Command, Stdio};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use knet_core::config::NodePortAddress;
use knet_network::kernel::Netlink;
use knet_network::peers::local_addresses;
use knet_network::services::apply::{full_script, parse_names};
use knet_network::services::base::StaticConfig;
use knet_network::services::desired::{Desired, NodeInputs};
use knet_network::services::exec::{nft_apply, nft_list};
use knet_network::services::nfnl::NfSocket;
use lab::{NODE_IP, Ns, OUTSIDE_IP, Topology, privileged};
use serde_json::json;

/// A second address of the outside host, outside the ranges the test allows.
const OTHER_SOURCE: &str = "192.168.77.3";
const LB_IP: &str = "192.0.2.20";

fn lb_service(ranges: &[&str]) -> Service {
    let mut svc: Service = serde_json::from_value(json!({
        "metadata": {"namespace": "t", "name": "lb"},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.152.183.20",
                 "clusterIPs": ["10.152.183.20"],
                 "loadBalancerSourceRanges": ranges,
                 "ports": [{"name": "p", "port": 80, "protocol": "TCP", "nodePort": 30090}]}}))
    .expect("service");
    svc.status = serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": LB_IP}]}}))
        .expect("status");
    svc
}

fn node_port_service() -> Service {
    serde_json::from_value(json!({
        "metadata": {"namespace": "t", "name": "np"},
        "spec": {"type": "NodePort", "clusterIP": "10.152.183.21",
                 "clusterIPs": ["10.152.183.21"],
                 "ports": [{"name": "p", "port": 80, "protocol": "TCP", "nodePort": 30100}]}}))
    .expect("service")
}

fn slice(svc: &str) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"namespace": "t", "name": format!("{svc}-1"),
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "ports": [{"name": "p", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.1.0.11"], "nodeName": "node"}]}))
    .expect("slice")
}

fn inputs() -> NodeInputs {
    NodeInputs {
        node: "node".into(),
        sctp: false,
        pod_cidrs: vec!["10.1.0.0/16".parse().expect("cidr")],
        node_ips: vec![NODE_IP.parse().expect("ip")],
    }
}

/// A TCP connection from `ns` with source address `src`: what the server said, or None when
/// no connection was made (bounded: 2 s to connect).
fn tcp_from(ns: &Ns, src: &str, target: &str) -> Option<String> {
    let out = Command::new("ip")
        .args([
            "netns", "exec", &ns.name, "timeout", "5", "socat", "-T2", "-",
        ])
        .arg(format!("TCP:{target},bind={src},connect-timeout=2"))
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !s.is_empty()).then_some(s)
}

/// Applies `desired` as a full transaction with the static part for `config`.
async fn apply_full(node: &Ns, config: &StaticConfig, desired: &Desired) {
    let path = node.path();
    let kernel = parse_names(&nft_list(Some(&path)).await.expect("list"));
    nft_apply(
        Some(&path),
        &full_script(&kernel, config, &desired.ruleset()),
    )
    .await
    .expect("full apply");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancer_source_ranges_admit_only_their_sources() {
    assert!(privileged(), "needs root and nft");
    let t = Topology::new(1);
    t.pods[0].0.serve("a", 8080);
    t.outside
        .ip(&["addr", "add", &format!("{OTHER_SOURCE}/24"), "dev", "eth0"]);
    t.outside.ip(&["route", "add", LB_IP, "via", NODE_IP]);
    let lb = format!("{LB_IP}:80");
    let node_port = format!("{NODE_IP}:30090");

    let mut desired = Desired::default();
    let slices = [slice("lb")];
    desired.update(
        &[lb_service(&[&format!("{OUTSIDE_IP}/32")])],
        &slices,
        &inputs(),
        false,
    );
    apply_full(&t.node, &StaticConfig::default(), &desired).await;
    assert_eq!(
        tcp_from(&t.outside, OUTSIDE_IP, &lb).as_deref(),
        Some(format!("a {NODE_IP}").as_str()),
        "an allowed source reaches the LB IP (masqueraded: Cluster policy)"
    );
    assert_eq!(
        tcp_from(&t.outside, OTHER_SOURCE, &lb),
        None,
        "a source outside the ranges is dropped"
    );
    assert!(
        tcp_from(&t.outside, OTHER_SOURCE, &node_port).is_some(),
        "the ranges do not apply to the NodePort"
    );

    // The ranges change: an incremental netlink batch swaps who gets in.
    let update = desired.update(
        &[lb_service(&[
            &format!("{OTHER_SOURCE}/32"),
            "198.51.100.0/24",
        ])],
        &slices,
        &inputs(),
        true,
    );
    assert_eq!(update.recomputed, 1);
    let mut socket = NfSocket::open(Some(&t.node.path())).await.expect("socket");
    socket.apply(&update.diff).expect("netlink batch");
    assert!(tcp_from(&t.outside, OTHER_SOURCE, &lb).is_some());
    assert_eq!(tcp_from(&t.outside, OUTSIDE_IP, &lb), None);

    // No ranges any more: everyone gets in, and the firewall chain is gone.
    let update = desired.update(&[lb_service(&[])], &slices, &inputs(), true);
    socket.apply(&update.diff).expect("netlink batch");
    assert!(tcp_from(&t.outside, OUTSIDE_IP, &lb).is_some());
    assert!(tcp_from(&t.outside, OTHER_SOURCE, &lb).is_some());
    let listing = t
        .node
        .exec(&["nft", "list", "table", "inet", "knet-services"]);
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(!listing.contains("chain fw4-"), "{listing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodeport_addresses_limit_where_node_ports_answer() {
    assert!(privileged(), "needs root and nft");
    let t = Topology::new(1);
    t.pods[0].0.serve("a", 8080);
    // A second node address; the outside host reaches it through its default route.
    let second = "192.168.78.1";
    t.node
        .ip(&["addr", "add", &format!("{second}/24"), "dev", "ext0"]);
    let mut desired = Desired::default();
    desired.update(&[node_port_service()], &[slice("np")], &inputs(), false);
    let at = |ip: &str| format!("{ip}:30100");

    // Default (all): both addresses answer.
    apply_full(&t.node, &StaticConfig::default(), &desired).await;
    assert!(t.outside.tcp(&at(NODE_IP)).is_ok());
    assert!(t.outside.tcp(&at(second)).is_ok());

    // A CIDR: the node's local addresses inside it, listed as the sync loop lists them.
    let nl = Netlink::open(Some(&t.node.path())).await.expect("netlink");
    let local: Vec<IpAddr> = local_addresses(&nl)
        .await
        .expect("addresses")
        .iter()
        .map(|n| n.addr())
        .collect();
    let cidr = NodePortAddress::Cidr("192.168.77.0/24".parse().expect("cidr"));
    let config = StaticConfig::for_node_ports(&[cidr], &[], &local);
    assert_eq!(
        config.node_port_ips_v4,
        Some(vec![NODE_IP.parse().expect("ip")])
    );
    apply_full(&t.node, &config, &desired).await;
    assert!(t.outside.tcp(&at(NODE_IP)).is_ok());
    let refused = t
        .outside
        .tcp(&at(second))
        .expect_err("not a NodePort address");
    assert_eq!(
        refused.kind(),
        ErrorKind::ConnectionRefused,
        "the port is not translated there: {refused}"
    );

    // primary: the Node's InternalIPs.
    let second_ip: IpAddr = second.parse().expect("ip");
    let config = StaticConfig::for_node_ports(&[NodePortAddress::Primary], &[second_ip], &local);
    apply_full(&t.node, &config, &desired).await;
    assert!(t.outside.tcp(&at(second)).is_ok());
    assert!(t.outside.tcp(&at(NODE_IP)).is_err());

    // Back to all: the address set is removed with the rule that used it.
    apply_full(&t.node, &StaticConfig::default(), &desired).await;
    assert!(t.outside.tcp(&at(NODE_IP)).is_ok());
    assert!(t.outside.tcp(&at(second)).is_ok());
    let sets = parse_names(&nft_list(Some(&t.node.path())).await.expect("list")).sets;
    assert!(
        !sets.iter().any(|s| s.starts_with("nodeport-ips")),
        "{sets:?}"
    );
}
