//! Nothing is left behind: a second lab (through the `knet-lab` binary) is
//! brought up with a pod, then taken down gracefully, or killed and swept.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use knet_e2e::config::{DEFAULT_RUN_ROOT, lab_prefix};
use knet_e2e::control_plane::admin_client;
use knet_e2e::process::{PidRecord, wait_for};
use knet_e2e::sweep::{self, Inventory, OWNER_FILE};
use knet_e2e::{apply, netns};
use libtest_mimic::Failed;

use super::{AGNHOST, Harness, TestFn};

pub const TESTS: &[(&str, TestFn)] = &[
    (
        "teardown_after_down_leaves_nothing",
        teardown_after_down_leaves_nothing,
    ),
    ("killed_lab_is_swept", killed_lab_is_swept),
];

fn run_root() -> PathBuf {
    std::env::var("KNET_LAB_RUN_ROOT").map_or_else(|_| DEFAULT_RUN_ROOT.into(), PathBuf::from)
}

fn knet_lab(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_knet-lab"))
        .args(args)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "knet-lab {args:?} failed: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(text)
}

/// Brings up lab `id` with one node and a running pod on it.
async fn up_with_pod(id: &str) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let out = knet_lab(&["--id", id, "up", "--nodes", "1"])?;
    ensure!(
        out.contains("export KUBECONFIG="),
        "up printed no env: {out}"
    );
    let client = admin_client(&run_root().join(id).join("admin.kubeconfig")).await?;
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n  - {{name: c, image: {AGNHOST}, args: [pause]}}\n"
    );
    let sas: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
        kube::Api::namespaced(client.clone(), "default");
    wait_for(
        "default SA",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let sas = sas.clone();
            async move { Ok(sas.get_opt("default").await?.map(|_| ())) }
        },
    )
    .await?;
    apply::apply_yaml(&client, &pod, "default").await?;
    let prefix = lab_prefix(id);
    wait_for(
        "the pod sandbox",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let prefix = prefix.clone();
            async move {
                Ok(netns::list()
                    .iter()
                    .any(|n| n.starts_with(&format!("{prefix}pod-")))
                    .then_some(()))
            }
        },
    )
    .await?;
    // The pod's process (tagged like all lab processes) follows its sandbox.
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(client, "default");
    wait_for(
        "the pod to run",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let pods = pods.clone();
            async move {
                let phase = pods.get("p").await?.status.and_then(|s| s.phase);
                Ok((phase.as_deref() == Some("Running")).then_some(()))
            }
        },
    )
    .await?;
    let tagged = sweep::tagged_processes(id);
    ensure!(
        tagged.len() >= 5,
        "expected control plane + pod processes tagged with the lab id, found {tagged:?}"
    );
    tracing::info!(id, elapsed = ?t0.elapsed(), "second lab up with a pod");
    Ok(())
}

/// Checks nothing of lab `id` remains, allowing a few seconds for changes
/// other programs on the machine make concurrently to settle.
async fn assert_clean(id: &str, before: &Inventory) -> anyhow::Result<()> {
    wait_for(
        "a clean machine after teardown",
        Duration::from_secs(5),
        Duration::from_millis(250),
        || async { check_clean(id, before).map(Some) },
    )
    .await
}

fn check_clean(id: &str, before: &Inventory) -> anyhow::Result<()> {
    let prefix = lab_prefix(id);
    let after = Inventory::take()?;
    let mine = |v: &[String]| {
        v.iter()
            .filter(|n| n.starts_with(&prefix))
            .cloned()
            .collect::<Vec<_>>()
    };
    ensure!(
        mine(&after.netns).is_empty(),
        "namespaces left: {:?}",
        mine(&after.netns)
    );
    ensure!(
        mine(&after.etc_netns).is_empty(),
        "/etc/netns entries left: {:?}",
        mine(&after.etc_netns)
    );
    ensure!(
        mine(&after.cgroups).is_empty(),
        "cgroups left: {:?}",
        mine(&after.cgroups)
    );
    let procs = sweep::tagged_processes(id);
    ensure!(procs.is_empty(), "lab processes left: {procs:?}");
    ensure!(
        after.host_links == before.host_links,
        "host links changed: {:?} -> {:?}",
        before.host_links,
        after.host_links
    );
    ensure!(
        after.nft == before.nft,
        "host nftables ruleset changed:\n{}\n->\n{}",
        before.nft,
        after.nft
    );
    ensure!(!run_root().join(id).exists(), "run dir left");
    Ok(())
}

fn teardown_after_down_leaves_nothing(h: &Harness) -> Result<(), Failed> {
    // Start after the shared lab, so its warm start is measured alone.
    h.lab()?;
    let id = format!("d{}", std::process::id());
    h.run(async {
        let before = Inventory::take()?;
        let result = up_with_pod(&id).await;
        let down = knet_lab(&["--id", &id, "down"]);
        result?;
        down?;
        assert_clean(&id, &before).await
    })
}

fn killed_lab_is_swept(h: &Harness) -> Result<(), Failed> {
    h.lab()?;
    let id = format!("k{}", std::process::id());
    h.run(async {
        let before = Inventory::take()?;
        let result = up_with_pod(&id).await;
        let owner = PidRecord::read(&run_root().join(&id).join(OWNER_FILE));
        if let Ok(o) = &owner
            && o.is_ours()
        {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(o.pid),
                nix::sys::signal::Signal::SIGKILL,
            )?;
            wait_for(
                "the lab process to die",
                Duration::from_secs(10),
                Duration::from_millis(50),
                || async { Ok((!o.is_ours()).then_some(())) },
            )
            .await?;
        }
        // The crash left namespaces behind; the next start's sweep removes them.
        let left = netns::list()
            .iter()
            .filter(|n| n.starts_with(&lab_prefix(&id)))
            .count();
        let swept = sweep::sweep_stale(&run_root());
        let _ = std::fs::remove_file(run_root().join(format!("{id}.log")));
        result?;
        owner.context("no owner file")?;
        ensure!(
            left > 0,
            "expected leftovers after a kill (none found: was the lab up?)"
        );
        ensure!(swept.contains(&id), "sweep did not pick up {id}: {swept:?}");
        assert_clean(&id, &before).await
    })
}
