//! NetworkPolicy enforcement on the real kernel: the upstream e2e model (namespaces x, y, z;
//! pods a, b, c serving TCP and UDP on 80 and 81) wired into network namespaces like knet's
//! routed design, the crate's compiled tables applied with `nft`, every cell probed with real
//! packets and compared with an independent oracle. Needs root and `nft`; tests fail without them.

#[path = "netpol/cases.rs"]
mod cases;
#[path = "netpol/harness.rs"]
mod harness;
#[path = "netpol/model.rs"]
#[allow(dead_code, reason = "shared with the lab target")]
mod model;
#[path = "netpol/oracle.rs"]
mod oracle;
#[path = "netpol/random.rs"]
mod random;
#[path = "netpol/runner.rs"]
mod runner;

use std::time::{Duration, Instant};

use harness::{Harness, privileged};
use model::Model;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_cases_on_the_real_kernel() -> anyhow::Result<()> {
    privileged();
    let base = Model::new();
    let h = Harness::start("up", &base)?;
    let cases = cases::all(&base);
    let mut failures = Vec::new();
    let (mut steps, mut rounds) = (0, 0);
    let mut apply_times = Vec::new();
    let t0 = Instant::now();
    for case in &cases {
        let mut model = base.clone();
        for (i, step) in case.steps.iter().enumerate() {
            if let Some(m) = step.mutate {
                m(&mut model);
            }
            apply_times.push(runner::enforce(&h, &model, &step.policies).await?);
            steps += 1;
            for (port, proto) in &step.probes {
                rounds += 1;
                if let Some(report) = runner::check(&h, &model, &step.policies, *port, proto)? {
                    failures.push(format!("case {:?} step {i}: {report}", case.name));
                }
            }
        }
    }
    print_times("compile+apply (2 nodes)", &mut apply_times);
    eprintln!(
        "{} cases, {steps} steps, {rounds} probe rounds ({} cells) in {:?}; {} failed",
        cases.len(),
        rounds * 81,
        t0.elapsed(),
        failures.len()
    );
    if !failures.is_empty() {
        eprintln!("node-1 table at the end:\n{}", h.list_table("node-1"));
        anyhow::bail!("{}", failures.join("\n"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selector_cases_over_ipv6_on_the_real_kernel() -> anyhow::Result<()> {
    privileged();
    let base = Model::new();
    let h = Harness::start("v6", &base)?;
    // The ipBlock cases name IPv4 blocks; every other case is family-independent.
    let cases: Vec<cases::Case> = cases::all(&base)
        .into_iter()
        .filter(|c| {
            !c.steps
                .iter()
                .any(|s| s.policies.iter().any(|p| p.to_string().contains("ipBlock")))
        })
        .collect();
    let mut failures = Vec::new();
    for case in &cases {
        let mut model = base.clone();
        for (i, step) in case.steps.iter().enumerate() {
            if let Some(m) = step.mutate {
                m(&mut model);
            }
            runner::enforce(&h, &model, &step.policies).await?;
            for (port, proto) in &step.probes {
                if let Some(report) =
                    runner::check_family(&h, &model, &step.policies, *port, proto, true)?
                {
                    failures.push(format!("case {:?} step {i}: {report}", case.name));
                }
            }
        }
    }
    eprintln!("IPv6: {} cases, {} failed", cases.len(), failures.len());
    anyhow::ensure!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_random_policies_on_the_real_kernel() -> anyhow::Result<()> {
    privileged();
    let seed: u64 = std::env::var("KNET_NETPOL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_260_101);
    let sets: usize = std::env::var("KNET_NETPOL_RANDOM_SETS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(25);
    let model = Model::new();
    let h = Harness::start("rnd", &model)?;
    let mut rng = random::Rng(seed);
    let mut failures = Vec::new();
    for set in 0..sets {
        let n = 1 + rng.below(4);
        let policies: Vec<serde_json::Value> = (0..n)
            .map(|i| random::policy(&mut rng, &format!("r{set}-{i}")))
            .collect();
        runner::enforce(&h, &model, &policies).await?;
        let probes = [(80, "TCP"), (81, "UDP")];
        let (port, proto) = probes[set % 2];
        if let Some(report) = runner::check(&h, &model, &policies, port, proto)? {
            failures.push(format!(
                "seed {seed} set {set}: {report}policies:\n{}",
                serde_json::to_string_pretty(&policies)?
            ));
        }
    }
    eprintln!(
        "seed {seed}: {sets} random policy sets, {} failed",
        failures.len()
    );
    anyhow::ensure!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_of_200_policies_while_probing() -> anyhow::Result<()> {
    privileged();
    let model = Model::new();
    let h = Harness::start("churn", &model)?;
    let mut rng = random::Rng(7);
    let mut live: Vec<serde_json::Value> = Vec::new();
    let mut failures = Vec::new();
    let mut times = Vec::new();
    // Add 200 policies in batches of 20, probing after each, then remove them in batches.
    for batch in 0..10 {
        live.extend((0..20).map(|i| random::policy(&mut rng, &format!("c{batch}-{i}"))));
        times.push(runner::enforce(&h, &model, &live).await?);
        if let Some(r) = runner::check(&h, &model, &live, 80, "TCP")? {
            failures.push(format!(
                "after adding batch {batch} ({} live): {r}",
                live.len()
            ));
        }
    }
    while !live.is_empty() {
        live.drain(..20.min(live.len()));
        times.push(runner::enforce(&h, &model, &live).await?);
        if let Some(r) = runner::check(&h, &model, &live, 81, "UDP")? {
            failures.push(format!("after removing down to {}: {r}", live.len()));
        }
    }
    print_times("churn compile+apply (2 nodes)", &mut times);
    anyhow::ensure!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

fn print_times(what: &str, times: &mut [Duration]) {
    times.sort();
    if let (Some(first), Some(last)) = (times.first(), times.last()) {
        eprintln!(
            "{what}: n={} min {first:?} p50 {:?} max {last:?}",
            times.len(),
            times[times.len() / 2]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn established_flows_survive_table_swaps() -> anyhow::Result<()> {
    privileged();
    let model = Model::new();
    let h = Harness::start("est", &model)?;
    let allow = vec![cases::np(
        "x",
        "allow-y",
        serde_json::json!({"podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}),
    )];
    let deny = vec![cases::np(
        "x",
        "deny",
        serde_json::json!({"podSelector": {}}),
    )];
    runner::enforce(&h, &model, &allow).await?;
    let to = std::net::SocketAddr::from((model.pod("x/a").ip, 80));
    // One UDP flow from y/a, kept open across three table swaps.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (res_tx, res_rx) = std::sync::mpsc::channel::<(bool, bool)>();
    let flow = harness::in_ns(
        &h.pod_ns(model.pod("y/a").index),
        move || -> anyhow::Result<()> {
            let u = std::net::UdpSocket::bind("0.0.0.0:0")?;
            u.set_read_timeout(Some(harness::PROBE_TIMEOUT))?;
            let mut buf = [0u8; 64];
            let mut ask = |u: &std::net::UdpSocket| {
                u.send_to(b"hi", to).is_ok() && u.recv_from(&mut buf).is_ok()
            };
            while rx.recv().is_ok() {
                let old = ask(&u);
                let fresh = std::net::UdpSocket::bind("0.0.0.0:0")?;
                fresh.set_read_timeout(Some(harness::PROBE_TIMEOUT))?;
                let new = ask(&fresh);
                let _ = res_tx.send((old, new));
            }
            Ok(())
        },
    )?;
    let mut results = Vec::new();
    for policies in [&allow, &allow, &deny] {
        runner::enforce(&h, &model, policies).await?;
        tx.send(())?;
        results.push(res_rx.recv_timeout(Duration::from_secs(10))?);
    }
    drop(tx);
    flow.join()
        .map_err(|_| anyhow::anyhow!("flow thread panicked"))??;
    // (established flow answered, new flow answered) after: allow, re-applied allow, deny.
    assert_eq!(results, [(true, true), (true, true), (true, false)]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforcement_latency_for_1_100_1000_policies() -> anyhow::Result<()> {
    privileged();
    let model = Model::new();
    let h = Harness::start("lat", &model)?;
    let mut rng = random::Rng(1000);
    for n in [1usize, 100, 1000] {
        let policies: Vec<serde_json::Value> = (0..n)
            .map(|i| random::policy(&mut rng, &format!("l{i}")))
            .collect();
        let mut times: Vec<Duration> = Vec::new();
        for _ in 0..3 {
            times.push(runner::enforce(&h, &model, &policies).await?);
        }
        print_times(
            &format!("{n} policies: compile+render+apply on 2 nodes"),
            &mut times,
        );
        if let Some(r) = runner::check(&h, &model, &policies, 80, "TCP")? {
            anyhow::bail!("{n} policies: {r}");
        }
    }
    Ok(())
}
