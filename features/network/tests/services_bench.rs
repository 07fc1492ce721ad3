//! Services benchmarks (ignored; run with
//! `cargo test -p knet-network --release --test services_bench -- --ignored --nocapture --test-threads=1`
//! or `make bench-services`). They print figures and assert nothing about time.
//!
//! - programming: the table for 1k/10k/30k Services with 2 endpoints each, applied cold to a
//!   fresh namespace (the model, then one nft transaction rendered Service by Service as it
//!   streams to `nft -f -`, as the sync loop does), then a one-endpoint change at each
//!   size the way the sync loop makes it: the incremental model recomputes the one Service
//!   whose EndpointSlice changed, and the diff goes to the kernel as an nf_tables netlink
//!   batch (the same diff through `nft -f` is timed too, for comparison);
//! - connection rate: sequential TCP connects (SO_LINGER 0) from a pod to a server pod, straight
//!   to the pod IP, through the ClusterIP with nftables, and through the ClusterIP with the eBPF
//!   socket load balancer, at 0 and 10k Services, in interleaved 1 s slices (medians reported).

#[path = "services/lab.rs"]
#[allow(dead_code, reason = "shared with tests/services.rs")]
mod lab;

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use knet_network::services::apply::{full_script, parse_names};
use knet_network::services::base::StaticConfig;
use knet_network::services::desired::{Desired, NodeInputs};
use knet_network::services::exec::{nft_apply, nft_apply_full, nft_list_names};
use knet_network::services::model::ServiceTable;
use knet_network::services::nfnl::NfSocket;
use knet_network::services::render::Ruleset;
use knet_network::services::socket_lb::SocketLb;
use lab::{Ns, Topology, privileged};
use serde_json::json;

const CLIENT_ENV: &str = "KNET_BENCH_CLIENT";

fn vip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + i)
}

fn ep(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + i)
}

/// `n` synthetic Services `s<i>` (TCP 80 → 8080) with endpoints `eps(i)`, carrying a uid and
/// resourceVersion as objects from the API server do.
fn objects(n: u32, eps: impl Fn(u32) -> Vec<String>) -> (Vec<Service>, Vec<EndpointSlice>) {
    let mut svcs = Vec::new();
    let mut slices = Vec::new();
    for i in 0..n {
        let name = format!("s{i}");
        svcs.push(
            serde_json::from_value(json!({"metadata": {"namespace": "bench", "name": name,
                    "uid": format!("svc-{i}"), "resourceVersion": "1"},
                "spec": {"clusterIP": vip(i).to_string(),
                         "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}))
            .expect("svc"),
        );
        let endpoints: Vec<serde_json::Value> = eps(i)
            .into_iter()
            .map(|a| json!({"addresses": [a], "nodeName": "node"}))
            .collect();
        slices.push(
            serde_json::from_value(
                json!({"metadata": {"namespace": "bench", "name": format!("{name}-1"),
                    "uid": format!("slice-{i}"), "resourceVersion": "1",
                    "labels": {"kubernetes.io/service-name": name}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": endpoints}),
            )
            .expect("slice"),
        );
    }
    (svcs, slices)
}

fn two_endpoints(i: u32) -> Vec<String> {
    vec![ep(2 * i).to_string(), ep(2 * i + 1).to_string()]
}

fn ruleset(svcs: &[Service], slices: &[EndpointSlice]) -> (ServiceTable, Ruleset) {
    let table = ServiceTable::build(svcs, slices, "node", false);
    let r = Ruleset::render(&table, &["10.1.0.0/16".parse().expect("cidr")]);
    (table, r)
}

fn inputs() -> NodeInputs {
    NodeInputs {
        node: "node".into(),
        sctp: false,
        pod_cidrs: vec!["10.1.0.0/16".parse().expect("cidr")],
        node_ips: Vec::new(),
    }
}

/// Rounds of the one-endpoint change at each size (medians reported).
const CHANGE_ROUNDS: u32 = 9;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: prints figures"]
async fn bench_rule_programming() {
    assert!(privileged(), "needs root and nft");
    println!(
        "| Services | cold: model | cold: render + nft apply (streamed) | cold total | script | one-endpoint change: model | netlink apply | total (max) | batch | same diff via nft -f |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for n in [1_000u32, 10_000, 30_000] {
        let node = Ns::create("bench");
        let path = node.path();
        let (svcs, mut slices) = objects(n, two_endpoints);
        // The sync loop's cold path: the model, then the full transaction rendered Service by
        // Service as it streams to `nft -f -`.
        let t0 = Instant::now();
        let mut desired = Desired::default();
        desired.update(&svcs, &slices, &inputs(), false);
        let computed = t0.elapsed();
        let t1 = Instant::now();
        let script_len = nft_apply_full(Some(&path), &StaticConfig::default(), &desired)
            .await
            .expect("cold apply");
        let applied = t1.elapsed();
        let mut socket = NfSocket::open(Some(&path)).await.expect("netlink socket");
        // One endpoint of one Service replaced, with a new resourceVersion as the API server
        // writes it; the model recomputes that Service and the diff goes out over netlink.
        let mid = (n / 2) as usize;
        let mut change = |round: u32| {
            let mut v: serde_json::Value = serde_json::to_value(&slices[mid]).expect("json");
            v["metadata"]["resourceVersion"] = json!(format!("r{round}"));
            v["endpoints"][1]["addresses"] = json!([ep(3 * n + round).to_string()]);
            slices[mid] = serde_json::from_value(v).expect("slice");
            slices.clone()
        };
        let (mut models, mut applies, mut totals) = (Vec::new(), Vec::new(), Vec::new());
        let mut batch = (0, 0);
        for round in 0..CHANGE_ROUNDS {
            let now = change(round);
            let t2 = Instant::now();
            let update = desired.update(&svcs, &now, &inputs(), true);
            let model = t2.elapsed();
            let t3 = Instant::now();
            batch = socket.apply(&update.diff).expect("netlink apply");
            let netlink = t3.elapsed();
            assert_eq!(update.recomputed, 1);
            models.push(model);
            applies.push(netlink);
            totals.push(model + netlink);
        }
        // The same kind of diff through `nft -f`, for comparison.
        let mut via_nft = Vec::new();
        for round in CHANGE_ROUNDS..CHANGE_ROUNDS + 3 {
            let now = change(round);
            let update = desired.update(&svcs, &now, &inputs(), true);
            let t4 = Instant::now();
            nft_apply(Some(&path), &update.diff.script())
                .await
                .expect("nft apply");
            via_nft.push(t4.elapsed());
        }
        let max = totals.iter().max().copied().unwrap_or_default();
        println!(
            "| {n} | {computed:.0?} | {applied:.2?} | {:.2?} | {} KiB | {:.1?} | {:.1?} | {:.1?} ({max:.1?}) | {} messages, {} B | {:.0?} |",
            computed + applied,
            script_len / 1024,
            median_time(models),
            median_time(applies),
            median_time(totals),
            batch.0,
            batch.1,
            median_time(via_nft),
        );
    }
}

fn median_time(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Runs in a child process (the test binary re-executed) so that it alone joins the cgroup.
#[test]
#[ignore = "helper of bench_connection_rate"]
fn bench_client_helper() {
    let Ok(spec) = std::env::var(CLIENT_ENV) else {
        return;
    };
    // netns path, cgroup dir or "-", target, seconds
    let parts: Vec<&str> = spec.split(',').collect();
    let [netns, cgroup, target, secs] = parts.as_slice() else {
        panic!("bad {CLIENT_ENV}: {spec}");
    };
    if *cgroup != "-" {
        std::fs::write(
            format!("{cgroup}/cgroup.procs"),
            std::process::id().to_string(),
        )
        .expect("join cgroup");
    }
    let file = std::fs::File::open(netns).expect("netns");
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
    let target: SocketAddr = target.parse().expect("target");
    let until = Instant::now() + Duration::from_secs_f64(secs.parse().expect("secs"));
    let mut lat = Vec::new();
    let mut failed = 0u32;
    while Instant::now() < until {
        let t = Instant::now();
        match TcpStream::connect_timeout(&target, Duration::from_secs(1)) {
            Ok(s) => {
                lat.push(t.elapsed());
                let linger = nix::libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                };
                let _ =
                    nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::Linger, &linger);
            }
            Err(_) => failed += 1,
        }
    }
    lat.sort();
    let p50 = lat.get(lat.len() / 2).copied().unwrap_or_default();
    let p99 = lat.get(lat.len() * 99 / 100).copied().unwrap_or_default();
    let max = lat.last().copied().unwrap_or_default();
    println!(
        "RESULT {} {} {} {} {}",
        lat.len(),
        p50.as_micros(),
        failed,
        p99.as_micros(),
        max.as_micros()
    );
}

fn client(netns: &Ns, cgroup: Option<&str>, target: &str, secs: f64) -> (u64, u64, u64) {
    let exe = std::env::current_exe().expect("exe");
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "bench_client_helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            CLIENT_ENV,
            format!(
                "{},{},{target},{secs}",
                netns.path().display(),
                cgroup.unwrap_or("-")
            ),
        )
        .output()
        .expect("client");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.find("RESULT ").map(|at| &l[at..]))
        .unwrap_or_else(|| {
            panic!(
                "client said: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().expect("number"))
        .collect();
    if std::env::var_os("KNET_BENCH_VERBOSE").is_some() {
        eprintln!(
            "  {target} cgroup={}: {} conns, p50 {} µs, p99 {} µs, max {} µs, {} failed",
            cgroup.is_some(),
            v[0],
            v[1],
            v[3],
            v[4],
            v[2]
        );
    }
    (v[0], v[1], v[2])
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: prints figures"]
async fn bench_connection_rate() {
    if !privileged() {
        return;
    }
    let cg_root = lab::cgroup2_root().expect("a cgroup v2 mount");
    let cg = cg_root.join(format!("knettest-svcbench-{}", std::process::id()));
    std::fs::create_dir_all(&cg).expect("cgroup");
    let cgs = cg.display().to_string();
    let t = Topology::new(2);
    let server = &t.pods[0].0;
    server.serve("s", 8080);
    let client_ns = &t.pods[1].0;
    let path = t.node.path();
    // Rounds of three 1 s slices, one per mode, in an order that rotates each round; each
    // round's ClusterIP rates are divided by the same round's direct rate, so slow swings of
    // the machine's load cancel out, and the median of those paired ratios is reported. A
    // connect that times out (a lost SYN, retransmitted after 1 s: it happens in every mode,
    // 20-30% of slices on this machine) wipes out its slice's rate, so rounds with a timeout
    // in any mode are left out of the ratios (and counted).
    let rounds = 21;
    println!(
        "| Services | direct pod IP | ClusterIP, nftables | ClusterIP, eBPF socket LB | nftables / direct | eBPF / direct | rounds used |"
    );
    println!("|---|---|---|---|---|---|---|");
    for n in [0u32, 10_000] {
        let (mut svcs, mut slices) = objects(n, two_endpoints);
        let (s, e) = objects(1, |_| vec!["10.1.0.11".into()]);
        // The measured Service: index 0 of its own namespace, ClusterIP 10.152.183.5.
        let mut s0: serde_json::Value = serde_json::to_value(&s[0]).expect("json");
        s0["metadata"]["namespace"] = json!("m");
        s0["spec"]["clusterIP"] = json!("10.152.183.5");
        let mut e0: serde_json::Value = serde_json::to_value(&e[0]).expect("json");
        e0["metadata"]["namespace"] = json!("m");
        svcs.push(serde_json::from_value(s0).expect("svc"));
        slices.push(serde_json::from_value(e0).expect("slice"));
        let (table, r) = ruleset(&svcs, &slices);
        let kernel = parse_names(&nft_list_names(Some(&path)).await.expect("list"));
        nft_apply(
            Some(&path),
            &full_script(&kernel, &StaticConfig::default(), &r),
        )
        .await
        .expect("apply");
        let mut lb = SocketLb::attach(&cg).expect("socket LB");
        lb.sync(&table).expect("maps");
        let modes = [
            (None, "10.1.0.11:8080"),
            (None, "10.152.183.5:80"),
            (Some(cgs.as_str()), "10.152.183.5:80"),
        ];
        // One warm-up slice per mode, not counted.
        for (cgroup, target) in modes {
            let _ = client(client_ns, cgroup, target, 0.3);
        }
        let mut rates = [Vec::new(), Vec::new(), Vec::new()];
        let mut p50s = [Vec::new(), Vec::new(), Vec::new()];
        let mut ratios = [Vec::new(), Vec::new()];
        let mut clean = 0;
        for round in 0..rounds {
            let mut this = [0u64; 3];
            let mut lost = false;
            for k in 0..modes.len() {
                let i = (round + k) % modes.len();
                let (cgroup, target) = modes[i];
                let (count, p50, failed) = client(client_ns, cgroup, target, 1.0);
                this[i] = count;
                lost |= failed > 0;
                if failed == 0 {
                    rates[i].push(count);
                    p50s[i].push(p50);
                }
            }
            if lost {
                continue;
            }
            clean += 1;
            for (j, r) in ratios.iter_mut().enumerate() {
                r.push(this[j + 1] as f64 / this[0].max(1) as f64);
            }
        }
        drop(lb);
        let cell = |i: usize| {
            format!(
                "{} conn/s, p50 {} µs",
                median(rates[i].clone()),
                median(p50s[i].clone())
            )
        };
        let ratio = |j: usize| {
            let mut v = ratios[j].clone();
            if v.is_empty() {
                return "no clean round".to_owned();
            }
            v.sort_by(f64::total_cmp);
            format!(
                "{:.1}% (quartiles {:.1}%..{:.1}%)",
                100.0 * v[v.len() / 2],
                100.0 * v[v.len() / 4],
                100.0 * v[3 * v.len() / 4]
            )
        };
        println!(
            "| {n} | {} | {} | {} | {} | {} | {clean} of {rounds} |",
            cell(0),
            cell(1),
            cell(2),
            ratio(0),
            ratio(1)
        );
    }
    for _ in 0..50 {
        if std::fs::remove_dir(&cg).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
