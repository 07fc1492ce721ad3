//! Control plane, nodes, API reachability, warm start time.

use std::io::Write;
use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, ensure};
use ipnet::Ipv4Net;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use knet_e2e::config::POD_CIDR;
use knet_e2e::{NodeSpec, Segment};
use kube::Api;
use libtest_mimic::Failed;

use super::{Harness, TestFn};

pub const TESTS: &[(&str, TestFn)] = &[
    (
        "control_plane_answers_version",
        control_plane_answers_version,
    ),
    ("warm_start_is_measured", warm_start_is_measured),
    (
        "nodes_get_pod_cidrs_and_stay_ready",
        nodes_get_pod_cidrs_and_stay_ready,
    ),
    (
        "api_reachable_from_nodes_via_forwarder",
        api_reachable_from_nodes_via_forwarder,
    ),
    ("second_segment_is_routed", second_segment_is_routed),
    (
        "knet_daemon_helpers_run_in_the_node",
        knet_daemon_helpers_run_in_the_node,
    ),
];

fn control_plane_answers_version(h: &Harness) -> Result<(), Failed> {
    let lab = h.lab()?;
    h.run(async {
        let v = lab.client().apiserver_version().await?;
        ensure!(
            v.git_version.starts_with("v1.37."),
            "apiserver version {}",
            v.git_version
        );
        Ok(())
    })
}

/// Prints the warm start time (the target is under 30 s; tests never assert times, so
/// this checks only that the measurement is consistent).
fn warm_start_is_measured(h: &Harness) -> Result<(), Failed> {
    let lab = h.lab()?;
    let (total, cp) = lab.startup();
    let _ = writeln!(
        std::io::stdout(),
        "lab warm start: {:.1} s (control plane {:.1} s, 2 nodes)",
        total.as_secs_f64(),
        cp.as_secs_f64()
    );
    if cp.is_zero() || cp > total {
        return Err(
            format!("inconsistent start times: total {total:?}, control plane {cp:?}").into(),
        );
    }
    Ok(())
}

fn nodes_get_pod_cidrs_and_stay_ready(h: &Harness) -> Result<(), Failed> {
    let lab = h.lab()?;
    h.run(async {
        let cluster: Ipv4Net = POD_CIDR.parse()?;
        let nodes: Api<Node> = Api::all(lab.client());
        let mut seen = Vec::new();
        for n in lab.nodes() {
            let node = nodes.get(&n.name).await?;
            let cidr: Ipv4Net = node
                .spec
                .and_then(|s| s.pod_cidr)
                .context("no podCIDR")?
                .parse()?;
            ensure!(
                cluster.contains(&cidr) && cidr.prefix_len() == 24,
                "node {} podCIDR {cidr}",
                n.name
            );
            ensure!(!seen.contains(&cidr), "podCIDR {cidr} given twice");
            seen.push(cidr);
            let status = node.status.context("no status")?;
            let ready = status
                .conditions
                .unwrap_or_default()
                .into_iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            ensure!(ready, "node {} not Ready", n.name);
            let ips: Vec<String> = status
                .addresses
                .unwrap_or_default()
                .into_iter()
                .map(|a| a.address)
                .collect();
            ensure!(
                ips.contains(&n.ipv4.to_string()) && ips.contains(&n.ipv6.to_string()),
                "addresses {ips:?}"
            );
        }
        ensure!(seen.len() >= 2, "expected at least 2 nodes");
        // Leases are renewed by the lab's heartbeat.
        let leases: Api<Lease> = Api::namespaced(lab.client(), "kube-node-lease");
        let before = leases
            .get("node-1")
            .await?
            .spec
            .and_then(|s| s.renew_time)
            .context("no renewTime")?;
        tokio::time::sleep(Duration::from_secs(6)).await;
        let after = leases
            .get("node-1")
            .await?
            .spec
            .and_then(|s| s.renew_time)
            .context("no renewTime")?;
        ensure!(
            after.0 > before.0,
            "lease not renewed ({before:?} -> {after:?})"
        );
        Ok(())
    })
}

fn api_reachable_from_nodes_via_forwarder(h: &Harness) -> Result<(), Failed> {
    let lab = h.lab()?;
    h.run(async {
        let n = lab.node("node-1")?;
        let url = format!("{}/version", lab.node_api_url());
        let out = lab
            .exec_node(
                &n.name,
                &[
                    "curl",
                    "-sS",
                    "--cacert",
                    "/dev/null",
                    "-k",
                    "--max-time",
                    "5",
                    &url,
                ],
                Duration::from_secs(10),
            )
            .await?
            .ok()?;
        ensure!(
            out.stdout.contains("v1.37."),
            "unexpected /version: {}",
            out.stdout
        );
        // The node's kubeconfig works from inside the node.
        let kubectl = lab.bins().get("kubectl");
        let kc = n.kubeconfig.display().to_string();
        let k = kubectl.display().to_string();
        let out = lab
            .exec_node(
                &n.name,
                &[
                    &k,
                    "--kubeconfig",
                    &kc,
                    "get",
                    "node",
                    &n.name,
                    "-o",
                    "name",
                ],
                Duration::from_secs(20),
            )
            .await?;
        ensure!(
            out.success() && out.stdout.trim() == format!("node/{}", n.name),
            "kubectl in node: {out:?}"
        );
        Ok(())
    })
}

fn second_segment_is_routed(h: &Harness) -> Result<(), Failed> {
    let lab = h.lab()?;
    h.run(async {
        let b = lab
            .add_node(NodeSpec {
                name: "segb-1".into(),
                segment: Segment::B,
            })
            .await?;
        let a = lab.node("node-1")?;
        ensure!(
            b.ipv4.to_string().starts_with("172.31.251."),
            "segment B address {}",
            b.ipv4
        );
        for target in [IpAddr::from(a.ipv4), IpAddr::from(a.ipv6)] {
            let t = target.to_string();
            let out = lab
                .exec_node(
                    &b.name,
                    &["ping", "-c", "1", "-W", "2", &t],
                    Duration::from_secs(5),
                )
                .await?;
            ensure!(
                out.success(),
                "segment B node cannot reach {t}: {}",
                out.stdout
            );
        }
        // A pod on segment B is reachable from segment A through the router.
        let ns = "segb";
        lab.create_namespace(ns).await?;
        let pod = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: srv}}\nspec:\n  nodeName: {}\n  containers:\n  \
             - {{name: c, image: {}, args: [netexec, --http-port=8080], \
             readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}}}\n",
            b.name,
            super::AGNHOST
        );
        lab.apply_yaml(&pod, ns).await?;
        let ip = lab.wait_pod_ready(ns, "srv", Duration::from_secs(60)).await?.status.and_then(|s| s.pod_ip).context("ip")?;
        let body = lab.curl(&a.netns, &format!("http://{ip}:8080/hostname"), Duration::from_secs(5)).await?;
        ensure!(body.trim() == "srv", "hostname {body:?}");
        // No default route anywhere: nothing can leave the lab.
        for n in [&a.name, &b.name] {
            let out = lab
                .exec_node(
                    n,
                    &["ip", "route", "show", "default"],
                    Duration::from_secs(5),
                )
                .await?
                .ok()?;
            ensure!(
                out.stdout.trim().is_empty(),
                "node {n} has a default route: {}",
                out.stdout
            );
        }
        Ok(())
    })
}

/// `start_knet_daemon`/`stop_knet_daemon` with a stand-in binary (the real
/// knet is tested by its own suites): it must run inside the node's
/// namespace with the node's flags, and stop when asked.
fn knet_daemon_helpers_run_in_the_node(h: &Harness) -> Result<(), Failed> {
    let lab = h.lab()?;
    h.run(async {
        let dir = tempfile::tempdir()?;
        let fake = dir.path().join("fake-knet");
        let out = dir.path().join("out");
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\necho \"$@\" > {o}.args\nip netns identify $$ > {o}.netns\nsleep 600 &\nwait\n",
                o = out.display()
            ),
        )?;
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        lab.set_knet_bin(&fake);
        let n = lab.node("node-2")?;
        lab.start_knet_daemon(&n.name).await?;
        let netns_file = out.with_extension("netns");
        knet_e2e::process::wait_for("the fake daemon to run", Duration::from_secs(10), Duration::from_millis(50), || async {
            Ok(std::fs::read_to_string(&netns_file).ok().filter(|s| !s.trim().is_empty()))
        })
        .await?;
        ensure!(lab.knet_running(&n.name), "daemon not recorded as running");
        let netns = std::fs::read_to_string(&netns_file)?;
        ensure!(netns.trim() == n.netns, "daemon ran in {netns:?}, not {}", n.netns);
        let args = std::fs::read_to_string(out.with_extension("args"))?;
        let want = format!(
            "daemon --node-name {} --kubeconfig {} --state-dir {} --run-dir {} --cni-conf-dir {} --cni-bin-dir {}",
            n.name,
            n.kubeconfig.display(),
            n.state_dir.display(),
            n.run_dir.display(),
            n.cni_conf_dir.display(),
            n.cni_bin_dir.display()
        );
        ensure!(args.trim() == want, "daemon args {args:?}");
        lab.stop_knet_daemon(&n.name).await?;
        ensure!(!lab.knet_running(&n.name), "daemon still running after stop");
        // Its children went with it (the whole process group is stopped).
        let strays: Vec<i32> = knet_e2e::sweep::tagged_processes(lab.id())
            .into_iter()
            .filter(|p| std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c == b"sleep\x00600\x00"))
            .collect();
        ensure!(strays.is_empty(), "the daemon's children survived: {strays:?}");
        Ok(())
    })
}
