//! Rule programming against kube-proxy in nftables mode, in the same run and from the same API
//! objects (ignored; `cargo test --release -p knet --test node services::bench -- --ignored
//! --nocapture`). Prints a table; asserts nothing about time.
//!
//! The lab's API server gets an extra ServiceCIDR (10.96.0.0/16) so that it can hold 30k
//! Services; Services are selector-less, with one EndpointSlice of 2 endpoints each.
//! - kube-proxy (the lab's v1.37 build) runs in node-1's namespace from cold for each size; its
//!   figures are its own `kubeproxy_sync_proxy_rules_duration_seconds` (the sync that programmed
//!   everything) and the time from process start until `service-ips` holds every Service.
//! - knet computes and applies its table from the same objects (listed from the API) into a
//!   fresh namespace: model + render + one nft transaction.
//! - Then one endpoint of one Service changes: kube-proxy's partial sync duration (metrics
//!   delta) against knet's incremental transaction.

use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use knet_e2e::Lab;
use knet_network::services::base::StaticConfig;
use knet_network::services::desired::{Desired, NodeInputs};
use knet_network::services::exec::nft_apply_full;
use knet_network::services::nfnl::NfSocket;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

use crate::support;

const BENCH_NS: &str = "bench";

fn endpoints(i: usize, salt: usize) -> serde_json::Value {
    let a = |k: usize| {
        let n = 2 * i + k + salt;
        format!("10.128.{}.{}", n / 250, n % 250 + 1)
    };
    json!([{"addresses": [a(0)], "nodeName": "node-1"}, {"addresses": [a(1)], "nodeName": "node-1"}])
}

async fn create_services(lab: &Lab, from: usize, to: usize) {
    const WORKERS: usize = 16;
    let mut set = tokio::task::JoinSet::new();
    for w in 0..WORKERS {
        let svcs: Api<Service> = Api::namespaced(lab.client(), BENCH_NS);
        let slices: Api<EndpointSlice> = Api::namespaced(lab.client(), BENCH_NS);
        set.spawn(async move {
            for i in (from..to).filter(|i| i % WORKERS == w) {
                let name = format!("s{i}");
                let svc: Service = serde_json::from_value(json!({
                    "metadata": {"name": name},
                    "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}))
                .expect("svc");
                svcs.create(&PostParams::default(), &svc)
                    .await
                    .expect("create svc");
                let slice: EndpointSlice = serde_json::from_value(json!({
                    "metadata": {"name": format!("{name}-1"),
                                 "labels": {"kubernetes.io/service-name": name}},
                    "addressType": "IPv4",
                    "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                    "endpoints": endpoints(i, 0)}))
                .expect("slice");
                slices
                    .create(&PostParams::default(), &slice)
                    .await
                    .expect("create slice");
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("worker");
    }
}

async fn node_exec(lab: &Lab, argv: &[&str]) -> String {
    lab.exec_node("node-1", argv, Duration::from_secs(60))
        .await
        .expect("exec")
        .stdout
}

/// Elements in kube-proxy's service-ips map.
async fn kube_proxy_services(lab: &Lab) -> usize {
    node_exec(
        lab,
        &["nft", "list", "map", "ip", "kube-proxy", "service-ips"],
    )
    .await
    .matches(" : goto ")
    .count()
}

/// kube-proxy's sync duration histogram: (sum seconds, count).
async fn kube_proxy_syncs(lab: &Lab) -> (f64, u64) {
    let text = node_exec(
        lab,
        &[
            "curl",
            "-s",
            "--max-time",
            "3",
            "http://127.0.0.1:10249/metrics",
        ],
    )
    .await;
    let get = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    (
        get("kubeproxy_sync_proxy_rules_duration_seconds_sum"),
        get("kubeproxy_sync_proxy_rules_duration_seconds_count") as u64,
    )
}

/// `(full sync?, seconds)` of every sync in a kube-proxy `--v=2` log: a line
/// `"Syncing nftables rules" fullSync=true` opens one, `"SyncProxyRules complete" elapsed="1.2s"`
/// closes it.
fn syncs_in_log(log: &str) -> Vec<(bool, f64)> {
    let mut out = Vec::new();
    let mut full = false;
    for line in log.lines() {
        if line.contains("\"Syncing nftables rules\"") {
            full = line.contains("fullSync=true");
        } else if line.contains("\"SyncProxyRules complete\"")
            && let Some(v) = line
                .split("elapsed=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
            && let Some(secs) = go_duration(v)
        {
            out.push((full, secs));
        }
    }
    out
}

/// A Go duration (`1m2.5s`, `812.3ms`, `45µs`) in seconds.
fn go_duration(s: &str) -> Option<f64> {
    let mut nanos = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(end);
        let value: f64 = num.parse().ok()?;
        let (scale, len) = [
            ("ms", 1e6),
            ("µs", 1e3),
            ("us", 1e3),
            ("ns", 1.0),
            ("h", 3600e9),
            ("m", 60e9),
            ("s", 1e9),
        ]
        .iter()
        .find(|(unit, _)| tail.starts_with(unit))
        .map(|(unit, scale)| (*scale, unit.len()))?;
        nanos += value * scale;
        rest = &tail[len..];
    }
    Some(nanos / 1e9)
}

struct KnetRun {
    netns: String,
    desired: Desired,
}

fn inputs() -> NodeInputs {
    NodeInputs {
        node: "node-1".into(),
        sctp: false,
        pod_cidrs: vec!["10.1.0.0/16".parse().expect("cidr")],
        node_ips: Vec::new(),
    }
}

async fn knet_cold(lab: &Lab, tag: &str) -> (Duration, Duration, KnetRun) {
    let netns = format!("knetlab-{}-kn{tag}", lab.id());
    knet_e2e::netns::add(&netns).await.expect("netns");
    let path = knet_e2e::netns::path(&netns);
    let t0 = Instant::now();
    let svcs = Api::<Service>::all(lab.client())
        .list(&Default::default())
        .await
        .expect("list");
    let slices = Api::<EndpointSlice>::all(lab.client())
        .list(&Default::default())
        .await
        .expect("list");
    let listed = t0.elapsed();
    let t1 = Instant::now();
    let mut desired = Desired::default();
    desired.update(&svcs.items, &slices.items, &inputs(), false);
    // The sync loop's full transaction: rendered Service by Service as it streams to nft.
    nft_apply_full(Some(&path), &StaticConfig::default(), &desired)
        .await
        .expect("apply");
    (listed, t1.elapsed(), KnetRun { netns, desired })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: prints figures"]
async fn bench_programming_against_kube_proxy() {
    let lab = support::lab_with_nodes("svcb", 1).await;
    lab.apply_yaml(
        "apiVersion: networking.k8s.io/v1\nkind: ServiceCIDR\nmetadata: {name: bench}\nspec: {cidrs: [10.96.0.0/16]}\n",
        "default",
    )
    .await
    .expect("ServiceCIDR");
    lab.create_namespace(BENCH_NS).await.expect("namespace");
    let kube_proxy = lab.bins().get("kube-proxy");
    let kubeconfig = lab.node("node-1").expect("node").kubeconfig;
    let log = lab.dir().join("kube-proxy.log");
    let mut rows = Vec::new();
    let mut created = 0;
    for n in [1_000usize, 10_000, 30_000] {
        let t = Instant::now();
        create_services(&lab, created, n).await;
        created = n;
        println!("created {n} Services + EndpointSlices in {:?}", t.elapsed());
        // Let the watch caches settle.
        tokio::time::sleep(Duration::from_secs(2)).await;

        // kube-proxy from cold.
        let _ = node_exec(&lab, &["nft", "delete", "table", "ip", "kube-proxy"]).await;
        let _ = node_exec(&lab, &["nft", "delete", "table", "ip6", "kube-proxy"]).await;
        let logf = std::fs::File::create(&log).expect("log");
        let t = Instant::now();
        let mut child = tokio::process::Command::new("ip")
            .args(["netns", "exec", &lab.node("node-1").expect("node").netns])
            .arg(&kube_proxy)
            .args([
                "--proxy-mode=nftables",
                "--hostname-override=node-1",
                "--cluster-cidr=10.1.0.0/16",
                "--metrics-bind-address=127.0.0.1:10249",
                "--healthz-bind-address=127.0.0.1:10256",
                "--conntrack-max-per-core=0",
                "--conntrack-tcp-timeout-established=0",
                "--conntrack-tcp-timeout-close-wait=0",
                // "Syncing nftables rules" fullSync=… and "SyncProxyRules complete" elapsed=…
                "--v=2",
            ])
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .env(knet_e2e::sweep::LAB_ENV, lab.id())
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("log"))
            .stderr(logf)
            .kill_on_drop(true)
            .spawn()
            .expect("kube-proxy");
        let mut programmed = None;
        while t.elapsed() < Duration::from_secs(1800) {
            if kube_proxy_services(&lab).await >= n {
                programmed = Some(t.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let programmed = programmed.unwrap_or_else(|| {
            panic!(
                "kube-proxy never programmed {n} Services; see {}",
                log.display()
            )
        });
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (sum, count) = kube_proxy_syncs(&lab).await;
        // The cold programming is kube-proxy's longest full sync (from its log).
        let cold = syncs_in_log(&std::fs::read_to_string(&log).unwrap_or_default())
            .iter()
            .filter(|(full, _)| *full)
            .map(|(_, secs)| *secs)
            .fold(0.0, f64::max);
        let logged = syncs_in_log(&std::fs::read_to_string(&log).unwrap_or_default()).len();
        let (listed, knet_apply, mut run) = knet_cold(&lab, &n.to_string()).await;

        let mut change = String::from("-");
        if n == 10_000 {
            let slices: Api<EndpointSlice> = Api::namespaced(lab.client(), BENCH_NS);
            let patch = json!({"endpoints": endpoints(5, 3 * n)});
            slices
                .patch("s5-1", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .expect("patch");
            // kube-proxy: the partial sync(s) triggered by the change.
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(30) && kube_proxy_syncs(&lab).await.1 <= count {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            let later = kube_proxy_syncs(&lab).await;
            // The partial sync(s) after the patch, from the log.
            let partial: Vec<f64> =
                syncs_in_log(&std::fs::read_to_string(&log).unwrap_or_default())
                    .into_iter()
                    .skip(logged)
                    .map(|(_, secs)| secs)
                    .collect();
            let kp = if partial.is_empty() {
                f64::NAN
            } else {
                partial.iter().sum::<f64>() / partial.len() as f64
            };
            // knet: the same change as an incremental transaction.
            let svcs = Api::<Service>::all(lab.client())
                .list(&Default::default())
                .await
                .expect("list");
            let all = Api::<EndpointSlice>::all(lab.client())
                .list(&Default::default())
                .await
                .expect("list");
            let path = knet_e2e::netns::path(&run.netns);
            let mut socket = NfSocket::open(Some(&path)).await.expect("netlink socket");
            let t = Instant::now();
            let update = run.desired.update(&svcs.items, &all.items, &inputs(), true);
            let (messages, _) = socket.apply(&update.diff).expect("netlink batch");
            let knet = t.elapsed();
            change = format!(
                "kube-proxy {:.1} ms per sync ({} syncs) / knet {knet:.1?} ({} Service recomputed, {messages} netlink messages): {:.1}x",
                kp * 1000.0,
                later.1 - count,
                update.recomputed,
                kp / knet.as_secs_f64(),
            );
        }
        let _ = child.kill().await;
        rows.push(format!(
            "| {n} | full sync {cold:.2} s ({programmed:.2?} from start; {count} syncs, {sum:.2} s in all) | {knet_apply:.2?} (+ {listed:.2?} to list) | {:.1}x | {change} |",
            cold / knet_apply.as_secs_f64(),
        ));
        // Print as we go: the 30k step takes minutes on a busy machine.
        if let Some(r) = rows.last() {
            println!("{r}");
        }
    }
    println!(
        "| Services | kube-proxy nftables: programmed | knet: compute + apply | kube-proxy / knet | one-endpoint change |"
    );
    println!("|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}

#[test]
fn kube_proxy_log_syncs_parse() {
    let log = r#"I1205 23:50:01.1 1 proxier.go:1206] "Syncing nftables rules" fullSync=true
I1205 23:50:02.9 1 proxier.go:1200] "SyncProxyRules complete" elapsed="1m2.5s"
I1205 23:50:03.0 1 proxier.go:1206] "Syncing nftables rules" fullSync=false
I1205 23:50:03.1 1 proxier.go:1200] "SyncProxyRules complete" elapsed="812.5ms"
"#;
    assert_eq!(syncs_in_log(log), vec![(true, 62.5), (false, 0.8125)]);
    assert_eq!(go_duration("45µs"), Some(45e-6));
    assert_eq!(go_duration("nonsense"), None);
}
