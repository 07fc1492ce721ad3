//! Services on a dual-stack lab: the origin x address x protocol matrix for both families
//! (ClusterIPs of a RequireDualStack Service, NodePorts on the nodes' IPv4 and IPv6 addresses,
//! load-balancer and external IPs of both families reached from an outside host), plus the IPv6
//! socket load balancer (connect6: no DNAT in conntrack), externalTrafficPolicy Local keeping an
//! IPv6 client address, hairpin and reject over IPv6.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::{Patch, PatchParams};

use super::kit::{
    Addresses, EXTERNAL_IP, LB_IP, NS, Origins, Outside, http, http_in_cgroup, matrix, pod_yaml,
    ports, run_matrix, service_yaml, strip_port, wait_until,
};
use crate::support;

/// IPv6 load-balancer and external IPs (documentation prefix), routed to node-1 by the outside
/// host like their IPv4 twins.
const LB_IP6: &str = "2001:db8:40::40";
const EXTERNAL_IP6: &str = "2001:db8:40::41";

/// Dual-stack pod and service CIDRs; only the network feature.
const CONFIG: &str = "pod-cidr: 10.1.0.0/16,fd01::/48\nservice-cidr: 10.152.183.0/24,fd98::/108\ndns:\n  enabled: false\nnetwork-policy:\n  enabled: false\n";

/// The ClusterIPs of Service `name`: (IPv4, IPv6).
async fn cluster_ips(lab: &knet_e2e::Lab, name: &str) -> (String, String) {
    let svcs: Api<Service> = Api::namespaced(lab.client(), NS);
    let ips = svcs
        .get(name)
        .await
        .expect("service")
        .spec
        .and_then(|s| s.cluster_ips)
        .unwrap_or_default();
    let v4 = ips.iter().find(|i| !i.contains(':')).cloned();
    let v6 = ips.iter().find(|i| i.contains(':')).cloned();
    (
        v4.unwrap_or_else(|| panic!("{name}: no IPv4 ClusterIP in {ips:?}")),
        v6.unwrap_or_else(|| panic!("{name}: no IPv6 ClusterIP in {ips:?}")),
    )
}

/// A dual-stack Service: `ports` under `spec`, both families required.
fn dual_service(name: &str, selector: &str, extra: &str) -> String {
    service_yaml(
        name,
        selector,
        &format!("  ipFamilyPolicy: RequireDualStack\n  ipFamilies: [IPv4, IPv6]\n{extra}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_work_for_every_origin_over_ipv4_and_ipv6_on_a_dual_stack_lab() {
    let id = format!("svc6{}", std::process::id() % 100_000);
    let mut opts = knet_e2e::LabOptions::new(&id, 2);
    opts.cni = knet_e2e::CniMode::ConfDir;
    opts.dual_stack = true;
    let lab = knet_e2e::Lab::start(opts)
        .await
        .expect("the lab must start (root, `make deps`)");
    // node-1 balances its pods' ClusterIP connections at the socket (connect4 and connect6 on
    // its lab-made cgroup); node-2 uses nftables alone.
    support::bootstrap_nodes(
        &lab,
        CONFIG,
        &[("node-1", &[]), ("node-2", &["--socket-lb-cgroup", "off"])],
    )
    .await;
    lab.create_namespace(NS).await.expect("namespace");
    let yaml = [
        pod_yaml("a", "node-1", "app: a"),
        pod_yaml("c1", "node-1", "app: c"),
        pod_yaml("c2", "node-2", "app: c"),
        dual_service(
            "web",
            "app: a",
            &format!(
                "  type: LoadBalancer\n  externalIPs: [{EXTERNAL_IP}, \"{EXTERNAL_IP6}\"]\n{}",
                ports(30080)
            ),
        ),
        dual_service(
            "local",
            "app: a",
            &format!(
                "  type: NodePort\n  externalTrafficPolicy: Local\n{}",
                ports(30090)
            ),
        ),
        dual_service("empty", "app: nothing", &ports(0)),
    ]
    .join("---\n");
    lab.apply_yaml(&yaml, NS).await.expect("objects");
    for p in ["a", "c1", "c2"] {
        lab.wait_pod_ready(NS, p, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("pod {p}: {e:#}"));
    }
    let svcs: Api<Service> = Api::namespaced(lab.client(), NS);
    let status = serde_json::json!({"status": {"loadBalancer": {"ingress": [{"ip": LB_IP}, {"ip": LB_IP6}]}}});
    svcs.patch_status("web", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("LB status");
    for (node, want) in [
        ("node-1", "services: nftables + socket LB,"),
        ("node-2", "services: nftables,"),
    ] {
        let ok = wait_until(Duration::from_secs(20), || async {
            support::knet_on(&lab, node, &["status"])
                .await
                .stdout
                .contains(want)
        })
        .await;
        let status = support::knet_on(&lab, node, &["status"]).await.stdout;
        assert!(ok.is_some(), "{node} status must say {want:?}:\n{status}");
    }

    let n1 = lab.node("node-1").expect("node-1");
    let n2 = lab.node("node-2").expect("node-2");
    let c1 = lab.pod_netns(NS, "c1").await.expect("c1");
    let c2 = lab.pod_netns(NS, "c2").await.expect("c2");
    let outside = Outside::start_dual(&lab, &n1.ipv4.to_string(), &n1.ipv6.to_string()).await;
    let (web4, web6) = cluster_ips(&lab, "web").await;

    // The matrix, per family: origin x address x protocol, every cell a real connection to
    // pod a.
    let t = Instant::now();
    let origins = Origins {
        c1: &c1,
        c2: &c2,
        node1: &n1.netns,
        node2: &n2.netns,
        outside: &outside.netns,
    };
    let (n1_v4, n2_v4) = (n1.ipv4.to_string(), n2.ipv4.to_string());
    let (n1_v6, n2_v6) = (n1.ipv6.to_string(), n2.ipv6.to_string());
    let v4 = matrix(
        &origins,
        &Addresses {
            cluster_ip: &web4,
            node1: &n1_v4,
            node2: &n2_v4,
            lb: LB_IP,
            external: EXTERNAL_IP,
        },
    );
    let v6 = matrix(
        &origins,
        &Addresses {
            cluster_ip: &web6,
            node1: &n1_v6,
            node2: &n2_v6,
            lb: LB_IP6,
            external: EXTERNAL_IP6,
        },
    );
    let cells = 2 * (v4.len() + v6.len());
    let mut failures = run_matrix(&lab, "IPv4", &v4, "a").await;
    failures.extend(run_matrix(&lab, "IPv6", &v6, "a").await);
    println!("dual-stack matrix: {cells} cells in {:?}", t.elapsed());
    assert!(failures.is_empty(), "failed cells: {failures:#?}");

    // The IPv6 socket load balancer on node-1: a process in the pods' cgroup connects straight
    // to the backend (no DNAT for conntrack to see); the same curl outside the cgroup is
    // DNAT-ed by nftables.
    let (_, local6) = cluster_ips(&lab, "local").await;
    let cg = n1.cgroup.display().to_string();
    for _ in 0..3 {
        let h = http_in_cgroup(&c1, &cg, &local6, 80, "hostname")
            .await
            .expect("IPv6 socket LB");
        assert_eq!(h, "a");
    }
    let ct6 = || async {
        lab.exec_node(
            "node-1",
            &[
                "conntrack",
                "-L",
                "-f",
                "ipv6",
                "-p",
                "tcp",
                "--orig-dst",
                &local6,
            ],
            Duration::from_secs(5),
        )
        .await
        .expect("conntrack")
        .stdout
    };
    assert_eq!(
        ct6().await.trim(),
        "",
        "no DNAT for socket-balanced IPv6 flows"
    );
    assert_eq!(
        http(&lab, &c1, &local6, 80, "hostname")
            .await
            .expect("nft6"),
        "a"
    );
    let all = lab
        .exec_node(
            "node-1",
            &["conntrack", "-L", "-f", "ipv6"],
            Duration::from_secs(5),
        )
        .await
        .expect("conntrack");
    assert!(
        ct6().await.contains(&local6),
        "the nftables IPv6 path is seen by conntrack: {all:?}"
    );

    // externalTrafficPolicy Local keeps the outside client's address in both families; the
    // Cluster policy masquerades it; node-2 (no local endpoint) drops.
    for (client, n1_ip, n2_ip) in [
        (outside.v4.clone(), n1.ipv4.to_string(), n2.ipv4.to_string()),
        (outside.v6.clone(), n1.ipv6.to_string(), n2.ipv6.to_string()),
    ] {
        let seen = http(&lab, &outside.netns, &n1_ip, 30090, "clientip")
            .await
            .expect("Local");
        assert_eq!(strip_port(&seen), client, "Local keeps the client IP");
        let seen = http(&lab, &outside.netns, &n1_ip, 30080, "clientip")
            .await
            .expect("Cluster");
        assert_ne!(strip_port(&seen), client, "Cluster masquerades");
        assert!(
            http(&lab, &outside.netns, &n2_ip, 30090, "hostname")
                .await
                .is_err(),
            "node-2 has no local endpoint for {n2_ip}"
        );
    }

    // Hairpin over IPv6: a reaches itself through its Service's IPv6 ClusterIP.
    let a_ns = lab.pod_netns(NS, "a").await.expect("a");
    assert_eq!(
        http(&lab, &a_ns, &web6, 80, "hostname")
            .await
            .expect("IPv6 hairpin"),
        "a"
    );

    // No endpoints: refused at once in both families (TCP reset: curl exit 7, not a timeout).
    let (empty4, empty6) = cluster_ips(&lab, "empty").await;
    for ip in [&empty4, &empty6] {
        let err = http(&lab, &c1, ip, 80, "hostname")
            .await
            .expect_err("no endpoints");
        assert!(format!("{err:#}").contains("curl: (7)"), "{ip}: {err:#}");
    }
}
