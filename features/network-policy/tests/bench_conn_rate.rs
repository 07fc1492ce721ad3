//! Benchmark: pod-to-pod new-connection rate with 1000 NetworkPolicies in place against none,
//! in the same run, on the namespace harness of `tests/netpol.rs` (two node namespaces joined by
//! a veth, pods wired like knet's routed design, the real compiler applied with `nft -f -`).
//!
//! Run as root: `cargo test -p knet-network-policy --test bench_conn_rate -- --ignored --nocapture`.

#[path = "netpol/harness.rs"]
#[allow(dead_code, reason = "shared with the netpol target")]
mod harness;
#[path = "netpol/model.rs"]
#[allow(dead_code, reason = "shared with the netpol target")]
mod model;
#[path = "netpol/oracle.rs"]
#[allow(dead_code, reason = "shared with the netpol target")]
mod oracle;
#[path = "netpol/runner.rs"]
#[allow(dead_code, reason = "shared with the netpol target")]
mod runner;

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use harness::{Harness, in_ns, privileged, probe};
use model::{Model, NAMESPACES, PODS};
use serde_json::{Value, json};

/// New connections per round.
const CONNS: usize = 3000;
/// Connections before the first round, not counted (caches, conntrack, page faults).
const WARMUP: usize = 300;

fn np(ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"namespace": ns, "name": name}, "spec": spec})
}

/// 1000 policies: default-deny ingress in every namespace, the allow of the measured flow
/// (x/a -> x/c, TCP 80), and 996 more allows mixing pod and namespace selectors (matchLabels and
/// matchExpressions), ports by number, by name and as ranges, none of them on TCP 80.
fn thousand_policies() -> Vec<Value> {
    let mut v: Vec<Value> = NAMESPACES
        .iter()
        .map(|ns| np(ns, "default-deny", json!({"podSelector": {}})))
        .collect();
    v.push(np(
        "x",
        "allow-a-to-c-80",
        json!({"podSelector": {"matchLabels": {"pod": "c"}},
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "a"}}}],
                            "ports": [{"protocol": "TCP", "port": 80}]}]}),
    ));
    let mut i = 0usize;
    while v.len() < 1000 {
        let ns = NAMESPACES[i % 3];
        let target = PODS[(i / 3) % 3];
        let peer = PODS[(i / 9) % 3];
        let peer_ns = NAMESPACES[(i / 27) % 3];
        let port = 1000 + u16::try_from(i % 5000).unwrap_or(0);
        let from = match i % 4 {
            0 => json!([{"podSelector": {"matchLabels": {"pod": peer}}}]),
            1 => json!([{"namespaceSelector": {"matchLabels": {"ns": peer_ns}},
                         "podSelector": {"matchExpressions": [{"key": "pod", "operator": "In", "values": [peer, target]}]}}]),
            2 => {
                json!([{"namespaceSelector": {"matchExpressions": [{"key": "ns", "operator": "NotIn", "values": [peer_ns]}]}}])
            }
            _ => {
                json!([{"ipBlock": {"cidr": format!("10.{}.0.0/16", 100 + i % 100), "except": [format!("10.{}.1.0/24", 100 + i % 100)]}}])
            }
        };
        let ports = match i % 3 {
            0 => json!([{"protocol": "TCP", "port": port}]),
            1 => {
                json!([{"protocol": "UDP", "port": port}, {"protocol": "TCP", "port": "serve-81-tcp"}])
            }
            _ => json!([{"protocol": "TCP", "port": port, "endPort": port + 10}]),
        };
        v.push(np(
            ns,
            &format!("allow-{i}"),
            json!({"podSelector": {"matchExpressions": [{"key": "pod", "operator": "Exists"}, {"key": "pod", "operator": "In", "values": [target]}]},
                   "ingress": [{"from": from, "ports": ports}]}),
        ));
        i += 1;
    }
    v
}

/// Measured rounds, alternating no policy and 1000 policies.
const ROUNDS: usize = 7;

struct Round {
    label: &'static str,
    rate: f64,
    lat: Vec<Duration>,
}

/// p50 and p99 of `lat` (sorts it).
fn percentiles(lat: &mut [Duration]) -> (Duration, Duration) {
    lat.sort();
    (lat[lat.len() / 2], lat[lat.len() * 99 / 100])
}

/// Opens `n` TCP connections (connect, then close) one after another from inside `ns`; returns
/// the wall time and every connect latency.
fn connect_loop(ns: &str, to: SocketAddr, n: usize) -> anyhow::Result<(Duration, Vec<Duration>)> {
    in_ns(ns, move || -> anyhow::Result<(Duration, Vec<Duration>)> {
        let mut lat = Vec::with_capacity(n);
        let t0 = Instant::now();
        for k in 0..n {
            let t = Instant::now();
            // 3 s: a lost SYN is retransmitted after 1 s and shows as a slow connection.
            let s = TcpStream::connect_timeout(&to, Duration::from_secs(3))
                .map_err(|e| anyhow::anyhow!("connection {k} to {to}: {e}"))?;
            lat.push(t.elapsed());
            // SO_LINGER 0 closes with a RST: no TIME_WAIT, so the source ports never run out.
            let _ = nix::sys::socket::setsockopt(
                &s,
                nix::sys::socket::sockopt::Linger,
                &nix::libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                },
            );
            drop(s);
        }
        Ok((t0.elapsed(), lat))
    })?
    .join()
    .map_err(|_| anyhow::anyhow!("client thread panicked"))?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored"]
async fn conn_rate_with_1000_policies_against_none() -> anyhow::Result<()> {
    privileged();
    let model = Model::new();
    let h = Harness::start("cr", &model)?;
    let (src, dst, other) = (model.pod("x/a"), model.pod("x/c"), model.pod("y/b"));
    anyhow::ensure!(src.node != dst.node, "the measured flow must cross nodes");
    let to = SocketAddr::from((dst.ip, 80));
    let src_ns = h.pod_ns(src.index);
    let many = thousand_policies();
    let none: Vec<Value> = Vec::new();

    let mut rounds = Vec::new();
    // Alternating rounds, starting and ending with no policy, so drift on a busy machine hits
    // both sides alike.
    let labels: Vec<&'static str> = (0..ROUNDS)
        .map(|r| {
            if r % 2 == 0 {
                "no policy"
            } else {
                "1000 policies"
            }
        })
        .collect();
    for (r, label) in labels.into_iter().enumerate() {
        let set = if label == "no policy" { &none } else { &many };
        let took = runner::enforce(&h, &model, set).await?;
        // Let the apply's aftermath (the nft process, freed rule memory) settle before timing.
        tokio::time::sleep(Duration::from_secs(1)).await;
        // The flow stays allowed; with the policies in place another pod is denied (so they are
        // really enforced).
        let key = dst.key();
        let other_ns = h.pod_ns(other.index);
        let (ok, denied) = (
            in_ns(&src_ns, {
                let key = key.clone();
                move || probe(to, "TCP", &key)
            })?
            .join()
            .unwrap_or(false),
            !in_ns(&other_ns, move || probe(to, "TCP", &key))?
                .join()
                .unwrap_or(true),
        );
        anyhow::ensure!(ok, "round {r} ({label}): the measured flow is not allowed");
        anyhow::ensure!(
            denied == (label != "no policy"),
            "round {r} ({label}): y/b -> x/c:80 denied = {denied}"
        );
        if r == 0 {
            connect_loop(&src_ns, to, WARMUP)?;
        }
        let (wall, lat) = connect_loop(&src_ns, to, CONNS)?;
        let round = Round {
            label,
            rate: CONNS as f64 / wall.as_secs_f64(),
            lat,
        };
        let (p50, p99) = percentiles(&mut round.lat.clone());
        let slow = round.lat.iter().filter(|d| d.as_millis() >= 900).count();
        eprintln!(
            "round {r}: {label:>13} (applied in {took:?}): {CONNS} connections in {wall:?} = {:.0}/s, connect p50 {p50:?} p99 {p99:?}, {slow} over 0.9 s (SYN retransmitted)",
            round.rate
        );
        rounds.push(round);
    }
    let summary = |l: &str| {
        let mut rates: Vec<f64> = rounds
            .iter()
            .filter(|r| r.label == l)
            .map(|r| r.rate)
            .collect();
        rates.sort_by(f64::total_cmp);
        let mut lat: Vec<Duration> = rounds
            .iter()
            .filter(|r| r.label == l)
            .flat_map(|r| r.lat.iter().copied())
            .collect();
        let (p50, p99) = percentiles(&mut lat);
        eprintln!(
            "{l:>13}: {} rounds, median {:.0} conn/s (min {:.0}, max {:.0}), connect p50 {p50:?} p99 {p99:?} over {} connections",
            rates.len(),
            rates[rates.len() / 2],
            rates[0],
            rates[rates.len() - 1],
            lat.len()
        );
        (rates[rates.len() / 2], p50)
    };
    let (base, base_p50) = summary("no policy");
    let (with, with_p50) = summary("1000 policies");
    eprintln!(
        "ratio 1000 policies / no policy: rate {:.3}, connect p50 {:.3}",
        with / base,
        with_p50.as_secs_f64() / base_p50.as_secs_f64()
    );
    Ok(())
}
