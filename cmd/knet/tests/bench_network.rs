//! Benchmarks of the network feature in the lab (`make bench-network`, or
//! `KNET_BIN=target/release/knet cargo test -p knet --test bench_network -- --ignored --nocapture
//! --test-threads=1`, as root).
//! They print figures and ratios against a named peer; nothing is asserted about speed (see
//! docs/benchmarks.md, "Pod networking").
//!
//! - `cni_add_del_latency`: CNI ADD and DEL wall time, p50/p99 over 200 pods, knet against the
//!   reference `bridge` + `host-local` plugins from Debian (/usr/lib/cni), invoked alternately in
//!   the same run, exactly as a runtime does (exec'd from a thread in the node's namespace, CNI
//!   environment, config on stdin, DEL with the cached result as prevResult).
//! - `pod_to_pod_throughput`: iperf3 TCP across two nodes, 1 and 4 streams, pod-to-pod in
//!   `native` and `vxlan` mode against node-to-node on the same underlay and against a
//!   hand-built routed veth (+ hand-built VXLAN) in the same nodes, interleaved.

#![allow(clippy::print_stdout)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use knet_e2e::cni::ConfList;
use knet_e2e::{CniMode, Lab, LabOptions};
use serde_json::{Value, json};

const PODS: usize = 200;
const CONFIG: &str = "dns:\n  enabled: false\nnetwork-policy:\n  enabled: false\n";

async fn lab(test: &str, nodes: usize) -> Lab {
    let id = format!("{test}{}", std::process::id() % 100_000);
    let mut opts = LabOptions::new(&id, nodes);
    opts.cni = CniMode::ConfDir;
    let lab = Lab::start(opts)
        .await
        .expect("the lab must start (root, `make deps`)");
    // KNET_BIN (the release build under `make bench-network`), else the knet built with this
    // test target.
    if std::env::var_os("KNET_BIN").is_none() {
        lab.set_knet_bin(env!("CARGO_BIN_EXE_knet"));
    }
    println!("knet binary: {}", lab.knet_bin().expect("knet").display());
    lab
}

async fn bootstrap(lab: &Lab, node: &str, config: &str) {
    let out = lab
        .bootstrap_knet_with(node, Some(config), &["--timeout", "60s"])
        .await
        .expect("bootstrap");
    assert!(
        out.success(),
        "bootstrap {node}: {}\n{}",
        out.stdout,
        out.stderr
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

#[derive(Default)]
struct Samples {
    add: Vec<Duration>,
    del: Vec<Duration>,
}

impl Samples {
    fn row(&mut self, name: &str) -> (String, Duration) {
        self.add.sort();
        self.del.sort();
        let p50 = percentile(&self.add, 0.5);
        (
            format!(
                "| {name} | {} | {} | {} | {} |",
                ms(p50),
                ms(percentile(&self.add, 0.99)),
                ms(percentile(&self.del, 0.5)),
                ms(percentile(&self.del, 0.99)),
            ),
            p50,
        )
    }
}

/// One plugin binary and its network config (as libcni passes it on stdin).
#[derive(Clone)]
struct Plugin {
    bin: PathBuf,
    conf: Value,
}

/// Execs `p` for `command` with the CNI environment, as a runtime does; wall time and stdout.
fn invoke(p: &Plugin, command: &str, id: &str, netns: &Path, cni_path: &str) -> (Duration, Value) {
    let t = Instant::now();
    let mut child = std::process::Command::new(&p.bin)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env(
            "CNI_ARGS",
            format!("IgnoreUnknown=true;K8S_POD_NAMESPACE=bench;K8S_POD_NAME={id}"),
        )
        .env("CNI_PATH", cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn plugin");
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&serde_json::to_vec(&p.conf).expect("json"))
            .expect("stdin");
    }
    let out = child.wait_with_output().expect("plugin");
    let d = t.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{command} {}: {stdout} {}",
        p.bin.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    (d, serde_json::from_str(&stdout).unwrap_or(Value::Null))
}

/// ADD for every pod, alternating knet and the reference (and which goes first), then DEL the
/// same way. Plugins are exec'd from a thread inside the node's network namespace, as a
/// container runtime on that node would.
fn run_plugins(
    node_netns: &Path,
    plugins: [Plugin; 2],
    pods: Vec<[PathBuf; 2]>,
    cni_path: String,
) -> [Samples; 2] {
    let ns = std::fs::File::open(node_netns).expect("node netns");
    std::thread::spawn(move || {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        // One warm-up each (the first exec pays page-cache misses), not counted.
        for (k, p) in plugins.iter().enumerate() {
            let id = format!("warm{k}");
            let (_, res) = invoke(p, "ADD", &id, &pods[0][k], &cni_path);
            let mut del = p.clone();
            del.conf["prevResult"] = res;
            invoke(&del, "DEL", &id, &pods[0][k], &cni_path);
        }
        let mut samples = [Samples::default(), Samples::default()];
        let mut results: Vec<[Value; 2]> = Vec::new();
        for (i, netns) in pods.iter().enumerate() {
            let mut res = [Value::Null, Value::Null];
            for k in [i % 2, 1 - i % 2] {
                let id = format!("p{k}-{i}");
                let (d, r) = invoke(&plugins[k], "ADD", &id, &netns[k], &cni_path);
                samples[k].add.push(d);
                res[k] = r;
            }
            results.push(res);
        }
        for (i, netns) in pods.iter().enumerate() {
            for k in [i % 2, 1 - i % 2] {
                let mut del = plugins[k].clone();
                del.conf["prevResult"] = results[i][k].clone();
                let (d, _) = invoke(&del, "DEL", &format!("p{k}-{i}"), &netns[k], &cni_path);
                samples[k].del.push(d);
            }
        }
        samples
    })
    .join()
    .expect("plugin thread")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: make bench-network"]
async fn cni_add_del_latency() {
    let lab = lab("bcni", 1).await;
    bootstrap(&lab, "node-1", CONFIG).await;
    let n = lab.node("node-1").expect("node");
    let knet = ConfList::load(&n.cni_conf_dir)
        .expect("conf dir")
        .expect("knet installed its conflist")
        .list;
    let mut knet_conf = knet["plugins"][0].clone();
    knet_conf["cniVersion"] = knet["cniVersion"].clone();
    knet_conf["name"] = knet["name"].clone();
    let knet_type = knet_conf["type"].as_str().expect("type").to_owned();
    let ipam_dir = n.dir.join("bench-host-local");
    let reference = json!({
        "cniVersion": "1.0.0", "name": "bench-bridge",
        "type": "bridge", "bridge": "cnibench0", "isGateway": true, "ipMasq": false,
        "hairpinMode": true,
        "ipam": {"type": "host-local", "dataDir": ipam_dir, "ranges": [[{"subnet": "10.99.0.0/24"}]]},
    });
    let find = |ty: &str| {
        n.cni_path()
            .into_iter()
            .map(|d| d.join(ty))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("no {ty} plugin"))
    };
    let plugins = [
        Plugin {
            bin: find(&knet_type),
            conf: knet_conf,
        },
        Plugin {
            bin: find("bridge"),
            conf: reference,
        },
    ];
    println!(
        "plugins: {} and {}",
        plugins[0].bin.display(),
        plugins[1].bin.display()
    );
    let cni_path = std::env::join_paths(n.cni_path())
        .expect("CNI_PATH")
        .to_string_lossy()
        .into_owned();
    let prefix = format!("knetlab-{}-", lab.id());
    let mut netns = Vec::new();
    let mut pods = Vec::new();
    for i in 0..PODS {
        let mut pair = [PathBuf::new(), PathBuf::new()];
        for (k, kind) in ["k", "r"].iter().enumerate() {
            let name = format!("{prefix}b{kind}{i}");
            knet_e2e::netns::add(&name).await.expect("pod netns");
            pair[k] = knet_e2e::netns::path(&name);
            netns.push(name);
        }
        pods.push(pair);
    }
    let node_ns = knet_e2e::netns::path(&n.netns);
    let [mut k, mut r] =
        tokio::task::block_in_place(|| run_plugins(&node_ns, plugins, pods, cni_path));
    let (row_k, p50_k) = k.row("knet (routed veth, store-backed IPAM via the daemon)");
    let (row_r, p50_r) = r.row("bridge + host-local (Debian reference plugins)");
    println!("\nCNI latency, {PODS} pods, ms:");
    println!("| plugin | ADD p50 | ADD p99 | DEL p50 | DEL p99 |\n|---|---|---|---|---|");
    println!("{row_k}\n{row_r}");
    println!(
        "knet ADD p50 is {:.2}x faster than the reference (target >= 2x)",
        p50_r.as_secs_f64() / p50_k.as_secs_f64()
    );
    for name in netns {
        let _ = knet_e2e::netns::del_sync(&name);
    }
}

/// Runs iperf3 from `client_ns` to `ip:port` for `secs` seconds with `streams`; Gbit/s received.
async fn iperf(lab: &Lab, client_ns: &str, ip: &str, port: u16, streams: u32, secs: u32) -> f64 {
    let out = lab
        .exec_in(
            client_ns,
            &[
                "iperf3",
                "-c",
                ip,
                "-p",
                &port.to_string(),
                "-t",
                &secs.to_string(),
                "-P",
                &streams.to_string(),
                "-J",
            ],
            Duration::from_secs(u64::from(secs) + 20),
        )
        .await
        .expect("iperf3");
    let v: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("iperf3 JSON ({e}): {} {}", out.stdout, out.stderr));
    let bps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or_else(|| panic!("iperf3 result: {}", out.stdout));
    bps / 1e9
}

fn iperf_server(lab: &Lab, netns: &str, port: u16) -> tokio::process::Child {
    tokio::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            netns,
            "iperf3",
            "-s",
            "-p",
            &port.to_string(),
        ])
        .env(knet_e2e::sweep::LAB_ENV, lab.id())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("iperf3 -s")
}

const AGNHOST: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";

fn pod_yaml(name: &str, node: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: bench}}\nspec:\n  nodeName: {node}\n  containers:\n  - name: c\n    image: {AGNHOST}\n    args: [pause]\n"
    )
}

async fn pod_ip(lab: &Lab, name: &str) -> String {
    lab.wait_pod_ready("bench", name, Duration::from_secs(90))
        .await
        .unwrap_or_else(|e| panic!("pod {name}: {e:#}"))
        .status
        .and_then(|s| s.pod_ip)
        .expect("pod IP")
}

/// The kernel baseline of shared/reference/dataplane.md, built by hand next to knet's in the same
/// nodes: one routed-veth "pod" namespace per node (/32, default via 169.254.1.1 with a permanent
/// neighbour entry), and either a native route via the peer node or a second VXLAN device (VNI
/// 42, port 8473) with static FDB and neighbour entries. Same kernel, same nft/conntrack state as
/// knet's pods; only the wiring is by hand.
struct HandBuilt {
    /// Node namespace, pod namespace, pod address, node underlay address, per node.
    ends: [(String, String, String, String); 2],
}

impl HandBuilt {
    async fn setup(lab: &Lab) -> HandBuilt {
        let mut ends = Vec::new();
        for (k, node) in ["node-1", "node-2"].iter().enumerate() {
            let n = lab.node(node).expect("node");
            let pod = format!("knetlab-{}-hb{k}", lab.id());
            knet_e2e::netns::add(&pod).await.expect("netns");
            let ip = format!("10.200.{}.2", k + 1);
            let host = format!("hbveth{k}");
            let nn = n.netns.clone();
            ip_in(
                &nn,
                &[
                    "link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns", &pod,
                ],
            )
            .await;
            ip_in(
                &nn,
                &["link", "set", &host, "address", "ee:ee:ee:ee:ee:01", "up"],
            )
            .await;
            ip_in(&nn, &["route", "add", &format!("{ip}/32"), "dev", &host]).await;
            ip_in(&pod, &["addr", "add", &format!("{ip}/32"), "dev", "eth0"]).await;
            ip_in(&pod, &["link", "set", "eth0", "up"]).await;
            ip_in(
                &pod,
                &[
                    "route",
                    "add",
                    "169.254.1.1",
                    "dev",
                    "eth0",
                    "scope",
                    "link",
                ],
            )
            .await;
            ip_in(
                &pod,
                &[
                    "route",
                    "add",
                    "default",
                    "via",
                    "169.254.1.1",
                    "dev",
                    "eth0",
                ],
            )
            .await;
            ip_in(
                &pod,
                &[
                    "neigh",
                    "add",
                    "169.254.1.1",
                    "lladdr",
                    "ee:ee:ee:ee:ee:01",
                    "dev",
                    "eth0",
                    "nud",
                    "permanent",
                ],
            )
            .await;
            ends.push((nn, pod, ip, n.ipv4.to_string()));
        }
        let ends: [(String, String, String, String); 2] = ends.try_into().expect("two ends");
        // VXLAN devices (unused until routes point at them).
        for k in 0..2 {
            let (nn, _, _, local) = &ends[k];
            let (_, _, _, peer_under) = &ends[1 - k];
            let mac = |k: usize| format!("0e:6b:00:00:00:0{}", k + 1);
            ip_in(
                nn,
                &[
                    "link",
                    "add",
                    "hb.vxlan",
                    "type",
                    "vxlan",
                    "id",
                    "42",
                    "dstport",
                    "8473",
                    "local",
                    local,
                    "nolearning",
                ],
            )
            .await;
            ip_in(
                nn,
                &[
                    "link",
                    "set",
                    "hb.vxlan",
                    "address",
                    &mac(k),
                    "mtu",
                    "1450",
                    "up",
                ],
            )
            .await;
            ip_in(
                nn,
                &[
                    "addr",
                    "add",
                    &format!("10.200.{}.0/32", k + 1),
                    "dev",
                    "hb.vxlan",
                ],
            )
            .await;
            let peer_vtep = format!("10.200.{}.0", 2 - k);
            ip_in(
                nn,
                &[
                    "neigh",
                    "add",
                    &peer_vtep,
                    "lladdr",
                    &mac(1 - k),
                    "dev",
                    "hb.vxlan",
                    "nud",
                    "permanent",
                ],
            )
            .await;
            knet_e2e::netns::exec(
                nn,
                &[
                    "bridge",
                    "fdb",
                    "append",
                    &mac(1 - k),
                    "dev",
                    "hb.vxlan",
                    "dst",
                    peer_under,
                ],
                Duration::from_secs(5),
            )
            .await
            .expect("bridge fdb")
            .ok()
            .expect("bridge fdb ok");
        }
        HandBuilt { ends }
    }

    async fn set_mode(&self, vxlan: bool) {
        for k in 0..2 {
            let (nn, pod, _, _) = &self.ends[k];
            let (_, _, peer_ip, peer_under) = &self.ends[1 - k];
            let dst = format!("{peer_ip}/32");
            if vxlan {
                let vtep = format!("10.200.{}.0", 2 - k);
                ip_in(
                    nn,
                    &[
                        "route", "replace", &dst, "via", &vtep, "dev", "hb.vxlan", "onlink",
                    ],
                )
                .await;
            } else {
                ip_in(nn, &["route", "replace", &dst, "via", peer_under]).await;
            }
            let mtu = if vxlan { "1450" } else { "1500" };
            ip_in(pod, &["link", "set", "eth0", "mtu", mtu]).await;
        }
    }
}

async fn ip_in(netns: &str, args: &[&str]) {
    knet_e2e::netns::ip(netns, args)
        .await
        .unwrap_or_else(|e| panic!("ip -n {netns} {}: {e:#}", args.join(" ")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: make bench-network"]
async fn pod_to_pod_throughput() {
    const SECS: u32 = 5;
    const ROUNDS: usize = 4;
    let lab = lab("bperf", 2).await;
    for node in ["node-1", "node-2"] {
        bootstrap(&lab, node, &format!("{CONFIG}network:\n  mode: native\n")).await;
    }
    lab.create_namespace("bench").await.expect("namespace");
    let n1 = lab.node("node-1").expect("node").netns;
    let n2 = lab.node("node-2").expect("node");
    let hand = HandBuilt::setup(&lab).await;
    let _node_server = iperf_server(&lab, &n2.netns, 5201);
    let _hand_server = iperf_server(&lab, &hand.ends[1].1, 5203);
    let mut table = Vec::new();
    for mode in ["native", "vxlan"] {
        if mode == "vxlan" {
            let out = knet_on(&lab, "node-1", &["set", "network.mode=vxlan"]).await;
            assert!(out.success(), "{}", out.stderr);
            let ok = wait_vxlan(&lab).await;
            assert!(ok, "routes never moved to knet.vxlan");
        }
        hand.set_mode(mode == "vxlan").await;
        // Fresh pods per mode: a pod's MTU is fixed when it is created.
        let (a, c) = (format!("a{mode}"), format!("c{mode}"));
        let yaml = [pod_yaml(&a, "node-1"), pod_yaml(&c, "node-2")].join("---\n");
        lab.apply_yaml(&yaml, "bench").await.expect("pods");
        let (_, c_ip) = (pod_ip(&lab, &a).await, pod_ip(&lab, &c).await);
        let a_ns = lab.pod_netns("bench", &a).await.expect("netns");
        let c_ns = lab.pod_netns("bench", &c).await.expect("netns");
        let _pod_server = iperf_server(&lab, &c_ns, 5202);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let n2_ip = n2.ipv4.to_string();
        let targets: [(&str, &str, u16); 3] = [
            (n1.as_str(), n2_ip.as_str(), 5201),
            (a_ns.as_str(), c_ip.as_str(), 5202),
            (hand.ends[0].1.as_str(), hand.ends[1].2.as_str(), 5203),
        ];
        // Warm-up (neighbour entries, first-connection costs), not counted.
        for (ns, ip, port) in targets {
            iperf(&lab, ns, ip, port, 1, 1).await;
        }
        for streams in [1, 4] {
            let mut runs: [Vec<f64>; 3] = Default::default();
            for round in 0..ROUNDS {
                // Interleaved, rotating which goes first.
                for j in 0..3 {
                    let t = (round + j) % 3;
                    let (ns, ip, port) = targets[t];
                    runs[t].push(iperf(&lab, ns, ip, port, streams, SECS).await);
                }
            }
            let median = |v: &[f64]| {
                let mut v = v.to_vec();
                v.sort_by(f64::total_cmp);
                let m = v.len() / 2;
                if v.len().is_multiple_of(2) {
                    (v[m - 1] + v[m]) / 2.0
                } else {
                    v[m]
                }
            };
            let (node, pod, hb) = (median(&runs[0]), median(&runs[1]), median(&runs[2]));
            println!(
                "{mode} P{streams}: node {:.2?} knet {:.2?} hand-built {:.2?} Gbit/s",
                runs[0], runs[1], runs[2]
            );
            table.push(format!(
                "| {mode} | {streams} | {node:.2} | {pod:.2} | {hb:.2} | {:.0}% | {:.0}% | {:.0}% |",
                100.0 * pod / node,
                100.0 * hb / node,
                100.0 * pod / hb
            ));
        }
    }
    println!(
        "\niperf3 TCP, {ROUNDS} interleaved {SECS} s runs each, median Gbit/s:\n\
         | mode | streams | node-to-node | knet pod-to-pod | hand-built pod-to-pod | knet / node | hand-built / node | knet / hand-built |\n\
         |---|---|---|---|---|---|---|---|"
    );
    for row in table {
        println!("{row}");
    }
}

async fn wait_vxlan(lab: &Lab) -> bool {
    for _ in 0..100 {
        let out = lab
            .exec_node(
                "node-1",
                &["ip", "route", "show", "proto", "76"],
                Duration::from_secs(5),
            )
            .await
            .expect("ip route");
        if out.stdout.contains("knet.vxlan") {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn knet_on(lab: &Lab, node: &str, args: &[&str]) -> knet_e2e::ExecOutput {
    let n = lab.node(node).expect("node");
    let bin = env!("CARGO_BIN_EXE_knet");
    let net = format!("--net=/run/netns/{}", n.netns);
    let mut argv: Vec<String> = vec!["nsenter".into(), net, bin.into()];
    argv.extend(args.iter().map(|s| (*s).to_owned()));
    for (flag, value) in [
        ("--node-name", n.name.clone()),
        ("--kubeconfig", n.kubeconfig.display().to_string()),
        ("--state-dir", n.state_dir.display().to_string()),
        ("--run-dir", n.run_dir.display().to_string()),
    ] {
        argv.push(flag.into());
        argv.push(value);
    }
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    knet_e2e::process::run(&argv, Duration::from_secs(60))
        .await
        .expect("exec knet")
}
