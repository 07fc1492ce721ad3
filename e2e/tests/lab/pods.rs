//! Pods on lab nodes: sandbox and CNI, traffic, readiness, EndpointSlices,
//! deletion.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, ensure};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use knet_e2e::lab::Lab;
use knet_e2e::netns;
use knet_e2e::process::wait_for;
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use libtest_mimic::Failed;

use super::{AGNHOST, Harness, TestFn};

pub const TESTS: &[(&str, TestFn)] = &[
    ("pod_to_pod_on_one_node", pod_to_pod_on_one_node),
    ("pod_to_pod_across_nodes", pod_to_pod_across_nodes),
    (
        "pods_reach_the_api_via_the_forwarder",
        pods_reach_the_api_via_the_forwarder,
    ),
    (
        "service_endpointslices_hold_ready_pods_only",
        service_endpointslices_hold_ready_pods_only,
    ),
    ("deleted_pod_is_cleaned_up", deleted_pod_is_cleaned_up),
    (
        "host_network_pod_uses_the_node_address",
        host_network_pod_uses_the_node_address,
    ),
];

const READY: Duration = Duration::from_secs(60);

/// A pod running agnhost with `args` on `node`, plus extra container YAML.
fn pod(name: &str, node: &str, labels: &str, args: &[&str], extra: &str) -> String {
    let args = args
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\nspec:\n  \
         nodeSelector: {{kubernetes.io/hostname: {node}}}\n  terminationGracePeriodSeconds: 2\n  containers:\n  \
         - name: main\n    image: {AGNHOST}\n    args: [{args}]\n{extra}"
    )
}

/// A readiness probe on a TCP port: without one a pod is Ready as soon as
/// its process starts, before it listens (as with the real kubelet).
pub fn tcp_ready(port: u16) -> String {
    format!("    readinessProbe:\n      tcpSocket: {{port: {port}}}\n      periodSeconds: 1\n")
}

async fn pod_ip(lab: &Lab, ns: &str, name: &str) -> anyhow::Result<String> {
    let p = lab.wait_pod_ready(ns, name, READY).await?;
    p.status.and_then(|s| s.pod_ip).context("no podIP")
}

/// Client and server pods; checks HTTP, agnhost connect, and a closed port.
async fn check_pod_to_pod(
    lab: &Lab,
    ns: &str,
    server_node: &str,
    client_node: &str,
) -> anyhow::Result<()> {
    lab.create_namespace(ns).await?;
    let yaml = format!(
        "{}\n---\n{}",
        pod(
            "server",
            server_node,
            "app: server",
            &["netexec", "--http-port=8080"],
            &tcp_ready(8080)
        ),
        pod("client", client_node, "app: client", &["pause"], "")
    );
    lab.apply_yaml(&yaml, ns).await?;
    let ip = pod_ip(lab, ns, "server").await?;
    pod_ip(lab, ns, "client").await?;
    let host = lab
        .curl_from_pod(
            ns,
            "client",
            &format!("http://{ip}:8080/hostname"),
            Duration::from_secs(5),
        )
        .await?;
    ensure!(host.trim() == "server", "server answered hostname {host:?}");
    let logs = lab.pod_logs(ns, "server", "main").await?;
    ensure!(
        logs.contains("/hostname"),
        "the server's log does not show the request: {logs}"
    );
    let agnhost = lab.bins().get("agnhost").display().to_string();
    let target = format!("{ip}:8080");
    lab.exec_pod(
        ns,
        "client",
        &[&agnhost, "connect", &target, "--timeout=5s"],
        Duration::from_secs(10),
    )
    .await?
    .ok()
    .context("agnhost connect")?;
    let client_ns = lab.pod_netns(ns, "client").await?;
    ensure!(
        !lab.tcp_connect(&client_ns, &ip, 8081, Duration::from_secs(2))
            .await?,
        "a closed port accepted a connection"
    );
    Ok(())
}

fn pod_to_pod_on_one_node(h: &Harness) -> Result<(), Failed> {
    let lab = h.lab()?;
    h.run(async {
        let ns = "p2p-same";
        check_pod_to_pod(lab, ns, "node-1", "node-1").await?;
        // The pod sees the cluster resolv.conf and its own hostname.
        let out = lab
            .exec_pod(
                ns,
                "client",
                &["cat", "/etc/resolv.conf"],
                Duration::from_secs(5),
            )
            .await?
            .ok()?;
        ensure!(
            out.stdout.contains("nameserver 10.152.183.10"),
            "resolv.conf: {}",
            out.stdout
        );
        ensure!(
            out.stdout
                .contains("search p2p-same.svc.cluster.local svc.cluster.local cluster.local"),
            "{}",
            out.stdout
        );
        ensure!(out.stdout.contains("options ndots:5"), "{}", out.stdout);
        // The pod IP is on the pod's eth0, from node-1's pod CIDR.
        let pods: Api<Pod> = Api::namespaced(lab.client(), ns);
        let ip: std::net::Ipv4Addr = pods
            .get("client")
            .await?
            .status
            .and_then(|s| s.pod_ip)
            .context("ip")?
            .parse()?;
        let cidr: ipnet::Ipv4Net = lab.node("node-1")?.pod_cidr.context("cidr")?.parse()?;
        ensure!(cidr.contains(&ip), "pod ip {ip} outside {cidr}");
        let out = lab
            .exec_pod(
                ns,
                "client",
                &["ip", "-4", "-o", "addr", "show", "eth0"],
                Duration::from_secs(5),
            )
            .await?
            .ok()?;
        ensure!(out.stdout.contains(&ip.to_string()), "eth0: {}", out.stdout);
        Ok(())
    })
}

fn pod_to_pod_across_nodes(h: &Harness) -> Result<(), Failed> {
    let lab = h.lab()?;
    h.run(check_pod_to_pod(lab, "p2p-cross", "node-2", "node-1"))
}

fn pods_reach_the_api_via_the_forwarder(h: &Harness) -> Result<(), Failed> {
    let lab = h.lab()?;
    h.run(async {
        let ns = "api-access";
        lab.create_namespace(ns).await?;
        lab.apply_yaml(&pod("caller", "node-2", "app: caller", &["pause"], ""), ns)
            .await?;
        lab.wait_pod_ready(ns, "caller", READY).await?;
        let out = lab
            .exec_pod(
                ns,
                "caller",
                &[
                    "curl",
                    "-sSk",
                    "--max-time",
                    "5",
                    &format!("{}/version", lab.node_api_url()),
                ],
                Duration::from_secs(10),
            )
            .await?
            .ok()?;
        ensure!(out.stdout.contains("v1.37."), "{}", out.stdout);
        Ok(())
    })
}

fn service_endpointslices_hold_ready_pods_only(h: &Harness) -> Result<(), Failed> {
    let lab = h.lab()?;
    h.run(async {
        let ns = "svc-ready";
        lab.create_namespace(ns).await?;
        let ok_probe = "    readinessProbe:\n      httpGet: {path: /hostname, port: 8080}\n      periodSeconds: 1\n";
        let bad_probe = "    readinessProbe:\n      tcpSocket: {port: 9999}\n      periodSeconds: 1\n      failureThreshold: 1\n";
        let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  \
                   ports: [{port: 80, targetPort: 8080}]\n";
        let yaml = format!(
            "{}\n---\n{}\n---\n{svc}",
            pod("web-ok", "node-1", "app: web", &["netexec", "--http-port=8080"], ok_probe),
            pod("web-bad", "node-2", "app: web", &["netexec", "--http-port=8080"], bad_probe),
        );
        lab.apply_yaml(&yaml, ns).await?;
        let ok_ip = pod_ip(lab, ns, "web-ok").await?;
        let pods: Api<Pod> = Api::namespaced(lab.client(), ns);
        let bad_ip = wait_for("web-bad to get an IP", READY, Duration::from_millis(200), || {
            let pods = pods.clone();
            async move { Ok(pods.get("web-bad").await?.status.and_then(|s| s.pod_ip)) }
        })
        .await?;
        let slices: Api<EndpointSlice> = Api::namespaced(lab.client(), ns);
        let lp = ListParams::default().labels("kubernetes.io/service-name=web");
        let split = || async {
            let mut ready = BTreeSet::new();
            let mut not_ready = BTreeSet::new();
            for s in slices.list(&lp).await?.items {
                for e in s.endpoints {
                    let r = e.conditions.and_then(|c| c.ready).unwrap_or(false);
                    for a in e.addresses {
                        if r { ready.insert(a) } else { not_ready.insert(a) };
                    }
                }
            }
            anyhow::Ok((ready, not_ready))
        };
        let want_ready = BTreeSet::from([ok_ip.clone()]);
        wait_for("EndpointSlices with exactly the ready pod", Duration::from_secs(30), Duration::from_millis(250), || async {
            let (ready, not_ready) = split().await?;
            Ok((ready == want_ready && not_ready.contains(&bad_ip)).then_some(()))
        })
        .await?;
        // Still true after several probe periods.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (ready, not_ready) = split().await?;
        ensure!(ready == want_ready, "ready endpoints {ready:?}, want {want_ready:?}");
        ensure!(not_ready.contains(&bad_ip), "failing pod {bad_ip} missing from not-ready endpoints {not_ready:?}");
        Ok(())
    })
}

fn deleted_pod_is_cleaned_up(h: &Harness) -> Result<(), Failed> {
    let lab = h.lab()?;
    h.run(async {
        let ns = "pod-delete";
        lab.create_namespace(ns).await?;
        lab.apply_yaml(&pod("victim", "node-1", "app: victim", &["pause"], ""), ns)
            .await?;
        lab.wait_pod_ready(ns, "victim", READY).await?;
        let netns_name = lab.pod_netns(ns, "victim").await?;
        let pods: Api<Pod> = Api::namespaced(lab.client(), ns);
        pods.delete("victim", &DeleteParams::default()).await?;
        wait_for(
            "the pod object to go",
            Duration::from_secs(30),
            Duration::from_millis(200),
            || {
                let pods = pods.clone();
                async move { Ok(pods.get_opt("victim").await?.is_none().then_some(())) }
            },
        )
        .await?;
        ensure!(
            !netns::exists(&netns_name),
            "pod netns {netns_name} left behind"
        );
        let leftover = std::fs::read_dir(lab.dir().join("pids"))?
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .contains(netns_name.rsplit("pod-").next().unwrap_or("?"))
            })
            .count();
        ensure!(leftover == 0, "pid files left for the deleted pod");
        Ok(())
    })
}

fn host_network_pod_uses_the_node_address(h: &Harness) -> Result<(), Failed> {
    let lab = h.lab()?;
    h.run(async {
        let ns = "hostnet";
        lab.create_namespace(ns).await?;
        let yaml = pod(
            "hn",
            "node-2",
            "app: hn",
            &["netexec", "--http-port=8091"],
            &tcp_ready(8091),
        )
        .replace("  nodeSelector:", "  hostNetwork: true\n  nodeSelector:");
        lab.apply_yaml(&yaml, ns).await?;
        let ip = pod_ip(lab, ns, "hn").await?;
        let node2 = lab.node("node-2")?;
        ensure!(
            ip == node2.ipv4.to_string(),
            "hostNetwork pod IP {ip}, node IP {}",
            node2.ipv4
        );
        let node1 = lab.node("node-1")?;
        let body = lab
            .curl(
                &node1.netns,
                &format!("http://{ip}:8091/hostname"),
                Duration::from_secs(5),
            )
            .await?;
        ensure!(body.trim() == "node-2", "hostname {body:?}");
        let pods: Api<Pod> = Api::namespaced(lab.client(), ns);
        pods.delete("hn", &DeleteParams::default()).await?;
        wait_for(
            "the pod object to go",
            Duration::from_secs(30),
            Duration::from_millis(200),
            || {
                let pods = pods.clone();
                async move { Ok(pods.get_opt("hn").await?.is_none().then_some(())) }
            },
        )
        .await?;
        ensure!(
            netns::exists(&node2.netns),
            "deleting a hostNetwork pod removed the node namespace"
        );
        Ok(())
    })
}
