//! Who may reach a Service, and the services metrics, with the real daemon on a lab node:
//! `loadBalancerSourceRanges` admit the outside host's address and drop another address of
//! the same host; `knet set network.nodeport-addresses=...` moves NodePorts off a second node
//! address and back; `/metrics` has the sync and network-programming histograms, the latter
//! fed by the EndpointSlice controller's trigger times.

use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use knet_e2e::{Lab, Segment};
use kube::Api;
use kube::api::{Patch, PatchParams};

use super::kit::{AGNHOST, CONFIG, LB_IP, Outside, wait_until};
use crate::support;

const NS: &str = "svcacc";

/// An agnhost netexec pod (HTTP 8080) on node-1, labelled `app: a`, ready when it listens.
fn pod_yaml(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {NS}, labels: {{app: a}}}}\nspec:\n  nodeName: node-1\n  containers:\n  - name: c\n    image: {AGNHOST}\n    args: [netexec, --http-port=8080]\n    readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}\n"
    )
}

/// HTTP GET of `/hostname` from `netns` with source address `src` (bounded); the body.
async fn hostname_from(lab: &Lab, netns: &str, src: &str, ip: &str, port: u16) -> Option<String> {
    let url = format!("http://{ip}:{port}/hostname");
    let out = lab
        .exec_in(
            netns,
            &[
                "curl",
                "-gsS",
                "--fail",
                "--max-time",
                "2",
                "--interface",
                src,
                &url,
            ],
            Duration::from_secs(5),
        )
        .await
        .ok()?;
    out.success().then(|| out.stdout.trim().to_owned())
}

/// `/metrics` of the daemon on `node`.
async fn metrics(lab: &Lab, node: &str) -> String {
    let sock = lab
        .node(node)
        .expect("node")
        .run_dir
        .join("knet.sock")
        .display()
        .to_string();
    knet_e2e::process::run(
        &["curl", "-sS", "--unix-socket", &sock, "http://knet/metrics"],
        Duration::from_secs(5),
    )
    .await
    .expect("curl /metrics")
    .stdout
}

/// The value of one series in a metrics text (0 when absent).
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_ranges_nodeport_addresses_and_metrics() {
    let lab = support::lab_with_nodes("svca", 1).await;
    support::bootstrap_nodes(&lab, CONFIG, &[("node-1", &["--socket-lb-cgroup", "off"])]).await;
    lab.create_namespace(NS).await.expect("namespace");
    let node_ip = lab.node("node-1").expect("node-1").ipv4.to_string();
    // A host outside the cluster with two addresses: one inside the source ranges, one not.
    let out = Outside::start(&lab, &node_ip).await;
    let other_src = out.add_v4(202).await;
    let (out_ns, allowed) = (out.netns.clone(), out.v4.clone());
    let service = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: fw, namespace: {NS}}}\nspec:\n  selector: {{app: a}}\n  type: LoadBalancer\n  loadBalancerSourceRanges: [{allowed}/32]\n  ports:\n  - {{name: http, port: 80, targetPort: 8080, nodePort: 30300}}\n"
    );
    lab.apply_yaml(&[pod_yaml("a"), service].join("---\n"), NS)
        .await
        .expect("objects");
    lab.wait_pod_ready(NS, "a", Duration::from_secs(60))
        .await
        .expect("pod a");
    let svcs: Api<Service> = Api::namespaced(lab.client(), NS);
    let status = serde_json::json!({"status": {"loadBalancer": {"ingress": [{"ip": LB_IP}]}}});
    svcs.patch_status("fw", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("LB status");

    // loadBalancerSourceRanges: the allowed source gets in, the other address of the same host
    // does not; the NodePort is not restricted.
    let took = wait_until(Duration::from_secs(20), || async {
        hostname_from(&lab, &out_ns, &allowed, LB_IP, 80)
            .await
            .as_deref()
            == Some("a")
    })
    .await
    .expect("the allowed source reaches the LB IP");
    println!("LB IP reachable from the allowed source after {took:?}");
    assert_eq!(
        hostname_from(&lab, &out_ns, &other_src, LB_IP, 80).await,
        None,
        "a source outside loadBalancerSourceRanges is dropped"
    );
    assert_eq!(
        hostname_from(&lab, &out_ns, &other_src, &node_ip, 30300)
            .await
            .as_deref(),
        Some("a"),
        "the NodePort is not subject to the ranges"
    );

    // network.nodeport-addresses: a second node address stops answering NodePorts once the
    // list names only the InternalIP, and answers again with `all`.
    let second = Segment::A.v4(150).to_string();
    lab.exec_node(
        "node-1",
        &["ip", "addr", "add", &format!("{second}/24"), "dev", "eth0"],
        Duration::from_secs(5),
    )
    .await
    .expect("second node address");
    let on_second = || async {
        hostname_from(&lab, &out_ns, &allowed, &second, 30300)
            .await
            .is_some()
    };
    wait_until(Duration::from_secs(20), on_second)
        .await
        .expect("NodePort on every address by default");
    let set = support::knet(&lab, &["set", "network.nodeport-addresses=primary"]).await;
    assert!(set.success(), "{}", set.stderr);
    let took = wait_until(Duration::from_secs(20), || async { !on_second().await })
        .await
        .expect("NodePort off the second address");
    println!("nodeport-addresses=primary in force after {took:?}");
    // One failed request could be a lost packet: it must stay off.
    for attempt in 1..=3 {
        assert!(
            !on_second().await,
            "the second address answered a NodePort again (check {attempt} of 3) under nodeport-addresses=primary"
        );
    }
    assert!(
        hostname_from(&lab, &out_ns, &allowed, &node_ip, 30300)
            .await
            .is_some(),
        "the InternalIP still answers"
    );
    let set = support::knet(&lab, &["set", "network.nodeport-addresses=all"]).await;
    assert!(set.success(), "{}", set.stderr);
    wait_until(Duration::from_secs(20), on_second)
        .await
        .expect("NodePort back on the second address");

    // Metrics: syncs are timed; a new endpoint (the EndpointSlice controller stamps its
    // trigger time) is timed from that change to its rules in the kernel.
    let before = metrics(&lab, "node-1").await;
    let prog = "knet_services_network_programming_duration_seconds_count";
    lab.apply_yaml(&pod_yaml("b"), NS).await.expect("pod b");
    lab.wait_pod_ready(NS, "b", Duration::from_secs(60))
        .await
        .expect("pod b");
    let counted = wait_until(Duration::from_secs(20), || async {
        value(&metrics(&lab, "node-1").await, prog) > value(&before, prog)
    })
    .await;
    let after = metrics(&lab, "node-1").await;
    assert!(
        counted.is_some(),
        "{prog} did not grow after a new endpoint:\n{after}"
    );
    let sync = "knet_services_sync_proxy_rules_duration_seconds";
    for series in [
        format!("{sync}_count"),
        format!("{sync}_bucket{{le=\"+Inf\"}}"),
        "knet_services_syncs_total{kind=\"incremental\",result=\"ok\"}".to_owned(),
        "knet_services_syncs_total{kind=\"full\",result=\"ok\"}".to_owned(),
    ] {
        assert!(value(&after, &series) > 0.0, "{series} in\n{after}");
    }
    let n = value(&after, prog);
    let sum = value(
        &after,
        "knet_services_network_programming_duration_seconds_sum",
    );
    println!(
        "network programming: {n} changes, mean {:.0} ms; syncs: {} passes, mean {:.1} ms",
        sum / n * 1000.0,
        value(&after, &format!("{sync}_count")),
        value(&after, &format!("{sync}_sum")) / value(&after, &format!("{sync}_count")) * 1000.0
    );
}
