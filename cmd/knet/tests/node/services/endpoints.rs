//! Services following their endpoints on a two-node lab, as kube-proxy does: targetPort by
//! name, internalTrafficPolicy Local, a pod turning unready and ready again, the fallback to a
//! serving-terminating endpoint while a deleted pod drains, a Deployment scaled up and down, and
//! stale UDP conntrack entries flushed when their endpoint goes away (a client that keeps its
//! source port reaches the new endpoint at once instead of the dead one).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};

use super::kit::{AGNHOST, CONFIG, NS, http, service_yaml, wait_until};
use crate::support;

/// An agnhost netexec pod on `node` with `labels`, its HTTP port named `web`; `ready_file`
/// adds an exec readiness probe (every second, one failure turns the pod unready) that passes
/// while that file exists; netexec
/// keeps serving for `drain` seconds after SIGTERM.
fn pod(name: &str, node: &str, labels: &str, ready_file: Option<&PathBuf>, drain: u32) -> String {
    let probe = match ready_file {
        Some(f) => format!(
            "    readinessProbe: {{exec: {{command: [test, -e, {}]}}, periodSeconds: 1, failureThreshold: 1}}\n",
            f.display()
        ),
        None => "    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}\n".to_owned(),
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {NS}, labels: {{{labels}}}}}\nspec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 10\n  containers:\n  - name: c\n    image: {AGNHOST}\n    args: [netexec, --http-port=8080, --udp-port=8081, --delay-shutdown={drain}]\n    ports: [{{name: web, containerPort: 8080}}, {{name: dgram, containerPort: 8081, protocol: UDP}}]\n{probe}"
    )
}

/// Ports by name: HTTP 80 → `web`, UDP 81 → `dgram`.
const NAMED_PORTS: &str = "  ports:\n  - {name: http, port: 80, targetPort: web}\n  - {name: udp, port: 81, targetPort: dgram, protocol: UDP}\n";

async fn cluster_ip(lab: &knet_e2e::Lab, name: &str) -> String {
    let svcs: Api<Service> = Api::namespaced(lab.client(), NS);
    svcs.get(name)
        .await
        .expect("service")
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("clusterIP")
}

/// The hostnames answering `ip:80` over `n` requests from `netns` (failures are skipped).
async fn answers(lab: &knet_e2e::Lab, netns: &str, ip: &str, n: usize) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for _ in 0..n {
        if let Ok(h) = http(lab, netns, ip, 80, "hostname").await {
            seen.insert(h);
        }
    }
    seen
}

/// Waits (bounded) until `n` requests from `netns` to `ip:80` are answered by exactly `want`;
/// how long it took.
async fn wait_answers(
    lab: &knet_e2e::Lab,
    netns: &str,
    ip: &str,
    want: &[&str],
    timeout: Duration,
) -> Duration {
    let want: BTreeSet<String> = want.iter().map(|s| (*s).to_owned()).collect();
    let t = Instant::now();
    let mut last = BTreeSet::new();
    while t.elapsed() < timeout {
        last = answers(lab, netns, ip, 12).await;
        if last == want {
            return t.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{ip} from {netns}: wanted {want:?}, last saw {last:?}")
}

/// One UDP `hostname` request to `ip:81` from source port `sport` in `netns`.
async fn udp_from_port(lab: &knet_e2e::Lab, netns: &str, ip: &str, sport: u16) -> Option<String> {
    let target = format!("UDP4:{ip}:81,sourceport={sport},reuseaddr");
    let out = lab
        .exec_in(
            netns,
            &[
                "sh",
                "-c",
                &format!("echo hostname | timeout 3 socat -T1 - {target}"),
            ],
            Duration::from_secs(5),
        )
        .await
        .ok()?;
    let s = out.stdout.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_follow_endpoint_conditions_traffic_policy_and_scaling() {
    let lab = support::lab_with_nodes("svcep", 2).await;
    support::bootstrap_nodes(&lab, CONFIG, &[("node-1", &[]), ("node-2", &[])]).await;
    lab.create_namespace(NS).await.expect("namespace");
    let flags = tempfile::tempdir().expect("readiness flag dir");
    let r1_ready = flags.path().join("r1");
    std::fs::write(&r1_ready, "").expect("flag");
    let deployment = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: scaled, namespace: {NS}}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: scaled}}}}\n  template:\n    metadata: {{labels: {{app: scaled}}}}\n    spec:\n      containers:\n      - name: c\n        image: {AGNHOST}\n        args: [netexec, --http-port=8080, --udp-port=8081]\n        ports: [{{name: web, containerPort: 8080}}, {{name: dgram, containerPort: 8081, protocol: UDP}}]\n        readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}\n"
    );
    let yaml = [
        pod("a", "node-1", "app: a", None, 0),
        pod("c1", "node-1", "app: client", None, 0),
        pod("c2", "node-2", "app: client", None, 0),
        pod("r1", "node-1", "app: r", Some(&r1_ready), 0),
        pod("r2", "node-2", "app: r", None, 0),
        pod("t1", "node-2", "app: t", None, 6),
        pod("u1", "node-2", "app: u", None, 0),
        service_yaml("named", "app: a", NAMED_PORTS),
        service_yaml(
            "itp",
            "app: a",
            &format!("  internalTrafficPolicy: Local\n{NAMED_PORTS}"),
        ),
        service_yaml("ready", "app: r", NAMED_PORTS),
        service_yaml("term", "app: t", NAMED_PORTS),
        service_yaml("udp", "app: u", NAMED_PORTS),
        service_yaml("scaled", "app: scaled", NAMED_PORTS),
        deployment,
    ]
    .join("---\n");
    lab.apply_yaml(&yaml, NS).await.expect("objects");
    for p in ["a", "c1", "c2", "r1", "r2", "t1", "u1"] {
        lab.wait_pod_ready(NS, p, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("pod {p}: {e:#}"));
    }
    let c1 = lab.pod_netns(NS, "c1").await.expect("c1");
    let c2 = lab.pod_netns(NS, "c2").await.expect("c2");

    // targetPort by name, resolved per endpoint from the EndpointSlice's named ports.
    let named = cluster_ip(&lab, "named").await;
    wait_answers(&lab, &c2, &named, &["a"], Duration::from_secs(20)).await;

    // internalTrafficPolicy Local: node-1's pods reach a (on node-1); node-2 has no local
    // endpoint, so its pods' connections are dropped (a timeout, not a reset).
    let itp = cluster_ip(&lab, "itp").await;
    wait_answers(&lab, &c1, &itp, &["a"], Duration::from_secs(20)).await;
    let err = http(&lab, &c2, &itp, 80, "hostname")
        .await
        .expect_err("no local endpoint on node-2");
    assert!(
        format!("{err:#}").contains("curl: (28)"),
        "dropped, not rejected: {err:#}"
    );

    // Readiness: r1 turning unready leaves the Service; turning ready brings it back.
    let ready = cluster_ip(&lab, "ready").await;
    wait_answers(&lab, &c1, &ready, &["r1", "r2"], Duration::from_secs(20)).await;
    let t = Instant::now();
    std::fs::remove_file(&r1_ready).expect("unready");
    wait_answers(&lab, &c1, &ready, &["r2"], Duration::from_secs(20)).await;
    println!(
        "unready endpoint gone from the Service {:?} after its readiness flag was removed (probe every 1 s, one failure)",
        t.elapsed()
    );
    let t = Instant::now();
    std::fs::write(&r1_ready, "").expect("ready again");
    wait_answers(&lab, &c1, &ready, &["r1", "r2"], Duration::from_secs(20)).await;
    println!("ready again after {:?}", t.elapsed());

    // Terminating: t1 is the only endpoint; deleted, it drains for 6 s (serving, terminating,
    // not ready) and the Service keeps using it instead of rejecting; once gone, it rejects.
    let term = cluster_ip(&lab, "term").await;
    wait_answers(&lab, &c1, &term, &["t1"], Duration::from_secs(20)).await;
    let pods: Api<Pod> = Api::namespaced(lab.client(), NS);
    pods.delete("t1", &DeleteParams::default().grace_period(10))
        .await
        .expect("delete t1");
    let slices: Api<EndpointSlice> = Api::namespaced(lab.client(), NS);
    let terminating = wait_until(Duration::from_secs(5), || async {
        slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=term"))
            .await
            .expect("slices")
            .items
            .iter()
            .flat_map(|s| s.endpoints.iter())
            .any(|e| {
                e.conditions.as_ref().is_some_and(|c| {
                    c.terminating == Some(true) && c.serving == Some(true) && c.ready == Some(false)
                })
            })
    })
    .await;
    assert!(
        terminating.is_some(),
        "the EndpointSlice marks t1 serving and terminating"
    );
    // Give the nodes a sync (debounce 50 ms) to apply the terminating slice, then t1 must
    // still answer: the fallback to serving-terminating endpoints.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        http(&lab, &c1, &term, 80, "hostname")
            .await
            .expect("a terminating endpoint still serves"),
        "t1"
    );
    let rejected = wait_until(Duration::from_secs(30), || async {
        http(&lab, &c1, &term, 80, "hostname")
            .await
            .is_err_and(|e| format!("{e:#}").contains("curl: (7)"))
    })
    .await;
    assert!(
        rejected.is_some(),
        "once t1 is gone the Service rejects connections"
    );

    // Scale up to 3 and down to 1: every replica joins, then only one remains.
    let scaled = cluster_ip(&lab, "scaled").await;
    let deployments: Api<Deployment> = Api::namespaced(lab.client(), NS);
    let replicas = |n: i32| serde_json::json!({"spec": {"replicas": n}});
    let names = || async {
        let list = pods
            .list(&ListParams::default().labels("app=scaled"))
            .await
            .expect("pods");
        list.items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.metadata.name.clone())
            .collect::<Vec<String>>()
    };
    let t = Instant::now();
    deployments
        .patch(
            "scaled",
            &PatchParams::default(),
            &Patch::Merge(&replicas(3)),
        )
        .await
        .expect("scale up");
    let up = wait_until(Duration::from_secs(60), || async {
        names().await.len() == 3
    })
    .await;
    assert!(up.is_some(), "three replicas");
    let three = names().await;
    let want: Vec<&str> = three.iter().map(String::as_str).collect();
    wait_answers(&lab, &c1, &scaled, &want, Duration::from_secs(60)).await;
    println!(
        "scaled 1 -> 3: every replica answers {:?} after the patch",
        t.elapsed()
    );
    let t = Instant::now();
    deployments
        .patch(
            "scaled",
            &PatchParams::default(),
            &Patch::Merge(&replicas(1)),
        )
        .await
        .expect("scale down");
    let down = wait_until(Duration::from_secs(60), || async {
        names().await.len() == 1
    })
    .await;
    assert!(down.is_some(), "one replica");
    let one = names().await;
    wait_answers(
        &lab,
        &c1,
        &scaled,
        &[one[0].as_str()],
        Duration::from_secs(60),
    )
    .await;
    println!(
        "scaled 3 -> 1: only {} answers {:?} after the patch",
        one[0],
        t.elapsed()
    );

    // UDP conntrack: a client keeps source port 40123. Its flow points at u1; when u1 is
    // replaced by u2, knet deletes the stale entry, so the very next datagrams reach u2
    // (without the flush they would keep going to u1's dead address for the UDP timeout).
    let udp_ip = cluster_ip(&lab, "udp").await;
    let first = wait_until(Duration::from_secs(20), || async {
        udp_from_port(&lab, &c1, &udp_ip, 40123).await.as_deref() == Some("u1")
    })
    .await;
    assert!(first.is_some(), "u1 answers UDP");
    lab.apply_yaml(&pod("u2", "node-2", "app: u", None, 0), NS)
        .await
        .expect("u2");
    lab.wait_pod_ready(NS, "u2", Duration::from_secs(60))
        .await
        .expect("u2 ready");
    pods.delete("u1", &DeleteParams::default().grace_period(0))
        .await
        .expect("delete u1");
    // Keep the flow alive while u1 goes away, as a chatty client would.
    let t = Instant::now();
    let mut moved = None;
    while t.elapsed() < Duration::from_secs(20) {
        if udp_from_port(&lab, &c1, &udp_ip, 40123).await.as_deref() == Some("u2") {
            moved = Some(t.elapsed());
            break;
        }
    }
    let moved = moved.expect("the same UDP flow must reach u2 after u1 is deleted");
    println!("UDP flow with a fixed source port moved to the new endpoint after {moved:?}");
}
