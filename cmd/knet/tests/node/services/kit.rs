//! Helpers for the services lab tests: the Services under test, probes over TCP (curl) and UDP
//! (socat) from any namespace, an "outside" host on the underlay, bounded polling.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use knet_e2e::{Lab, Segment};

pub const AGNHOST: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";
pub const NS: &str = "svc";
/// Load-balancer and external IPs (routed to node-1 by the outside host).
pub const LB_IP: &str = "192.0.2.40";
pub const EXTERNAL_IP: &str = "192.0.2.41";

/// Only the network feature: the others have their own tests.
pub const CONFIG: &str = "dns:\n  enabled: false\nnetwork-policy:\n  enabled: false\n";

/// An agnhost netexec pod (HTTP 8080, UDP 8081) pinned to `node`, with `labels`.
pub fn pod_yaml(name: &str, node: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {NS}, labels: {{{labels}}}}}\nspec:\n  nodeName: {node}\n  containers:\n  - name: c\n    image: {AGNHOST}\n    args: [netexec, --http-port=8080, --udp-port=8081]\n"
    )
}

/// A Service selecting `selector`, HTTP on 80 and UDP on 81 (named target ports), with
/// `extra` spec lines (2-space indented under spec).
pub fn service_yaml(name: &str, selector: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  selector: {{{selector}}}\n{extra}"
    )
}

/// The ports block with node ports `np` (TCP) and `np + 1` (UDP), or none when `np` is 0.
pub fn ports(np: u16) -> String {
    if np == 0 {
        "  ports:\n  - {name: http, port: 80, targetPort: 8080}\n  - {name: udp, port: 81, targetPort: 8081, protocol: UDP}\n".into()
    } else {
        format!(
            "  ports:\n  - {{name: http, port: 80, targetPort: 8080, nodePort: {np}}}\n  - {{name: udp, port: 81, targetPort: 8081, protocol: UDP, nodePort: {}}}\n",
            np + 1
        )
    }
}

/// `host` for a URL or socat address.
pub fn host(ip: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_owned()
    }
}

/// HTTP GET `http://ip:port/path` from namespace `netns` (bounded); the body or the error.
pub async fn http(lab: &Lab, netns: &str, ip: &str, port: u16, path: &str) -> Result<String> {
    let url = format!("http://{}:{port}/{path}", host(ip));
    let out = lab
        .exec_in(
            netns,
            &["curl", "-gsS", "--fail", "--max-time", "3", &url],
            Duration::from_secs(6),
        )
        .await?;
    if !out.success() {
        bail!("curl {url} from {netns}: {}", out.stderr.trim());
    }
    Ok(out.stdout.trim().to_owned())
}

/// netexec's UDP `cmd` to `ip:port` from `netns`; the answer (bounded retries).
pub async fn udp(lab: &Lab, netns: &str, ip: &str, port: u16, cmd: &str) -> Result<String> {
    let family = if ip.contains(':') { "UDP6" } else { "UDP4" };
    let target = format!("{family}:{}:{port}", host(ip));
    for _ in 0..3 {
        let out = lab
            .exec_in(
                netns,
                &[
                    "sh",
                    "-c",
                    &format!("echo {cmd} | timeout 5 socat -T2 - {target}"),
                ],
                Duration::from_secs(8),
            )
            .await?;
        if !out.stdout.trim().is_empty() {
            return Ok(out.stdout.trim().to_owned());
        }
    }
    bail!("no UDP answer from {ip}:{port} to {netns}")
}

/// Strips `:port` from netexec's `/clientip` answer.
pub fn strip_port(s: &str) -> String {
    let s = s.trim();
    match s.rsplit_once(':') {
        Some((ip, _)) => ip.trim_start_matches('[').trim_end_matches(']').to_owned(),
        None => s.to_owned(),
    }
}

/// Polls `check` every 50 ms until it holds or `timeout` passes; how long it took.
pub async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let t = Instant::now();
    while t.elapsed() < timeout {
        if check().await {
            return Some(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// A host outside the cluster: its own namespace on underlay segment A, reaching the LB and
/// external IPs through node-1.
pub struct Outside {
    pub netns: String,
    pub v4: String,
    /// Its IPv6 address (set up by [`Outside::start_dual`] only).
    pub v6: String,
}

impl Outside {
    /// IPv4 only: the LB and external IPv4 addresses are routed via `via`.
    pub async fn start(lab: &Lab, via: &str) -> Outside {
        let netns = format!("knetlab-{}-svcout", lab.id());
        let v4 = Segment::A.v4(201).to_string();
        knet_e2e::netns::add(&netns).await.expect("outside netns");
        let underlay = lab.underlay_netns();
        knet_e2e::netns::ip(
            underlay,
            &[
                "link", "add", "vsvc", "type", "veth", "peer", "name", "eth0", "netns", &netns,
            ],
        )
        .await
        .expect("outside veth");
        knet_e2e::netns::ip(underlay, &["link", "set", "vsvc", "master", "br-a", "up"])
            .await
            .expect("outside veth up");
        for args in [
            vec!["addr", "add", &format!("{v4}/24"), "dev", "eth0"],
            vec!["link", "set", "eth0", "up"],
            vec!["route", "add", LB_IP, "via", via],
            vec!["route", "add", EXTERNAL_IP, "via", via],
        ] {
            knet_e2e::netns::ip(&netns, &args)
                .await
                .expect("outside setup");
        }
        Outside {
            netns,
            v4,
            v6: String::new(),
        }
    }

    /// Adds another IPv4 address, `.host` on segment A, to the outside host; returns it.
    pub async fn add_v4(&self, host: u8) -> String {
        let ip = Segment::A.v4(host).to_string();
        knet_e2e::netns::ip(
            &self.netns,
            &["addr", "add", &format!("{ip}/24"), "dev", "eth0"],
        )
        .await
        .expect("outside: second address");
        ip
    }

    /// Both families: as [`Outside::start`], plus an IPv6 address on the segment and routes to
    /// the IPv6 LB and external IPs (`2001:db8:40::/64`) via `via6`.
    pub async fn start_dual(lab: &Lab, via4: &str, via6: &str) -> Outside {
        let mut o = Outside::start(lab, via4).await;
        let v6 = Segment::A.v6(201).to_string();
        for args in [
            vec![
                "-6",
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                "eth0",
                "nodad",
            ],
            vec!["-6", "route", "add", "2001:db8:40::/64", "via", via6],
        ] {
            knet_e2e::netns::ip(&o.netns, &args)
                .await
                .expect("outside IPv6 setup");
        }
        o.v6 = v6;
        o
    }
}

/// [`http`] from a process that first joins `cgroup` (as the pods' own processes are), so the
/// node's socket load balancer sees it. nsenter, not `ip netns exec`, keeps /sys (the cgroup
/// tree) visible.
pub async fn http_in_cgroup(
    netns: &str,
    cgroup: &str,
    ip: &str,
    port: u16,
    path: &str,
) -> Result<String> {
    let url = format!("http://{}:{port}/{path}", host(ip));
    let net = format!("--net={}", knet_e2e::netns::path(netns).display());
    let script =
        format!("echo $$ > {cgroup}/cgroup.procs && exec curl -gsS --fail --max-time 3 {url}");
    let out = knet_e2e::process::run(
        &["nsenter", &net, "sh", "-c", &script],
        Duration::from_secs(6),
    )
    .await?;
    if !out.success() {
        bail!("curl {url} in {cgroup}: {}", out.stderr.trim());
    }
    Ok(out.stdout.trim().to_owned())
}

/// Where the matrix's connections come from.
pub struct Origins<'a> {
    /// A pod on node-1 (the endpoint's node).
    pub c1: &'a str,
    /// A pod on node-2.
    pub c2: &'a str,
    /// node-1's and node-2's own namespaces.
    pub node1: &'a str,
    pub node2: &'a str,
    /// The outside host.
    pub outside: &'a str,
}

/// The addresses of one family the matrix connects to.
pub struct Addresses<'a> {
    pub cluster_ip: &'a str,
    pub node1: &'a str,
    pub node2: &'a str,
    pub lb: &'a str,
    pub external: &'a str,
}

/// One matrix cell: what, from which namespace, to which address and TCP port (UDP is the
/// next port up, or 81 for 80).
pub type Cell = (&'static str, String, String, u16);

/// The 12 origin x address pairs of the services matrix (NodePort 30080/30081).
pub fn matrix(o: &Origins<'_>, a: &Addresses<'_>) -> Vec<Cell> {
    let cell = |what, netns: &str, ip: &str, port| (what, netns.to_owned(), ip.to_owned(), port);
    vec![
        cell("pod same node", o.c1, a.cluster_ip, 80),
        cell("pod other node", o.c2, a.cluster_ip, 80),
        cell("node-1 host", o.node1, a.cluster_ip, 80),
        cell("node-2 host", o.node2, a.cluster_ip, 80),
        cell("pod, NodePort other node", o.c1, a.node2, 30080),
        cell("node-2 host, own NodePort", o.node2, a.node2, 30080),
        cell("outside, NodePort node-1", o.outside, a.node1, 30080),
        cell("outside, NodePort node-2", o.outside, a.node2, 30080),
        cell("outside, LB IP", o.outside, a.lb, 80),
        cell("outside, external IP", o.outside, a.external, 80),
        // LB/external IPs from pods leave through the pod's node (routed nowhere else).
        cell("pod, LB IP", o.c2, a.lb, 80),
        cell("pod, external IP", o.c2, a.external, 80),
    ]
}

/// Runs every cell over TCP (bounded wait for pod `want` to answer) and UDP; prints each cell
/// and returns the failed ones, labelled with `family`.
pub async fn run_matrix(lab: &Lab, family: &str, cells: &[Cell], want: &str) -> Vec<String> {
    let mut failures = Vec::new();
    for (what, netns, ip, port) in cells {
        let tcp = wait_until(Duration::from_secs(10), || async {
            http(lab, netns, ip, *port, "hostname")
                .await
                .is_ok_and(|h| h == want)
        })
        .await;
        match tcp {
            Some(_) => println!("{family} TCP {what:28} {ip}:{port} ok"),
            None => failures.push(format!("{family} TCP {what} {ip}:{port}")),
        }
        let udp_port = if *port == 80 { 81 } else { port + 1 };
        // netexec's UDP server answers `hostname`.
        match udp(lab, netns, ip, udp_port, "hostname").await {
            Ok(h) if h == want => println!("{family} UDP {what:28} {ip}:{udp_port} ok"),
            other => failures.push(format!("{family} UDP {what} {ip}:{udp_port}: {other:?}")),
        }
    }
    failures
}
