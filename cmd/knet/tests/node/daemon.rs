//! The daemon and the CLI round trips.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use serde_json::Value;

use crate::support::{self, NODE, knet};

fn feature<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["features"]
        .as_array()
        .and_then(|fs| fs.iter().find(|f| f["name"] == name))
        .unwrap_or_else(|| panic!("no row for {name} in {status}"))
}

async fn status_json(lab: &knet_e2e::Lab) -> Value {
    let out = knet(lab, &["status", "--output-format", "json"]).await;
    assert!(out.success(), "status failed: {}", out.stderr);
    serde_json::from_str(&out.stdout).expect("status JSON")
}

/// Polls the JSON status until `pred` holds (bounded); returns how long it took.
async fn wait_until(lab: &knet_e2e::Lab, what: &str, pred: impl Fn(&Value) -> bool) -> Duration {
    let start = std::time::Instant::now();
    let mut last = Value::Null;
    while start.elapsed() < Duration::from_secs(10) {
        last = status_json(lab).await;
        if pred(&last) {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what} never happened; last status: {last:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_then_enable_disable_set_get_status_round_trip() {
    let lab = support::lab("rt").await;
    let out = support::bootstrap(&lab, None).await;
    assert!(
        out.stdout.contains("bootstrap") || out.success(),
        "bootstrap: {} {}",
        out.stdout,
        out.stderr
    );

    // Defaults after bootstrap: network, network-policy, dns on; the rest off.
    let s = status_json(&lab).await;
    assert_eq!(s["node"], NODE);
    assert_eq!(s["api-server"], "reachable");
    for (name, on) in [
        ("network", true),
        ("network-policy", true),
        ("dns", true),
        ("load-balancer", false),
        ("ingress", false),
        ("gateway", false),
    ] {
        assert_eq!(feature(&s, name)["enabled"], on, "{name} in {s:#}");
    }

    // enable/disable are reflected in status (measured; bounded by 10 s, not asserted).
    let out = knet(&lab, &["enable", "gateway"]).await;
    assert!(out.success(), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "gateway enabled.");
    let took = wait_until(&lab, "gateway enabled", |s| {
        feature(s, "gateway")["enabled"] == true
    })
    .await;
    println!("enable reflected in status after {took:?}");
    let out = knet(&lab, &["disable", "gateway"]).await;
    assert!(out.success(), "{}", out.stderr);
    let took = wait_until(&lab, "gateway disabled", |s| {
        feature(s, "gateway")["enabled"] == false && feature(s, "gateway")["state"] == "disabled"
    })
    .await;
    println!("disable reflected in status after {took:?}");

    // set / get, and the value lands in the cluster-wide ConfigMap.
    let out = knet(
        &lab,
        &[
            "set",
            "dns.cluster-domain=lab.example",
            "network.vxlan-port=4789",
        ],
    )
    .await;
    assert!(out.success(), "{}", out.stderr);
    let out = knet(&lab, &["get", "dns.cluster-domain"]).await;
    assert_eq!(out.stdout, "lab.example\n");
    let out = knet(&lab, &["get", "network"]).await;
    assert!(out.stdout.contains("vxlan-port: 4789"), "{}", out.stdout);
    let cms: Api<ConfigMap> = Api::namespaced(lab.client(), "kube-system");
    let cm = cms.get("knet-config").await.expect("ConfigMap");
    let doc = &cm.data.expect("data")["config.yaml"];
    assert!(doc.contains("cluster-domain: lab.example"), "{doc}");

    // Plain and YAML output render the same rows.
    let out = knet(&lab, &["status"]).await;
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("gateway:") && l.ends_with("disabled")),
        "{}",
        out.stdout
    );
    let out = knet(&lab, &["status", "--output-format", "yaml"]).await;
    assert!(
        out.stdout
            .contains("- name: load-balancer\n  enabled: false\n"),
        "{}",
        out.stdout
    );

    // Health, readiness and metrics on the local API socket.
    let n = lab.node(NODE).expect("node");
    let sock = n.run_dir.join("knet.sock").display().to_string();
    let get = |path: &'static str| {
        let sock = sock.clone();
        async move {
            knet_e2e::process::run(
                &[
                    "curl",
                    "-sS",
                    "--unix-socket",
                    &sock,
                    &format!("http://knet{path}"),
                ],
                Duration::from_secs(10),
            )
            .await
            .expect("curl")
        }
    };
    assert_eq!(get("/healthz").await.stdout, "ok\n");
    let metrics = get("/metrics").await.stdout;
    for needle in [
        "knet_feature_starts_total{feature=\"network\"}",
        "knet_feature_syncs_total{feature=\"network\",result=\"ok\"}",
        "knet_feature_sync_seconds_count{feature=\"network\"}",
    ] {
        assert!(
            metrics.contains(needle),
            "/metrics lacks {needle}:\n{metrics}"
        );
    }

    // A second bootstrap says the node is already bootstrapped and changes nothing.
    let again = support::bootstrap(&lab, None).await;
    assert!(again.success(), "{}", again.stderr);
    assert!(
        again.stdout.contains("already bootstrapped"),
        "{}",
        again.stdout
    );
    let out = knet(&lab, &["get", "dns.cluster-domain"]).await;
    assert_eq!(out.stdout, "lab.example\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_in_the_cluster_reaches_the_node() {
    let lab = support::lab("cm").await;
    support::bootstrap(&lab, None).await;
    // Another node (or an operator) edits the ConfigMap: this node follows within seconds.
    let cms: Api<ConfigMap> = Api::namespaced(lab.client(), "kube-system");
    let mut cm = cms.get("knet-config").await.expect("ConfigMap");
    let data = cm.data.get_or_insert_default();
    let doc =
        data["config.yaml"].replace("gateway:\n  enabled: false", "gateway:\n  enabled: true");
    data.insert("config.yaml".into(), doc);
    cms.replace("knet-config", &Default::default(), &cm)
        .await
        .expect("replace");
    let took = wait_until(&lab, "gateway enabled from the API", |s| {
        feature(s, "gateway")["enabled"] == true
    })
    .await;
    println!("a ConfigMap change reached the node after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_survives_a_daemon_restart_and_a_reboot_like_restart() {
    let lab = support::lab("rs").await;
    support::bootstrap(&lab, None).await;
    let out = knet(&lab, &["set", "dns.upstream-nameservers=192.0.2.53"]).await;
    assert!(out.success(), "{}", out.stderr);
    knet(&lab, &["enable", "gateway"]).await;

    // Plain restart.
    lab.stop_knet_daemon(NODE).await.expect("stop");
    lab.start_knet_daemon(NODE).await.expect("start");
    support::wait_for_daemon(&lab).await;
    assert_eq!(
        knet(&lab, &["get", "dns.upstream-nameservers"])
            .await
            .stdout,
        "192.0.2.53\n"
    );
    assert_eq!(
        feature(&status_json(&lab).await, "gateway")["enabled"],
        true
    );

    // Reboot-like: the run dir (tmpfs on a real node) is wiped and the API server cannot be
    // reached when the daemon comes back. The node still starts from its own cached config.
    lab.stop_knet_daemon(NODE).await.expect("stop");
    let n = lab.node(NODE).expect("node");
    std::fs::remove_dir_all(&n.run_dir).expect("wipe run dir");
    block_api(&lab, true).await;
    lab.start_knet_daemon(NODE).await.expect("start");
    support::wait_for_daemon(&lab).await;
    assert_eq!(
        knet(&lab, &["get", "dns.upstream-nameservers"])
            .await
            .stdout,
        "192.0.2.53\n"
    );
    let s = status_json(&lab).await;
    assert_eq!(feature(&s, "gateway")["enabled"], true);

    // While the API is unreachable: status says so, and a change fails cleanly, losing nothing.
    wait_until(&lab, "api server unreachable", |s| {
        s["api-server"]
            .as_str()
            .is_some_and(|a| a.starts_with("unreachable"))
    })
    .await;
    let out = knet(&lab, &["set", "dns.ttl=7"]).await;
    support::assert_one_line_error(&out, "cannot reach the Kubernetes API server");
    block_api(&lab, false).await;
    wait_until(&lab, "api server reachable again", |s| {
        s["api-server"] == "reachable"
    })
    .await;
    assert_eq!(
        knet(&lab, &["get", "dns.ttl"]).await.stdout,
        "30\n",
        "the failed set must not half-apply"
    );
}

/// Rejects (or stops rejecting) the node's connections to the API server, with an nft table
/// inside the node's own namespace.
async fn block_api(lab: &knet_e2e::Lab, block: bool) {
    let n = lab.node(NODE).expect("node");
    let text = std::fs::read_to_string(&n.kubeconfig).expect("kubeconfig");
    let server = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: https://"))
        .expect("server line");
    let (host, port) = server.rsplit_once(':').expect("host:port");
    let script = if block {
        format!(
            "table inet knettest-block {{\n chain out {{\n  type filter hook output priority 0;\n  ip daddr {host} tcp dport {port} reject with tcp reset\n }}\n}}\n"
        )
    } else {
        "delete table inet knettest-block\n".to_owned()
    };
    let file = n.dir.join("block-api.nft");
    std::fs::write(&file, script).expect("write nft script");
    let file = file.display().to_string();
    let out = lab
        .exec_node(NODE, &["nft", "-f", &file], Duration::from_secs(10))
        .await
        .expect("nft");
    assert!(out.success(), "nft: {}", out.stderr);
}
