//! One step of a case: compile and apply each node's table, probe every cell for real, compare
//! with the oracle, and render expected vs observed side by side on a mismatch.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Result;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use knet_network_policy::compile::compile;
use knet_network_policy::model::Cluster;
use knet_network_policy::render::render;
use serde_json::Value;

use super::harness::{Harness, in_ns, probe};
use super::model::{Model, NODES};
use super::oracle;

/// A truth table: `cells[src][dst]`.
pub type Table = Vec<Vec<bool>>;

/// Compiles and applies the tables of both nodes; returns how long it took.
pub async fn enforce(h: &Harness, model: &Model, policies: &[Value]) -> Result<Duration> {
    let t0 = Instant::now();
    let nps: Vec<NetworkPolicy> = policies
        .iter()
        .map(|p| serde_json::from_value(p.clone()))
        .collect::<Result<_, _>>()?;
    let pods = model.api_pods();
    let nss = model.api_namespaces();
    let cluster = Cluster::from_api(&nps, &pods, &nss);
    for node in NODES {
        h.apply(node, &render(&compile(&cluster, node))).await?;
    }
    Ok(t0.elapsed())
}

pub fn expected(model: &Model, policies: &[Value], port: u16, proto: &str) -> Table {
    model
        .pods
        .iter()
        .map(|s| {
            model
                .pods
                .iter()
                .map(|d| s.index == d.index || oracle::allowed(model, policies, s, d, port, proto))
                .collect()
        })
        .collect()
}

/// Probes all 81 cells in parallel (one thread per cell, inside the source pod's namespace).
pub fn observe(
    h: &Harness,
    model: &Model,
    port: u16,
    proto: &'static str,
    v6: bool,
) -> Result<Table> {
    let targets: Vec<(SocketAddr, String)> = model
        .pods
        .iter()
        .map(|d| match d.ip6.filter(|_| v6) {
            Some(ip6) => (SocketAddr::from((ip6, port)), d.key()),
            None => (SocketAddr::from((d.ip, port)), d.key()),
        })
        .collect();
    let mut handles = Vec::new();
    for s in &model.pods {
        let targets = targets.clone();
        let me = s.index;
        handles.push(in_ns(&h.pod_ns(s.index), move || {
            std::thread::scope(|scope| {
                let hs: Vec<_> = targets
                    .iter()
                    .enumerate()
                    .map(|(i, (to, name))| scope.spawn(move || i == me || probe(*to, proto, name)))
                    .collect();
                hs.into_iter()
                    .map(|h| h.join().unwrap_or(false))
                    .collect::<Vec<bool>>()
            })
        })?);
    }
    handles
        .into_iter()
        .map(|h| h.join().map_err(|_| anyhow::anyhow!("prober panicked")))
        .collect()
}

/// Expected and observed tables side by side; `*` marks a wrong cell.
pub fn side_by_side(model: &Model, exp: &Table, obs: &Table) -> String {
    let keys: Vec<String> = model.pods.iter().map(|p| p.key()).collect();
    let header: String = keys.iter().map(|k| format!("{k:>4}")).collect();
    let mut out = format!(
        "expected{:w$}| observed{:w$}| wrong\n",
        "",
        "",
        w = header.len() - 4
    );
    let _ = writeln!(out, "    {header} |     {header} |");
    for (i, k) in keys.iter().enumerate() {
        let row = |t: &Table| -> String {
            t[i].iter()
                .map(|c| format!("{:>4}", if *c { "X" } else { "." }))
                .collect()
        };
        let wrong: String = (0..keys.len())
            .map(|j| format!("{:>4}", if exp[i][j] == obs[i][j] { "" } else { "*" }))
            .collect();
        let _ = writeln!(out, "{k:>4}{} | {k:>4}{} |{wrong}", row(exp), row(obs));
    }
    out
}

/// Runs one probe round; `Some(report)` on a mismatch.
pub fn check(
    h: &Harness,
    model: &Model,
    policies: &[Value],
    port: u16,
    proto: &'static str,
) -> Result<Option<String>> {
    check_family(h, model, policies, port, proto, false)
}

/// [`check`] over IPv6 (`v6`) or IPv4.
pub fn check_family(
    h: &Harness,
    model: &Model,
    policies: &[Value],
    port: u16,
    proto: &'static str,
    v6: bool,
) -> Result<Option<String>> {
    let exp = expected(model, policies, port, proto);
    let obs = observe(h, model, port, proto, v6)?;
    if exp == obs {
        return Ok(None);
    }
    let fam = if v6 { "IPv6" } else { "IPv4" };
    Ok(Some(format!(
        "{fam} {proto}/{port}:\n{}",
        side_by_side(model, &exp, &obs)
    )))
}
