//! Starting a one-node lab with a knet daemon, and running the CLI on that node.

use std::time::{Duration, Instant};

use knet_e2e::{CniMode, ExecOutput, Lab, LabOptions};

pub const NODE: &str = "node-1";

/// A fresh lab (one node, reference CNI) whose node runs the knet binary under test (knet-e2e
/// finds it at target/debug/knet, the binary cargo built for these tests).
pub async fn lab(test: &str) -> Lab {
    lab_with_nodes(test, 1).await
}

/// The config the node tests bootstrap with: the defaults.
pub const BOOTSTRAP_CONFIG: &str = "";

/// A fresh lab with `nodes` nodes whose pods use the CNI config knet installs.
pub async fn lab_with_nodes(test: &str, nodes: usize) -> Lab {
    let id = format!("{test}{}", std::process::id() % 100_000);
    let mut opts = LabOptions::new(&id, nodes);
    // Pods use whatever knet bootstrap installs, not the lab's reference bridge conflist.
    opts.cni = CniMode::ConfDir;
    Lab::start(opts)
        .await
        .expect("the lab must start (root, `make deps`)")
}

/// Runs `knet <args>` on the lab node with the node's paths.
pub async fn knet(lab: &Lab, args: &[&str]) -> ExecOutput {
    knet_on(lab, NODE, args).await
}

/// Runs `knet <args>` on lab node `node` with that node's paths.
pub async fn knet_on(lab: &Lab, node: &str, args: &[&str]) -> ExecOutput {
    let n = lab.node(node).expect("node");
    let bin = env!("CARGO_BIN_EXE_knet");
    let mut argv: Vec<String> = vec![bin.into()];
    argv.extend(args.iter().map(|s| s.to_string()));
    if args.first() == Some(&"bootstrap") && !args.iter().any(|a| a.starts_with("--socket-lb")) {
        // Never the host's cgroup root (what `auto` picks): the node's lab-made cgroup.
        argv.push("--socket-lb-cgroup".into());
        argv.push(n.cgroup.display().to_string());
    }
    for (flag, value) in [
        ("--node-name", n.name.clone()),
        ("--kubeconfig", n.kubeconfig.display().to_string()),
        ("--state-dir", n.state_dir.display().to_string()),
        ("--run-dir", n.run_dir.display().to_string()),
        ("--cni-conf-dir", n.cni_conf_dir.display().to_string()),
        ("--cni-bin-dir", n.cni_bin_dir.display().to_string()),
    ] {
        argv.push(flag.into());
        argv.push(value);
    }
    // nsenter --net (not `ip netns exec`) so knet sees the host's mounts, as on a real node.
    let net = format!("--net=/run/netns/{}", n.netns);
    let mut full: Vec<&str> = vec!["nsenter", &net];
    full.extend(argv.iter().map(String::as_str));
    knet_e2e::process::run(&full, Duration::from_secs(60))
        .await
        .expect("exec knet")
}

/// Bootstraps the node (which starts the daemon) and waits for the daemon's socket. The
/// readiness wait is skipped (`--timeout 0s`): these tests are about the frame, not features.
pub async fn bootstrap(lab: &Lab, config: Option<&str>) -> ExecOutput {
    let out = lab
        .bootstrap_knet_with(NODE, config, &["--timeout", "0s"])
        .await
        .expect("run bootstrap");
    wait_for_daemon(lab).await;
    out
}

/// Bootstraps each `(node, extra flags)` with `config` and waits (60 s) for its features to be
/// ready; a failed bootstrap fails the test with its output.
pub async fn bootstrap_nodes(lab: &Lab, config: &str, nodes: &[(&str, &[&str])]) {
    for (node, extra) in nodes {
        let mut flags = vec!["--timeout", "60s"];
        flags.extend_from_slice(extra);
        let out = lab
            .bootstrap_knet_with(node, Some(config), &flags)
            .await
            .expect("run bootstrap");
        assert!(
            out.success(),
            "bootstrap {node}: {}\n{}",
            out.stdout,
            out.stderr
        );
    }
}

/// Waits (bounded) until `knet status` answers.
pub async fn wait_for_daemon(lab: &Lab) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = knet(lab, &["status"]).await;
        if out.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon never answered: {}",
            out.stderr
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `knet status` until `line` appears (bounded), returning how long it took.
pub async fn wait_status_line(lab: &Lab, line: &str) -> Duration {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < Duration::from_secs(10) {
        let out = knet(lab, &["status"]).await;
        if out
            .stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") == line)
        {
            return start.elapsed();
        }
        last = out.stdout;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("status never showed {line:?}; last status:\n{last}");
}

/// Asserts a command failed with exactly one line on stderr containing `needle`.
pub fn assert_one_line_error(out: &ExecOutput, needle: &str) {
    assert!(
        !out.success(),
        "expected failure, got success: {}",
        out.stdout
    );
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one error line, got: {:?}",
        out.stderr
    );
    assert!(lines[0].starts_with("error: "), "{}", lines[0]);
    assert!(
        lines[0].contains(needle),
        "{:?} does not contain {needle:?}",
        lines[0]
    );
}
