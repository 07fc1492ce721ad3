//! The network feature on a two-node lab: knet's own CNI plugin wires real pods, pods reach
//! each other on the same node and across nodes without NAT, and disable/enable removes and
//! restores what the feature installed.
//!
//! Submodules: `modes` (TCP/UDP over IPv4 and IPv6 in native, vxlan and auto mode, egress
//! masquerade), `lifecycle` (node join/leave, daemon restart, kill -9 during an ADD storm).

#![allow(clippy::print_stdout)] // tests print measured times

mod kit;
mod lifecycle;
mod modes;

use std::time::Duration;

use knet_e2e::Lab;

use crate::support;

const AGNHOST: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";

fn pod(name: &str, node: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: net}}\nspec:\n  nodeName: {node}\n  containers:\n  - name: c\n    image: {AGNHOST}\n    args: [netexec, --http-port=8080, --udp-port=8081]\n    readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}\n"
    )
}

async fn pod_ip(lab: &Lab, name: &str) -> String {
    let p = lab
        .wait_pod_ready("net", name, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("pod {name} never became ready: {e:#}"));
    p.status.and_then(|s| s.pod_ip).expect("pod IP")
}

/// `agnhost netexec`'s /clientip echoes the address the connection came from.
async fn client_ip_seen(lab: &Lab, from: &str, to_ip: &str) -> String {
    lab.curl_from_pod(
        "net",
        from,
        &format!("http://{to_ip}:8080/clientip"),
        Duration::from_secs(5),
    )
    .await
    .unwrap_or_else(|e| panic!("{from} -> {to_ip}: {e:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_reach_each_other_on_one_node_and_across_nodes_without_nat() {
    let lab = support::lab_with_nodes("net", 2).await;
    support::bootstrap_nodes(
        &lab,
        support::BOOTSTRAP_CONFIG,
        &[("node-1", &[]), ("node-2", &[])],
    )
    .await;
    lab.create_namespace("net").await.expect("namespace");
    let yaml = [pod("a", "node-1"), pod("b", "node-1"), pod("c", "node-2")].join("---\n");
    lab.apply_yaml(&yaml, "net").await.expect("pods");
    let (a, b, c) = (
        pod_ip(&lab, "a").await,
        pod_ip(&lab, "b").await,
        pod_ip(&lab, "c").await,
    );
    // Each pod's IP comes from its Node's spec.podCIDR (allocated by kube-controller-manager).
    for (ip, node) in [(&a, "node-1"), (&b, "node-1"), (&c, "node-2")] {
        let cidr: ipnet::IpNet = lab
            .node(node)
            .expect("node")
            .pod_cidr
            .expect("nodeipam gave the node a pod CIDR")
            .parse()
            .expect("CIDR");
        let ip: std::net::IpAddr = ip.parse().expect("pod IP");
        assert!(
            cidr.contains(&ip),
            "{ip} must lie in {node}'s pod CIDR {cidr}"
        );
    }

    // TCP, same node and across nodes, both directions; the source address is the pod's own.
    for (from, from_ip, to_ip) in [("a", &a, &b), ("a", &a, &c), ("c", &c, &a), ("b", &b, &c)] {
        let seen = client_ip_seen(&lab, from, to_ip).await;
        let seen_ip = seen.rsplit_once(':').map_or(seen.as_str(), |(ip, _)| ip);
        assert_eq!(
            seen_ip,
            from_ip.as_str(),
            "{from} -> {to_ip} must arrive without NAT"
        );
    }

    // UDP across nodes: netexec answers "echo" datagrams on 8081.
    let out = lab
        .exec_pod(
            "net",
            "a",
            &[
                "sh",
                "-c",
                &format!("echo 'echo hello' | timeout 5 socat -t2 - UDP:{c}:8081"),
            ],
            Duration::from_secs(10),
        )
        .await
        .expect("exec");
    assert!(out.stdout.contains("hello"), "UDP a -> c: {out:?}");

    // Disable removes routes and the masquerade table and makes new pods fail; enable restores
    // connectivity for the running pods.
    let out = support::knet_on(&lab, "node-1", &["disable", "network"]).await;
    assert!(out.success(), "{}", out.stderr);
    let n1 = lab.node("node-1").expect("node");
    let mut gone = false;
    for _ in 0..100 {
        let t = lab
            .exec_node(
                "node-1",
                &["nft", "list", "table", "inet", "knet-network"],
                Duration::from_secs(5),
            )
            .await
            .expect("nft");
        let routes = lab
            .exec_node(
                "node-1",
                &["ip", "route", "show", "proto", "76"],
                Duration::from_secs(5),
            )
            .await
            .expect("ip route");
        if !t.success() && routes.stdout.trim().is_empty() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gone,
        "disable must remove the nft table and peer routes on {}",
        n1.name
    );
    assert!(
        lab.curl_from_pod(
            "net",
            "a",
            &format!("http://{c}:8080/hostname"),
            Duration::from_secs(2)
        )
        .await
        .is_err(),
        "cross-node traffic must stop while network is disabled"
    );
    let out = support::knet_on(&lab, "node-1", &["enable", "network"]).await;
    assert!(out.success(), "{}", out.stderr);
    let mut back = false;
    for _ in 0..50 {
        if lab
            .curl_from_pod(
                "net",
                "a",
                &format!("http://{c}:8080/hostname"),
                Duration::from_secs(2),
            )
            .await
            .is_ok_and(|h| h.trim() == "c")
        {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(back, "enable must restore a -> c");
}
