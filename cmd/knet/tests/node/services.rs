//! Services without kube-proxy on a two-node lab: every Service type from pods on the same and
//! the other node, from the nodes' own namespaces and from an outside host (NodePort, load
//! balancer IP, external IP), over TCP and UDP; traffic policies with the client address kept;
//! the health check port; affinity; no-endpoint rejects; endpoint churn; a daemon restart
//! keeping rules and an established connection; disable leaving nothing behind.

mod access;
mod bench;
mod dual_stack;
mod endpoints;
mod kit;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};

use kit::{
    Addresses, CONFIG, EXTERNAL_IP, LB_IP, NS, Origins, Outside, http, http_in_cgroup, matrix,
    pod_yaml, ports, run_matrix, service_yaml, strip_port, wait_until,
};

use crate::support;

/// The ClusterIP of Service `name`.
async fn cluster_ip(lab: &knet_e2e::Lab, name: &str) -> String {
    let svcs: Api<Service> = Api::namespaced(lab.client(), NS);
    svcs.get(name)
        .await
        .expect("service")
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("clusterIP")
}

/// Waits (bounded) until `netns` gets `want` from `ip:80/hostname`; how long it took.
async fn wait_hostname(
    lab: &knet_e2e::Lab,
    netns: &str,
    ip: &str,
    port: u16,
    want: &str,
) -> Duration {
    wait_until(Duration::from_secs(20), || async {
        http(lab, netns, ip, port, "hostname")
            .await
            .is_ok_and(|h| h == want)
    })
    .await
    .unwrap_or_else(|| panic!("{netns} never got {want:?} from {ip}:{port}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_work_for_every_origin_and_follow_endpoints() {
    let lab = support::lab_with_nodes("svc", 2).await;
    // node-1 balances its pods' ClusterIP connections at the socket (eBPF, attached by
    // bootstrap to the lab-made cgroup of node-1's pods); node-2 uses nftables alone.
    let n1 = lab.node("node-1").expect("node-1");
    support::bootstrap_nodes(
        &lab,
        CONFIG,
        &[("node-1", &[]), ("node-2", &["--socket-lb-cgroup", "off"])],
    )
    .await;
    lab.create_namespace(NS).await.expect("namespace");
    let yaml = [
        pod_yaml("a", "node-1", "app: a, role: web"),
        pod_yaml("b", "node-2", "app: b, role: web"),
        pod_yaml("c1", "node-1", "app: c"),
        pod_yaml("c2", "node-2", "app: c"),
        service_yaml(
            "web",
            "app: a",
            &format!("  type: LoadBalancer\n  externalIPs: [{EXTERNAL_IP}]\n{}", ports(30080)),
        ),
        service_yaml(
            "local",
            "app: a",
            &format!("  type: LoadBalancer\n  externalTrafficPolicy: Local\n  healthCheckNodePort: 30200\n{}", ports(30090)),
        ),
        service_yaml(
            "sticky",
            "role: web",
            &format!("  sessionAffinity: ClientIP\n  sessionAffinityConfig: {{clientIP: {{timeoutSeconds: 3}}}}\n{}", ports(0)),
        ),
        service_yaml("both", "role: web", &ports(0)),
        service_yaml("empty", "app: nothing", &ports(0)),
    ]
    .join("---\n");
    lab.apply_yaml(&yaml, NS).await.expect("objects");
    for p in ["a", "b", "c1", "c2"] {
        lab.wait_pod_ready(NS, p, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("pod {p}: {e:#}"));
    }
    let svcs: Api<Service> = Api::namespaced(lab.client(), NS);
    for name in ["web", "local"] {
        let status = serde_json::json!({"status": {"loadBalancer": {"ingress": [{"ip": LB_IP}]}}});
        if name == "web" {
            svcs.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
                .await
                .expect("LB status");
        }
    }
    let n2 = lab.node("node-2").expect("node-2");
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
    let cg = n1.cgroup.display().to_string();
    let attached =
        knet_e2e::process::run(&["bpftool", "cgroup", "show", &cg], Duration::from_secs(5))
            .await
            .expect("bpftool");
    let host_root = knet_e2e::process::run(
        &["bpftool", "cgroup", "show", knet_e2e::config::CGROUP_ROOT],
        Duration::from_secs(5),
    )
    .await
    .expect("bpftool");
    assert!(
        host_root.success(),
        "bpftool cannot list {}: {host_root:?}",
        knet_e2e::config::CGROUP_ROOT
    );
    assert!(
        !host_root.stdout.contains("knet_"),
        "the socket LB must never attach to the host's cgroup root: {host_root:?}"
    );
    assert!(
        attached.stdout.contains("connect4"),
        "socket LB attached: {attached:?}"
    );
    let (n1_ip, n2_ip) = (n1.ipv4.to_string(), n2.ipv4.to_string());
    let c1 = lab.pod_netns(NS, "c1").await.expect("c1");
    let c2 = lab.pod_netns(NS, "c2").await.expect("c2");
    let outside = Outside::start(&lab, &n1_ip).await;
    let web = cluster_ip(&lab, "web").await;

    // The matrix: origin x address x protocol; every cell one real connection to pod a.
    let t = Instant::now();
    wait_hostname(&lab, &c1, &web, 80, "a").await;
    let origins = Origins {
        c1: &c1,
        c2: &c2,
        node1: &n1.netns,
        node2: &n2.netns,
        outside: &outside.netns,
    };
    let cells = matrix(
        &origins,
        &Addresses {
            cluster_ip: &web,
            node1: &n1_ip,
            node2: &n2_ip,
            lb: LB_IP,
            external: EXTERNAL_IP,
        },
    );
    let failures = run_matrix(&lab, "IPv4", &cells, "a").await;
    println!("matrix: {} cells in {:?}", cells.len() * 2, t.elapsed());
    assert!(failures.is_empty(), "failed cells: {failures:#?}");

    // Socket LB on node-1: a pod process (in the node's cgroup) connects straight to the
    // backend, so conntrack never sees the ClusterIP; the same curl outside the cgroup goes
    // through nftables DNAT.
    let local_ip = cluster_ip(&lab, "local").await;
    for _ in 0..3 {
        let h = http_in_cgroup(&c1, &cg, &local_ip, 80, "hostname")
            .await
            .expect("socket LB");
        assert_eq!(h, "a");
    }
    let ct = |ip: String| {
        let lab = &lab;
        async move {
            lab.exec_node(
                "node-1",
                &["conntrack", "-L", "-p", "tcp", "--orig-dst", &ip],
                Duration::from_secs(5),
            )
            .await
            .expect("conntrack")
            .stdout
        }
    };
    assert_eq!(
        ct(local_ip.clone()).await.trim(),
        "",
        "no DNAT for socket-balanced flows"
    );
    assert_eq!(
        http(&lab, &c1, &local_ip, 80, "hostname")
            .await
            .expect("nft"),
        "a"
    );
    assert!(
        ct(local_ip.clone()).await.contains(&local_ip),
        "nftables path seen by conntrack"
    );

    // Hairpin: a reaches itself through its Service.
    let a_ns = lab.pod_netns(NS, "a").await.expect("a");
    assert_eq!(
        http(&lab, &a_ns, &web, 80, "hostname")
            .await
            .expect("hairpin"),
        "a"
    );

    // externalTrafficPolicy Local: the client address is kept; a node without a local
    // endpoint drops; the health check port says which node has one.
    let seen = http(&lab, &outside.netns, &n1_ip, 30090, "clientip")
        .await
        .expect("local");
    assert_eq!(strip_port(&seen), outside.v4, "Local keeps the client IP");
    let seen = http(&lab, &outside.netns, &n1_ip, 30080, "clientip")
        .await
        .expect("cluster");
    assert_ne!(strip_port(&seen), outside.v4, "Cluster masquerades");
    assert!(
        http(&lab, &outside.netns, &n2_ip, 30090, "hostname")
            .await
            .is_err(),
        "node-2 has no local endpoint"
    );
    let hc1 = http(&lab, &outside.netns, &n1_ip, 30200, "")
        .await
        .expect("hc node-1");
    assert!(hc1.contains("\"localEndpoints\":1"), "{hc1}");
    let hc2 = lab
        .exec_in(
            &outside.netns,
            &[
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "3",
                &format!("http://{n2_ip}:30200/"),
            ],
            Duration::from_secs(6),
        )
        .await
        .expect("hc node-2");
    assert_eq!(hc2.stdout.trim(), "503");

    // No endpoints: refused at once, not a timeout.
    let empty = cluster_ip(&lab, "empty").await;
    let t = Instant::now();
    let err = http(&lab, &c1, &empty, 80, "hostname")
        .await
        .expect_err("no endpoints");
    // curl exit 7: the connection was refused (reset), not timed out (28).
    assert!(format!("{err:#}").contains("curl: (7)"), "{err:#}");
    println!("no-endpoint reject after {:?}", t.elapsed());

    // Affinity sticks, then expires (the timeout set empties).
    let sticky = cluster_ip(&lab, "sticky").await;
    wait_until(Duration::from_secs(20), || async {
        http(&lab, &c1, &sticky, 80, "hostname").await.is_ok()
    })
    .await
    .expect("sticky serves");
    let first = http(&lab, &c1, &sticky, 80, "hostname")
        .await
        .expect("sticky");
    for _ in 0..10 {
        assert_eq!(
            http(&lab, &c1, &sticky, 80, "hostname")
                .await
                .expect("sticky"),
            first
        );
    }
    let sets = || async {
        lab.exec_node(
            "node-1",
            &["nft", "list", "table", "inet", "knet-services"],
            Duration::from_secs(5),
        )
        .await
        .expect("nft")
        .stdout
    };
    let listing = sets().await;
    assert!(
        listing.contains("expires"),
        "an affinity entry is recorded:\n{listing}"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!sets().await.contains("expires"), "affinity entries expire");

    // Endpoint churn: both → delete b → only a; a new pod joins.
    let both = cluster_ip(&lab, "both").await;
    wait_hostname(&lab, &c1, &both, 80, "b").await;
    let pods: Api<Pod> = Api::namespaced(lab.client(), NS);
    let t = Instant::now();
    pods.delete("b", &DeleteParams::default().grace_period(0))
        .await
        .expect("delete b");
    let mut gone = None;
    let mut streak = 0;
    while t.elapsed() < Duration::from_secs(20) {
        let ok = http(&lab, &c1, &both, 80, "hostname")
            .await
            .is_ok_and(|h| h == "a");
        streak = if ok { streak + 1 } else { 0 };
        if streak >= 8 {
            gone = Some(t.elapsed());
            break;
        }
    }
    assert!(gone.is_some(), "b must leave the Service");
    println!(
        "endpoint removal reflected after {:?} (incl. pod deletion)",
        t.elapsed()
    );
    let t = Instant::now();
    lab.apply_yaml(&pod_yaml("b2", "node-2", "app: b, role: web"), NS)
        .await
        .expect("b2");
    wait_hostname(&lab, &c1, &both, 80, "b2").await;
    println!(
        "new endpoint reachable after {:?} (incl. pod start)",
        t.elapsed()
    );

    // Restart: the rules stay while the daemon is down, an established connection survives.
    let held = {
        let c1 = c1.clone();
        let web = web.clone();
        let lab_cmd = format!(
            "(sleep 6; printf 'GET /hostname HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n'; sleep 2) | timeout 15 socat - TCP:{web}:80"
        );
        let netns = c1;
        let argv = knet_e2e::netns::exec_argv(&netns, &["sh", "-c", &lab_cmd]);
        tokio::spawn(async move {
            let argv: Vec<String> = argv
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
            knet_e2e::process::run(&refs, Duration::from_secs(20)).await
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    lab.stop_knet_daemon("node-1").await.expect("stop");
    assert_eq!(
        http(&lab, &c2, &web, 80, "hostname")
            .await
            .expect("rules stay"),
        "a"
    );
    lab.start_knet_daemon("node-1").await.expect("start");
    let out = held.await.expect("join").expect("held connection");
    assert!(
        out.stdout.contains("\r\n\r\na") || out.stdout.ends_with('a'),
        "held connection: {out:?}"
    );
    wait_hostname(&lab, &c1, &web, 80, "a").await;

    // Disable: the table and the service CIDR route go away.
    let out = support::knet_on(&lab, "node-1", &["disable", "network"]).await;
    assert!(out.success(), "{}", out.stderr);
    let clean = wait_until(Duration::from_secs(20), || async {
        let t = lab
            .exec_node(
                "node-1",
                &["nft", "list", "table", "inet", "knet-services"],
                Duration::from_secs(5),
            )
            .await
            .expect("nft");
        let r = lab
            .exec_node(
                "node-1",
                &["ip", "route", "show", "proto", "77"],
                Duration::from_secs(5),
            )
            .await
            .expect("ip route");
        let b = knet_e2e::process::run(&["bpftool", "cgroup", "show", &cg], Duration::from_secs(5))
            .await
            .expect("bpftool");
        !t.success() && r.stdout.trim().is_empty() && b.stdout.trim().is_empty()
    })
    .await;
    assert!(
        clean.is_some(),
        "disable must remove the services table, route and socket LB programs"
    );
}
