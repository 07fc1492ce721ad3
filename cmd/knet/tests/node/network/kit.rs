//! Helpers for the network lab tests: labs with a chosen layout, knet bootstrapped with a mode,
//! pods, who-am-I probes over TCP and UDP in both families, node routes, an "outside" host.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Pod;
use knet_e2e::{CniMode, Lab, LabOptions, Segment};
use kube::Api;

pub const AGNHOST: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";
pub const NS: &str = "net";

/// The bootstrap config of the dual-stack tests: IPv4 + IPv6 pod and service CIDRs matching the
/// lab's kube-controller-manager, the given `network.mode`, and only the network feature (the
/// others have their own tests).
pub fn dual_stack_config(mode: &str) -> String {
    format!(
        "pod-cidr: 10.1.0.0/16,fd01::/48\nservice-cidr: 10.152.183.0/24,fd98::/108\n\
         network:\n  mode: {mode}\ndns:\n  enabled: false\nnetwork-policy:\n  enabled: false\n"
    )
}

/// A lab with one node per entry of `segments` (`node-1..n`), pods on knet's CNI config.
pub async fn lab(test: &str, segments: &[Segment], dual_stack: bool) -> Lab {
    let id = format!("{test}{}", std::process::id() % 100_000);
    let mut opts = LabOptions::new(&id, segments.len());
    opts.cni = CniMode::ConfDir;
    opts.dual_stack = dual_stack;
    for (n, seg) in opts.nodes.iter_mut().zip(segments) {
        n.segment = *seg;
    }
    Lab::start(opts)
        .await
        .expect("the lab must start (root, `make deps`)")
}

/// Bootstraps knet on `node` with `config`, waiting (60 s) for the features to be ready.
pub async fn bootstrap(lab: &Lab, node: &str, config: &str) {
    let t = Instant::now();
    let out = lab
        .bootstrap_knet_with(node, Some(config), &["--timeout", "60s"])
        .await
        .expect("run bootstrap");
    assert!(
        out.success(),
        "bootstrap {node}: {}\n{}",
        out.stdout,
        out.stderr
    );
    println!("bootstrap {node}: {:?}", t.elapsed());
}

/// An agnhost netexec pod (HTTP 8080, UDP 8081) pinned to `node`.
pub fn pod_yaml(name: &str, node: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  nodeName: {node}\n  containers:\n  - name: c\n    image: {AGNHOST}\n    args: [netexec, --http-port=8080, --udp-port=8081]\n"
    )
}

/// Creates pods `(name, node)` in namespace `net` (creating it) and waits for all to be ready.
pub async fn create_pods(lab: &Lab, pods: &[(&str, &str)]) -> Vec<PodIps> {
    lab.create_namespace(NS).await.expect("namespace");
    let yaml: Vec<String> = pods.iter().map(|(n, node)| pod_yaml(n, node)).collect();
    lab.apply_yaml(&yaml.join("---\n"), NS).await.expect("pods");
    let mut out = Vec::new();
    for (name, _) in pods {
        out.push(pod_ips(lab, name).await);
    }
    out
}

/// A pod's addresses.
#[derive(Debug, Clone)]
pub struct PodIps {
    pub name: String,
    pub v4: String,
    pub v6: Option<String>,
}

impl PodIps {
    /// Its address of one family.
    pub fn of(&self, v6: bool) -> &str {
        if v6 {
            self.v6.as_deref().expect("the pod has an IPv6 address")
        } else {
            &self.v4
        }
    }
}

/// Waits (90 s) for pod `name` to be ready and its netexec to answer on the pod's own loopback
/// (Ready has no readiness probe behind it), and returns its addresses.
pub async fn pod_ips(lab: &Lab, name: &str) -> PodIps {
    let p = lab
        .wait_pod_ready(NS, name, Duration::from_secs(90))
        .await
        .unwrap_or_else(|e| panic!("pod {name} never became ready: {e:#}"));
    let netns = lab.pod_netns(NS, name).await.expect("pod netns");
    let listening = wait_until(Duration::from_secs(15), || async {
        curl_in(
            lab,
            &netns,
            "http://127.0.0.1:8080/hostname",
            Duration::from_secs(1),
        )
        .await
        .is_ok()
    })
    .await;
    assert!(listening.is_some(), "netexec in {name} never listened");
    ips_of(&p)
}

pub fn ips_of(p: &Pod) -> PodIps {
    let ips: Vec<String> = p
        .status
        .as_ref()
        .and_then(|s| s.pod_ips.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.ip)
        .collect();
    let v4 = ips
        .iter()
        .find(|i| !i.contains(':'))
        .cloned()
        .expect("pod IPv4");
    PodIps {
        name: p.metadata.name.clone().unwrap_or_default(),
        v4,
        v6: ips.iter().find(|i| i.contains(':')).cloned(),
    }
}

/// `10.1.0.5` or `[fd01::5]`.
pub fn host(ip: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_owned()
    }
}

/// The address part of `ip:port` / `[ip]:port`.
pub fn strip_port(s: &str) -> String {
    let s = s.trim();
    let addr = s.rsplit_once(':').map_or(s, |(a, _)| a);
    addr.trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned()
}

/// `curl -g` from inside namespace `netns` (bounded); the body.
pub async fn curl_in(lab: &Lab, netns: &str, url: &str, timeout: Duration) -> Result<String> {
    let max = timeout.as_secs().max(1).to_string();
    let out = lab
        .exec_in(
            netns,
            &["curl", "-gsS", "--fail", "--max-time", &max, url],
            timeout + Duration::from_secs(2),
        )
        .await?;
    if !out.success() {
        bail!("curl {url} from {netns}: {}", out.stderr.trim());
    }
    Ok(out.stdout)
}

/// The source address `to_ip`'s netexec saw for a TCP (HTTP) connection from pod `from`.
pub async fn tcp_client_ip(lab: &Lab, from: &str, to_ip: &str) -> Result<String> {
    let netns = lab.pod_netns(NS, from).await?;
    let body = curl_in(
        lab,
        &netns,
        &format!("http://{}:8080/clientip", host(to_ip)),
        Duration::from_secs(5),
    )
    .await?;
    Ok(strip_port(&body))
}

/// The source address `to_ip`'s netexec saw for a UDP datagram from pod `from`.
pub async fn udp_client_ip(lab: &Lab, from: &str, to_ip: &str) -> Result<String> {
    let netns = lab.pod_netns(NS, from).await?;
    let family = if to_ip.contains(':') { "UDP6" } else { "UDP4" };
    let target = format!("{family}:{}:8081", host(to_ip));
    // Bounded retries: the first datagram of a new flow can race neighbour resolution.
    for _ in 0..3 {
        let out = lab
            .exec_in(
                &netns,
                &[
                    "sh",
                    "-c",
                    &format!("echo clientip | timeout 5 socat -T2 - {target}"),
                ],
                Duration::from_secs(8),
            )
            .await?;
        if !out.stdout.trim().is_empty() {
            return Ok(strip_port(&out.stdout));
        }
    }
    bail!("no UDP answer from {to_ip} to {from}")
}

/// Asserts TCP and UDP from each `from` to each `to`, in both families when `v6`, arrive with
/// the sender's own pod address (no NAT). Prints how long the whole matrix took.
pub async fn assert_matrix(lab: &Lab, pairs: &[(&PodIps, &PodIps)], v6: bool) {
    let t = Instant::now();
    let families: &[bool] = if v6 { &[false, true] } else { &[false] };
    for (from, to) in pairs {
        for &fam in families {
            let (src, dst) = (from.of(fam), to.of(fam));
            let seen = tcp_client_ip(lab, &from.name, dst)
                .await
                .unwrap_or_else(|e| panic!("TCP {} -> {} ({dst}): {e:#}", from.name, to.name));
            assert_eq!(
                seen, src,
                "TCP {} -> {dst} must keep the pod source",
                from.name
            );
            let seen = udp_client_ip(lab, &from.name, dst)
                .await
                .unwrap_or_else(|e| panic!("UDP {} -> {} ({dst}): {e:#}", from.name, to.name));
            assert_eq!(
                seen, src,
                "UDP {} -> {dst} must keep the pod source",
                from.name
            );
        }
    }
    println!(
        "{} pod pair(s) x {} famil(ies) x TCP+UDP verified in {:?}",
        pairs.len(),
        families.len(),
        t.elapsed()
    );
}

/// `ip [-6] route show proto 76` on `node`.
pub async fn peer_routes(lab: &Lab, node: &str, v6: bool) -> String {
    let fam = if v6 { "-6" } else { "-4" };
    let out = lab
        .exec_node(
            node,
            &["ip", fam, "route", "show", "proto", "76"],
            Duration::from_secs(5),
        )
        .await
        .expect("ip route");
    out.stdout
}

/// The route line for `dst` among `node`'s peer routes, if any.
pub async fn peer_route_to(lab: &Lab, node: &str, dst: &str) -> Option<String> {
    let v6 = dst.contains(':');
    peer_routes(lab, node, v6)
        .await
        .lines()
        .find(|l| l.split_whitespace().next() == Some(dst))
        .map(str::to_owned)
}

/// A node's pod CIDRs from its Node object (`spec.podCIDRs`).
pub async fn node_pod_cidrs(lab: &Lab, node: &str) -> Vec<String> {
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(lab.client());
    nodes
        .get(node)
        .await
        .expect("node")
        .spec
        .and_then(|s| s.pod_cidrs)
        .unwrap_or_default()
}

/// Polls `check` every 100 ms until it is true or `timeout` passes; the time it took, or `None`.
pub async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t = Instant::now();
    while t.elapsed() < timeout {
        if check().await {
            return Some(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// A host outside the cluster: its own namespace on underlay segment A (no route anywhere
/// else, so it can only answer node addresses on its segment), running agnhost netexec.
pub struct Outside {
    pub v4: String,
    pub v6: String,
    _server: tokio::process::Child,
}

impl Outside {
    pub async fn start(lab: &Lab) -> Outside {
        let ns = format!("knetlab-{}-outside", lab.id());
        let seg = Segment::A;
        let (v4, v6) = (seg.v4(200), seg.v6(200));
        knet_e2e::netns::add(&ns).await.expect("outside netns");
        let underlay = lab.underlay_netns();
        knet_e2e::netns::ip(
            underlay,
            &[
                "link", "add", "vout", "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ],
        )
        .await
        .expect("outside veth");
        knet_e2e::netns::ip(underlay, &["link", "set", "vout", "master", "br-a", "up"])
            .await
            .expect("outside veth up");
        for args in [
            vec!["addr", "add", &format!("{v4}/24"), "dev", "eth0"],
            vec![
                "-6",
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                "eth0",
                "nodad",
            ],
            vec!["link", "set", "eth0", "up"],
        ] {
            knet_e2e::netns::ip(&ns, &args)
                .await
                .expect("outside address");
        }
        let agnhost = lab.bins().get("agnhost");
        let server = tokio::process::Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(agnhost)
            .args(["netexec", "--http-port=8080", "--udp-port=8081"])
            .env(knet_e2e::sweep::LAB_ENV, lab.id())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("outside netexec");
        let v4s = v4.to_string();
        let ok = wait_until(Duration::from_secs(10), || {
            let ns = ns.clone();
            let url = format!("http://{v4s}:8080/hostname");
            async move {
                curl_in(lab, &ns, &url, Duration::from_secs(1))
                    .await
                    .is_ok()
            }
        })
        .await;
        assert!(ok.is_some(), "the outside host's netexec never answered");
        Outside {
            v4: v4.to_string(),
            v6: v6.to_string(),
            _server: server,
        }
    }
}

/// Every address the node's knet store holds (`GET /v1/feature/network/allocations` on the
/// daemon's socket): `(ip, containerId)`.
pub async fn allocations(lab: &Lab, node: &str) -> Result<Vec<(IpAddr, String)>> {
    let n = lab.node(node)?;
    let sock = n.run_dir.join("knet.sock");
    let sock = sock.display().to_string();
    let out = knet_e2e::process::run(
        &[
            "curl",
            "-sS",
            "--fail",
            "--max-time",
            "5",
            "--unix-socket",
            &sock,
            "http://knet/v1/feature/network/allocations",
        ],
        Duration::from_secs(8),
    )
    .await?;
    if !out.success() {
        bail!("allocations: {}", out.stderr.trim());
    }
    let v: serde_json::Value = serde_json::from_str(&out.stdout).context("allocations JSON")?;
    let mut rows = Vec::new();
    for r in v.as_array().context("array")? {
        let ip: IpAddr = r["ip"].as_str().context("ip")?.parse()?;
        rows.push((ip, r["containerId"].as_str().unwrap_or_default().to_owned()));
    }
    Ok(rows)
}

/// The /32 and /128 pod routes (proto 75) on `node`: the destinations.
pub async fn pod_routes(lab: &Lab, node: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for fam in ["-4", "-6"] {
        let r = lab
            .exec_node(
                node,
                &["ip", fam, "route", "show", "proto", "75"],
                Duration::from_secs(5),
            )
            .await
            .expect("ip route");
        out.extend(
            r.stdout
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .map(|d| {
                    d.trim_end_matches("/32")
                        .trim_end_matches("/128")
                        .to_owned()
                }),
        );
    }
    out
}

/// Whether `knet status` on `node` reports `feature` as ready.
pub async fn feature_ready(lab: &Lab, node: &str, feature: &str) -> bool {
    let out = crate::support::knet_on(lab, node, &["status", "--output-format", "json"]).await;
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&out.stdout) else {
        return false;
    };
    v["features"].as_array().is_some_and(|fs| {
        fs.iter()
            .any(|f| f["name"] == feature && f["state"] == "ready")
    })
}
