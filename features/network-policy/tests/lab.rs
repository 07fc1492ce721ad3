//! NetworkPolicy in the lab: a real control plane, two nodes running `knet daemon` (knet's own
//! CNI wiring the pods, this feature enforcing), the upstream model as real pods (agnhost
//! `serve-hostname`, one container per port and protocol, named ports), every case applied
//! through the API server and every cell probed from inside the pod namespaces until the
//! observed table matches the oracle (or 10 s pass). Prints the time from apply to enforced.
//! Needs root, the lab binaries (`make lab-bins`) and a built `target/debug/knet`.

#[path = "netpol/cases.rs"]
mod cases;
#[path = "netpol/harness.rs"]
#[allow(
    dead_code,
    reason = "shared with the netpol target; the lab has its own namespaces"
)]
mod harness;
#[path = "netpol/model.rs"]
#[allow(dead_code, reason = "shared with the netpol target")]
mod model;
#[path = "netpol/oracle.rs"]
mod oracle;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use knet_e2e::{CniMode, Lab, LabOptions};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use model::{Model, NAMESPACES, PODS};
use serde_json::{Value, json};

const AGNHOST: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";
/// How long a step may take to converge on every node.
const CONVERGE: Duration = Duration::from_secs(10);

fn pod_yaml(ns: &str, name: &str, node: &str) -> String {
    let mut containers = Vec::new();
    for port in [80, 81] {
        for proto in ["tcp", "udp"] {
            containers.push(json!({
                "name": format!("cont-{port}-{proto}"),
                "image": AGNHOST,
                "args": ["serve-hostname", format!("--{proto}"), "--http=false", "--port", port.to_string()],
                "ports": [{"name": format!("serve-{port}-{proto}"), "containerPort": port, "protocol": proto.to_uppercase()}],
            }));
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": ns, "labels": {"pod": name}},
           "spec": {"nodeName": node, "containers": containers}})
    .to_string()
}

/// Probes every cell once: `table[src][dst]`.
fn observe(
    lab_ns: &[String],
    model: &Model,
    port: u16,
    proto: &'static str,
) -> Result<Vec<Vec<bool>>> {
    let targets: Vec<(SocketAddr, String)> = model
        .pods
        .iter()
        .map(|d| (SocketAddr::from((d.ip, port)), d.name.clone()))
        .collect();
    let mut handles = Vec::new();
    for s in &model.pods {
        let targets = targets.clone();
        let me = s.index;
        handles.push(harness::in_ns(&lab_ns[s.index], move || {
            std::thread::scope(|scope| {
                let hs: Vec<_> = targets
                    .iter()
                    .enumerate()
                    .map(|(i, (to, name))| {
                        scope.spawn(move || i == me || harness::probe(*to, proto, name))
                    })
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

fn expected(model: &Model, policies: &[Value], port: u16, proto: &str) -> Vec<Vec<bool>> {
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

fn render(model: &Model, exp: &[Vec<bool>], obs: &[Vec<bool>]) -> String {
    let mut out = String::from("     expected                              | observed\n");
    for (i, p) in model.pods.iter().enumerate() {
        let row = |t: &[Vec<bool>]| -> String {
            t[i].iter().map(|c| if *c { " X" } else { " ." }).collect()
        };
        let wrong: String = (0..exp.len())
            .map(|j| if exp[i][j] == obs[i][j] { ' ' } else { '*' })
            .collect();
        out.push_str(&format!(
            "{:>4} {} | {} {wrong}\n",
            p.key(),
            row(exp),
            row(obs)
        ));
    }
    out
}

/// Makes the API's labels match the model's.
async fn sync_labels(lab: &Lab, model: &Model) -> Result<()> {
    let pp = PatchParams::default();
    for p in &model.pods {
        let mut labels: BTreeMap<String, Value> = BTreeMap::new();
        let pods: Api<Pod> = Api::namespaced(lab.client(), &p.ns);
        let live = pods.get(&p.name).await?;
        for k in live.metadata.labels.unwrap_or_default().keys() {
            labels.insert(k.clone(), Value::Null);
        }
        for (k, v) in &p.labels {
            labels.insert(k.clone(), json!(v));
        }
        pods.patch(
            &p.name,
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": labels}})),
        )
        .await?;
    }
    let nss: Api<Namespace> = Api::all(lab.client());
    for (ns, want) in &model.ns_labels {
        let live = nss.get(ns).await?;
        let mut labels: BTreeMap<String, Value> = BTreeMap::new();
        for k in live.metadata.labels.unwrap_or_default().keys() {
            labels.insert(k.clone(), Value::Null);
        }
        for (k, v) in want {
            labels.insert(k.clone(), json!(v));
        }
        nss.patch(
            ns,
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": labels}})),
        )
        .await?;
    }
    Ok(())
}

/// Replaces every NetworkPolicy in x, y, z with `policies`.
async fn set_policies(lab: &Lab, policies: &[Value]) -> Result<()> {
    for ns in NAMESPACES {
        let api: Api<NetworkPolicy> = Api::namespaced(lab.client(), ns);
        api.delete_collection(&DeleteParams::default(), &ListParams::default())
            .await?;
    }
    for p in policies {
        let ns = p["metadata"]["namespace"]
            .as_str()
            .context("policy namespace")?;
        lab.apply_yaml(&p.to_string(), ns).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_cases_in_the_lab() -> Result<()> {
    let mut opts = LabOptions::new(&format!("np{}", std::process::id() % 100_000), 2);
    opts.cni = CniMode::ConfDir;
    let lab = Lab::start(opts)
        .await
        .context("the lab must start (root, make lab-bins)")?;
    for node in ["node-1", "node-2"] {
        let out = lab
            .bootstrap_knet_with(node, None, &["--timeout", "90s"])
            .await?;
        anyhow::ensure!(
            out.success(),
            "bootstrap {node}: {}\n{}",
            out.stdout,
            out.stderr
        );
    }
    let mut base = Model::new();
    for ns in NAMESPACES {
        lab.create_namespace(ns).await?;
    }
    let mut yaml = Vec::new();
    for ns in NAMESPACES {
        for (i, p) in PODS.iter().enumerate() {
            yaml.push(pod_yaml(ns, p, if i == 2 { "node-2" } else { "node-1" }));
        }
    }
    for (doc, ns) in yaml.iter().zip(NAMESPACES.iter().flat_map(|n| [n, n, n])) {
        lab.apply_yaml(doc, ns).await?;
    }
    let mut lab_ns = vec![String::new(); base.pods.len()];
    for p in base.pods.clone() {
        let live = lab
            .wait_pod_ready(&p.ns, &p.name, Duration::from_secs(120))
            .await?;
        let ip = live.status.and_then(|s| s.pod_ip).context("pod IP")?;
        base.set_ip(&p.key(), ip.parse()?);
        lab_ns[p.index] = lab.pod_netns(&p.ns, &p.name).await?;
    }
    sync_labels(&lab, &base).await?;
    let cases = cases::all(&base);
    let mut failures = Vec::new();
    let mut converge = Vec::new();
    let t0 = Instant::now();
    for case in &cases {
        let mut model = base.clone();
        for (i, step) in case.steps.iter().enumerate() {
            if let Some(m) = step.mutate {
                m(&mut model);
            }
            let t = Instant::now();
            sync_labels(&lab, &model).await?;
            set_policies(&lab, &step.policies).await?;
            for (port, proto) in &step.probes {
                let exp = expected(&model, &step.policies, *port, proto);
                let mut obs = observe(&lab_ns, &model, *port, proto)?;
                while obs != exp && t.elapsed() < CONVERGE {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    obs = observe(&lab_ns, &model, *port, proto)?;
                }
                if obs == exp {
                    converge.push(t.elapsed());
                } else {
                    failures.push(format!(
                        "case {:?} step {i} {proto}/{port}:\n{}",
                        case.name,
                        render(&model, &exp, &obs)
                    ));
                }
            }
        }
    }
    converge.sort();
    if let (Some(min), Some(max)) = (converge.first(), converge.last()) {
        eprintln!(
            "apply-to-matching-table (includes one 1 s probe round when cells are denied): n={} min {min:?} p50 {:?} max {max:?}",
            converge.len(),
            converge[converge.len() / 2]
        );
    }
    eprintln!(
        "{} cases in {:?}; {} failed",
        cases.len(),
        t0.elapsed(),
        failures.len()
    );
    anyhow::ensure!(failures.is_empty(), "{}", failures.join("\n"));
    for n in [1usize, 100, 1000] {
        measure_enforcement(&lab, n).await?;
    }
    Ok(())
}

/// Creates `n` policies in x (each selecting every pod, admitting one port) and prints the time
/// from the first create and from the last create until both nodes' tables hold all of them.
async fn measure_enforcement(lab: &Lab, n: usize) -> Result<()> {
    set_policies(lab, &[]).await?;
    let policies: Vec<Value> = (0..n)
        .map(|i| {
            cases::np(
                "x",
                &format!("lat-{i}"),
                json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}], "ports": [{"port": 1000 + i}]}]}),
            )
        })
        .collect();
    let t0 = Instant::now();
    for p in &policies {
        lab.apply_yaml(&p.to_string(), "x").await?;
    }
    let created = t0.elapsed();
    let deadline = Instant::now() + Duration::from_secs(60);
    for (node, chain) in [("node-1", "ingress/x/a"), ("node-2", "ingress/x/c")] {
        loop {
            let out = lab
                .exec_node(
                    node,
                    &[
                        "nft",
                        "list",
                        "chain",
                        "inet",
                        knet_network_policy::TABLE,
                        chain,
                    ],
                    Duration::from_secs(10),
                )
                .await?;
            if out.stdout.matches(" ingress[0]").count() == n {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{n} policies not enforced on {node} within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let all = t0.elapsed();
    eprintln!(
        "{n} policies: created in {created:?}; enforced on both nodes {all:?} after the first create, {:?} after the last",
        all.saturating_sub(created)
    );
    Ok(())
}
