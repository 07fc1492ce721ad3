//! DNS next to the node's other features, on a one-node lab: a pod under default-deny ingress and
//! egress NetworkPolicies still resolves, without and with the usual allow-DNS egress rule, over
//! UDP and TCP, while its other traffic is dropped; DNS traffic leaves no conntrack entry (the
//! `inet knet-dns` NOTRACK table) while conntrack is on in the node's namespace; repeated
//! questions are answered by the UDP fast path and counted in the metrics; and
//! `knet disable dns` removes the table, the addresses, the listeners and the Service, which
//! `knet enable dns` brings back.

use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use knet_e2e::Lab;
use kube::Api;

use super::{NS, ZONE, cluster_ip, dig, dig_opt, metric, pod_ip, pod_yaml, poll};
use crate::support;

const NODE: &str = "node-1";
const DNS_IPS: [&str; 2] = ["10.152.183.10", "169.254.20.10"];

async fn node_sh(lab: &Lab, cmd: &str) -> String {
    let out = lab
        .exec_node(NODE, &["sh", "-c", cmd], Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{cmd}: {e:#}"));
    assert!(out.success(), "{cmd}: {}", out.stderr);
    out.stdout
}

/// Conntrack entries of the node's namespace that involve port 53 on a DNS address.
async fn dns_conntrack_entries(lab: &Lab) -> Vec<String> {
    let all = node_sh(lab, "conntrack -L 2>/dev/null").await;
    all.lines()
        .filter(|l| {
            DNS_IPS
                .iter()
                .any(|ip| l.contains(&format!("dst={ip} ")) && l.contains("dport=53 "))
        })
        .map(str::to_owned)
        .collect()
}

/// What the dns feature leaves on the node: (knet-dns table, addresses on lo, UDP/TCP
/// listeners on :53).
async fn footprint(lab: &Lab) -> (bool, Vec<String>, Vec<String>) {
    let tables = node_sh(lab, "nft list tables").await;
    let addrs = node_sh(lab, "ip -o addr show dev lo").await;
    let addrs = addrs
        .lines()
        .filter(|l| DNS_IPS.iter().any(|ip| l.contains(ip)))
        .map(str::to_owned)
        .collect();
    let socks = node_sh(lab, "ss -Hlnut 'sport = :53'").await;
    let socks = socks
        .lines()
        .filter(|l| DNS_IPS.iter().any(|ip| l.contains(ip)))
        .map(str::to_owned)
        .collect();
    (tables.contains("table inet knet-dns"), addrs, socks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_works_under_default_deny_policies_untracked_and_disable_removes_it() {
    let lab = support::lab_with_nodes("dnspol", 1).await;
    let out = lab
        .bootstrap_knet_with(NODE, Some(support::BOOTSTRAP_CONFIG), &["--timeout", "60s"])
        .await
        .expect("bootstrap");
    assert!(out.success(), "bootstrap: {}\n{}", out.stdout, out.stderr);
    support::wait_status_line(&lab, "dns: enabled at 10.152.183.10").await;

    // The NOTRACK table, for both addresses, both directions, UDP and TCP.
    let table = node_sh(&lab, "nft list table inet knet-dns").await;
    for want in [
        "hook prerouting priority raw",
        "hook output priority raw",
        "ip daddr { 10.152.183.10, 169.254.20.10 } meta l4proto { tcp, udp } th dport 53 notrack",
        "ip saddr { 10.152.183.10, 169.254.20.10 } meta l4proto { tcp, udp } th sport 53 notrack",
    ] {
        assert!(table.contains(want), "missing {want:?}:\n{table}");
    }

    lab.create_namespace(NS).await.expect("namespace");
    let yaml = [
        pod_yaml("client", NODE, "app: client", None),
        pod_yaml("front", NODE, "app: front", None),
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {NS}}}\nspec:\n  selector: {{app: front}}\n  ports: [{{name: http, port: 80, targetPort: 8080, protocol: TCP}}]\n"),
    ]
    .join("---\n");
    lab.apply_yaml(&yaml, NS).await.expect("objects");
    pod_ip(&lab, "client").await;
    let front = pod_ip(&lab, "front").await;
    let web = cluster_ip(&lab, "web").await;
    let url = format!("http://{front}:8080/hostname");
    lab.curl_from_pod(NS, "client", &url, Duration::from_secs(5))
        .await
        .expect("client reaches front before any policy");

    // Default deny, both directions, for every pod of the namespace.
    let deny = format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: default-deny, namespace: {NS}}}\nspec:\n  podSelector: {{}}\n  policyTypes: [Ingress, Egress]\n"
    );
    lab.apply_yaml(&deny, NS).await.expect("default-deny");
    let (_, t) = poll(Duration::from_secs(20), || async {
        lab.curl_from_pod(NS, "client", &url, Duration::from_secs(1))
            .await
            .is_err()
            .then_some(())
    })
    .await
    .expect("the default-deny policy must stop client -> front");
    println!("default deny enforced after {t:?}");
    // The policy feature filters what the node forwards, not a pod's traffic with its own node,
    // so even with no allow rule the pod still reaches the node's DNS (docs/features/dns.md).
    let name = format!("web.{NS}.svc.{ZONE}.");
    for tcp in [false, true] {
        dig(&lab, "client", &name, "A", tcp).await.expect(
            "A",
            &[&web],
            &format!("under default deny without an allow-DNS rule (tcp: {tcp})"),
        );
    }

    // The usual allow-DNS rule on top (egress to port 53 anywhere).
    let allow = format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: allow-dns, namespace: {NS}}}\nspec:\n  podSelector: {{}}\n  policyTypes: [Egress]\n  egress:\n  - ports: [{{port: 53, protocol: UDP}}, {{port: 53, protocol: TCP}}]\n"
    );
    lab.apply_yaml(&allow, NS).await.expect("allow-dns");
    for tcp in [false, true] {
        dig(&lab, "client", &name, "A", tcp).await.expect(
            "A",
            &[&web],
            &format!("under default deny with allow-DNS (tcp: {tcp})"),
        );
    }
    assert!(
        lab.curl_from_pod(NS, "client", &url, Duration::from_secs(1))
            .await
            .is_err(),
        "allow-DNS opens nothing else"
    );
    let short = lab
        .dig_from_pod(NS, "client", "kubernetes.default", "A")
        .await
        .expect("dig +search");
    assert_eq!(
        short,
        vec!["10.152.183.1".to_owned()],
        "search path under default deny"
    );
    let local = lab
        .exec_pod(
            NS,
            "client",
            &[
                "dig",
                "+short",
                "+time=3",
                "+tries=1",
                "@169.254.20.10",
                &name,
                "A",
            ],
            Duration::from_secs(10),
        )
        .await
        .expect("dig @169.254.20.10");
    assert_eq!(
        local.stdout.trim(),
        web,
        "the node-local address under default deny"
    );

    // No conntrack entry for any of it, while conntrack is on in the node's namespace (the
    // network feature's NAT table needs it: the pod's attempts to reach front are tracked).
    let entries = dns_conntrack_entries(&lab).await;
    assert!(entries.is_empty(), "DNS must not be tracked: {entries:#?}");
    let all = node_sh(&lab, "conntrack -L 2>/dev/null | wc -l").await;
    assert!(
        all.trim().parse::<u64>().unwrap_or(0) > 0,
        "conntrack must be active in the node namespace, else the check above proves nothing"
    );

    // One UDP socket per core on each address (SO_REUSEPORT), one TCP listener.
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    for ip in DNS_IPS {
        let udp = node_sh(
            &lab,
            &format!("ss -Hlnu 'src {ip} and sport = :53' | wc -l"),
        )
        .await;
        let tcp = node_sh(
            &lab,
            &format!("ss -Hlnt 'src {ip} and sport = :53' | wc -l"),
        )
        .await;
        assert_eq!(
            (udp.trim(), tcp.trim()),
            (cores.to_string().as_str(), "1"),
            "UDP sockets and TCP listeners on {ip}:53"
        );
    }

    // Repeated questions come from the UDP fast path, and every query is counted, with its
    // latency.
    let fast_before = metric(&lab, NODE, "knet_dns_udp_fast_path_total").await;
    let ok_before = metric(
        &lab,
        NODE,
        "knet_dns_requests_total{zone=\"cluster\",result=\"success\"}",
    )
    .await;
    let timed_before = metric(
        &lab,
        NODE,
        "knet_dns_request_duration_seconds_count{zone=\"cluster\"}",
    )
    .await;
    for _ in 0..5 {
        dig(&lab, "client", &name, "A", false)
            .await
            .expect("A", &[&web], "repeated");
    }
    poll(Duration::from_secs(15), || async {
        let fast = metric(&lab, NODE, "knet_dns_udp_fast_path_total").await;
        let ok = metric(
            &lab,
            NODE,
            "knet_dns_requests_total{zone=\"cluster\",result=\"success\"}",
        )
        .await;
        let timed = metric(
            &lab,
            NODE,
            "knet_dns_request_duration_seconds_count{zone=\"cluster\"}",
        )
        .await;
        (fast >= fast_before + 4 && ok >= ok_before + 5 && timed >= timed_before + 5).then_some(())
    })
    .await
    .unwrap_or_else(|| {
        panic!("5 identical queries: at least 4 from the fast path, 5 counted as success and timed")
    });

    // Disable removes everything the feature installed on the node, and its Service.
    let out = support::knet(&lab, &["disable", "dns"]).await;
    assert!(out.success(), "disable dns: {}", out.stderr);
    let (_, t) = poll(Duration::from_secs(15), || async {
        let (table, addrs, socks) = footprint(&lab).await;
        (!table && addrs.is_empty() && socks.is_empty()).then_some(())
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "dns disabled but still on the node: {:?}",
            footprint_now(&lab)
        )
    });
    println!("dns disable removed its table, addresses and listeners after {t:?}");
    let svcs: Api<Service> = Api::namespaced(lab.client(), "kube-system");
    poll(Duration::from_secs(15), || async {
        matches!(svcs.get_opt("knet-dns").await, Ok(None)).then_some(())
    })
    .await
    .expect("disable must delete the Service kube-system/knet-dns");
    assert!(
        dig_opt(&lab, "client", &name, "A", false).await.is_none(),
        "nothing answers while dns is disabled"
    );

    // Enable brings it all back.
    let out = support::knet(&lab, &["enable", "dns"]).await;
    assert!(out.success(), "enable dns: {}", out.stderr);
    support::wait_status_line(&lab, "dns: enabled at 10.152.183.10").await;
    let (table, addrs, socks) = footprint(&lab).await;
    assert!(
        table && addrs.len() == 2 && !socks.is_empty(),
        "{table} {addrs:?} {socks:?}"
    );
    poll(Duration::from_secs(15), || async {
        dig_opt(&lab, "client", &name, "A", false)
            .await
            .filter(|r| r.data("A") == vec![web.clone()])
    })
    .await
    .expect("answers again after enable");
    poll(Duration::from_secs(35), || async {
        matches!(svcs.get_opt("knet-dns").await, Ok(Some(_))).then_some(())
    })
    .await
    .expect("enable must recreate the Service kube-system/knet-dns");
}

/// The footprint for a failure message (blocking: only called on the way to a panic).
fn footprint_now(lab: &Lab) -> String {
    let n = lab.node(NODE).expect("node");
    std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &n.netns,
            "sh",
            "-c",
            "nft list tables; ip -o addr show dev lo; ss -Hlnut 'sport = :53'",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}
