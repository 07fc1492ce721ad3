//! Pod-to-pod TCP and UDP over IPv4 and IPv6, on one node and across nodes, in each
//! `network.mode`; egress to a host outside the cluster leaves with the node's address.

use std::time::Duration;

use knet_e2e::{Lab, Segment};

use super::kit::{self, Outside, PodIps};

/// Pods a, b on node-1 and c on node-2; the full TCP/UDP matrix in both families; then egress.
async fn two_node_dual_stack(lab: &Lab, mode: &str) -> (PodIps, PodIps, PodIps) {
    let cfg = kit::dual_stack_config(mode);
    for node in ["node-1", "node-2"] {
        kit::bootstrap(lab, node, &cfg).await;
    }
    let ips = kit::create_pods(lab, &[("a", "node-1"), ("b", "node-1"), ("c", "node-2")]).await;
    let (a, b, c) = (&ips[0], &ips[1], &ips[2]);
    for (p, node) in [(a, "node-1"), (b, "node-1"), (c, "node-2")] {
        let cidrs = kit::node_pod_cidrs(lab, node).await;
        assert_eq!(
            cidrs.len(),
            2,
            "{node} must have a dual-stack podCIDRs: {cidrs:?}"
        );
        for ip in [p.of(false), p.of(true)] {
            let ip: std::net::IpAddr = ip.parse().expect("ip");
            assert!(
                cidrs
                    .iter()
                    .any(|c| c.parse::<ipnet::IpNet>().expect("cidr").contains(&ip)),
                "{ip} of {} must lie in {node}'s pod CIDRs {cidrs:?}",
                p.name
            );
        }
    }
    kit::assert_matrix(lab, &[(a, b), (b, a), (a, c), (c, a), (b, c)], true).await;
    (a.clone(), b.clone(), c.clone())
}

/// Pod -> outside host arrives from the node's own address, in both families; pod -> pod keeps
/// the pod address (checked by the matrix before).
async fn egress_is_masqueraded(lab: &Lab, from: &[(&PodIps, &str)]) {
    let outside = Outside::start(lab).await;
    for (from, node) in from {
        egress_from(lab, &outside, from, node).await;
    }
}

async fn egress_from(lab: &Lab, outside: &Outside, from: &PodIps, node: &str) {
    let n = lab.node(node).expect("node");
    for (dst, want) in [
        (&outside.v4, n.ipv4.to_string()),
        (&outside.v6, n.ipv6.to_string()),
    ] {
        let seen = kit::tcp_client_ip(lab, &from.name, dst)
            .await
            .unwrap_or_else(|e| panic!("TCP {} -> outside {dst}: {e:#}", from.name));
        assert_eq!(seen, want, "egress to {dst} must carry {node}'s address");
        let seen = kit::udp_client_ip(lab, &from.name, dst)
            .await
            .unwrap_or_else(|e| panic!("UDP {} -> outside {dst}: {e:#}", from.name));
        assert_eq!(
            seen, want,
            "UDP egress to {dst} must carry {node}'s address"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_mode_dual_stack_pods_talk_and_egress_is_masqueraded() {
    let lab = kit::lab("netnat", &[Segment::A, Segment::A], true).await;
    let (a, _b, c) = two_node_dual_stack(&lab, "native").await;
    // Native: plain routes via the peer's node address, no tunnel device.
    let cidrs = kit::node_pod_cidrs(&lab, "node-2").await;
    for cidr in &cidrs {
        let r = kit::peer_route_to(&lab, "node-1", cidr)
            .await
            .unwrap_or_else(|| panic!("node-1 has no route to {cidr}"));
        assert!(
            r.contains("via 172.31.250.12") || r.contains("via fd00:250::12"),
            "{r}"
        );
        assert!(!r.contains("knet.vxlan"), "{r}");
    }
    let vx = lab
        .exec_node(
            "node-1",
            &["ip", "link", "show", "knet.vxlan"],
            Duration::from_secs(5),
        )
        .await
        .expect("ip link");
    assert!(!vx.success(), "native mode must not create knet.vxlan");
    egress_is_masqueraded(&lab, &[(&a, "node-1"), (&c, "node-2")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vxlan_mode_dual_stack_pods_talk_and_egress_is_masqueraded() {
    let lab = kit::lab("netvx", &[Segment::A, Segment::A], true).await;
    let (a, _b, c) = two_node_dual_stack(&lab, "vxlan").await;
    // Both families go through knet.vxlan even though the peer is on-link.
    for cidr in kit::node_pod_cidrs(&lab, "node-2").await {
        let r = kit::peer_route_to(&lab, "node-1", &cidr)
            .await
            .unwrap_or_else(|| panic!("node-1 has no route to {cidr}"));
        assert!(
            r.contains("dev knet.vxlan"),
            "{cidr} must use the overlay: {r}"
        );
    }
    let fdb = lab
        .exec_node(
            "node-1",
            &["bridge", "fdb", "show", "dev", "knet.vxlan"],
            Duration::from_secs(5),
        )
        .await
        .expect("bridge fdb");
    assert!(fdb.stdout.contains("dst 172.31.250.12"), "{}", fdb.stdout);
    egress_is_masqueraded(&lab, &[(&a, "node-1"), (&c, "node-2")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_mode_picks_native_on_link_and_vxlan_across_segments() {
    // node-1 and node-2 share segment A; node-3 sits on segment B behind the lab's router.
    let lab = kit::lab("netauto", &[Segment::A, Segment::A, Segment::B], true).await;
    let cfg = kit::dual_stack_config("auto");
    for node in ["node-1", "node-2", "node-3"] {
        kit::bootstrap(&lab, node, &cfg).await;
    }
    let ips = kit::create_pods(&lab, &[("a", "node-1"), ("b", "node-2"), ("c", "node-3")]).await;
    let (a, b, c) = (&ips[0], &ips[1], &ips[2]);
    for cidr in kit::node_pod_cidrs(&lab, "node-2").await {
        let r = kit::peer_route_to(&lab, "node-1", &cidr)
            .await
            .unwrap_or_else(|| panic!("node-1 has no route to {cidr}"));
        assert!(
            !r.contains("knet.vxlan") && r.contains(" via "),
            "on-link peer node-2 ({cidr}) must be native: {r}"
        );
    }
    for cidr in kit::node_pod_cidrs(&lab, "node-3").await {
        let r = kit::peer_route_to(&lab, "node-1", &cidr)
            .await
            .unwrap_or_else(|| panic!("node-1 has no route to {cidr}"));
        assert!(
            r.contains("dev knet.vxlan"),
            "node-3 on the other segment ({cidr}) must go over VXLAN: {r}"
        );
    }
    kit::assert_matrix(
        &lab,
        &[(a, b), (b, a), (a, c), (c, a), (b, c), (c, b)],
        true,
    )
    .await;
    let status = crate::support::knet_on(&lab, "node-1", &["status"]).await;
    println!("node-1 status:\n{}", status.stdout);
    assert!(
        status
            .stdout
            .contains("2 peer(s) (1 over VXLAN), mode auto"),
        "status must count node-3 alone as a VXLAN peer: {}",
        status.stdout
    );
}
