//! Detached mode with the real `knet daemon`: one daemon per node, in its own session, with pid
//! and log files; stale pid files neither trusted nor used to kill a stranger; reset stops it.
//! The daemon runs in a lab node's namespace against the lab's apiserver.

use std::time::Duration;

use knet_bootstrap::{
    BootstrapError, BootstrapOptions, DaemonStart, DaemonState, ResetStep, detached_daemon_pid,
    ensure_cluster_config, is_knet_daemon, reset, start_daemon,
};

use crate::support::netns::TestNetns;
use crate::support::{alive, knet_binary, lab, temp_paths, wait_gone};

/// The session id (field 6 of /proc/PID/stat).
fn session(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(3)?.parse().ok()
}

async fn wait_log(path: &std::path::Path, needle: &str) -> String {
    for _ in 0..300 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{} never contained {needle:?}: {}",
        path.display(),
        std::fs::read_to_string(path).unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_daemon_starts_once_in_its_own_session_ignores_stale_pid_files_and_reset_stops_it() {
    let lab = lab::start("dm", 1).await;
    let n = lab::node(&lab, "node-1");
    // The daemon needs the cluster config to exist (a bootstrapped cluster).
    ensure_cluster_config(&lab::admin_api(&lab).await, None)
        .await
        .expect("cluster config");
    let o = lab::options(&n);

    // A stale pid file naming a process that is not a knet daemon.
    let mut stranger = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("sleep");
    std::fs::create_dir_all(&o.paths.run_dir).expect("mkdir");
    std::fs::write(o.paths.pid_file(), format!("{}\n", stranger.id())).expect("pid file");
    assert_eq!(
        detached_daemon_pid(&o.paths),
        None,
        "a stranger is not trusted"
    );

    let o2 = o.clone();
    let state = lab::in_node(
        &n,
        move || async move { start_daemon(o2.start_daemon, &o2) },
    )
    .await
    .expect("start");
    let DaemonState::Spawned { pid, log } = state else {
        panic!("expected a spawn, got {state:?}");
    };
    lab::adopt_daemon(&lab, &n, pid);
    assert_ne!(pid, stranger.id());
    assert_eq!(log, o.paths.log_file());
    assert!(is_knet_daemon(pid));
    assert_eq!(session(pid), Some(pid), "the daemon leads its own session");
    assert_eq!(
        std::fs::read_to_string(o.paths.pid_file())
            .expect("pid file")
            .trim(),
        pid.to_string()
    );
    let text = wait_log(&log, "knet daemon started").await;
    assert!(text.contains("node-1"), "{text}");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(
        cmdline.contains(&format!(
            "daemon --state-dir {} --run-dir {}",
            o.paths.state_dir.display(),
            o.paths.run_dir.display()
        )),
        "{cmdline}"
    );
    // It answers on the node's socket.
    let status: knet_core::NodeStatus = knet_api::Client::new(o.paths.socket())
        .get("/v1/status")
        .await
        .expect("the daemon answers");
    assert_eq!(status.node, "node-1");

    // A second start finds the same daemon.
    let o2 = o.clone();
    let again = lab::in_node(
        &n,
        move || async move { start_daemon(o2.start_daemon, &o2) },
    )
    .await
    .expect("again");
    assert_eq!(again, DaemonState::AlreadyRunning { pid });

    // A pid file pointing at the stranger again: reset must not kill it.
    std::fs::write(o.paths.pid_file(), format!("{}\n", stranger.id())).expect("pid file");
    reset(&o.paths, &mut |_| {}).await.expect("reset");
    assert!(
        alive(stranger.id()),
        "reset killed a process that is not a knet daemon"
    );
    assert!(alive(pid), "the daemon was not named by the pid file");
    stranger.kill().expect("kill sleep");
    let _ = stranger.wait();

    // With the right pid file, reset stops the daemon and keeps its log.
    std::fs::write(o.paths.pid_file(), format!("{pid}\n")).expect("pid file");
    let mut steps = Vec::new();
    reset(&o.paths, &mut |s| steps.push(s))
        .await
        .expect("reset");
    assert!(
        steps.contains(&ResetStep::DaemonStopped { pid }),
        "{steps:?}"
    );
    wait_gone(pid).await;
    assert!(!o.paths.pid_file().exists());
    assert!(log.exists(), "the log is kept");
    // Reset again: nothing to stop.
    let mut steps = Vec::new();
    reset(&o.paths, &mut |s| steps.push(s))
        .await
        .expect("reset again");
    assert!(
        !steps
            .iter()
            .any(|s| matches!(s, ResetStep::DaemonStopped { .. })),
        "{steps:?}"
    );
}

#[test]
fn real_daemon_that_exits_at_once_is_reported_with_its_log() {
    // No kubeconfig at the given path: `knet daemon` exits at once. In a namespace of its own,
    // so even a daemon that did start could never touch the host.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut o = BootstrapOptions::new(temp_paths(dir.path()), "n1");
    o.knet_binary = knet_binary();
    o.kubeconfig = Some(dir.path().join("no-such-kubeconfig"));
    o.start_daemon = DaemonStart::Detached;
    let ns = TestNetns::new();
    let err = ns
        .run(|| start_daemon(o.start_daemon, &o))
        .expect_err("dies");
    assert!(matches!(err, BootstrapError::DaemonStart { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("exited at once"), "{msg}");
    assert!(
        msg.contains("no-such-kubeconfig"),
        "the log's last lines: {msg}"
    );
    assert!(!o.paths.pid_file().exists());
}

#[test]
fn none_starts_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut o = BootstrapOptions::new(temp_paths(dir.path()), "n1");
    o.knet_binary = knet_binary();
    o.start_daemon = DaemonStart::None;
    assert_eq!(
        start_daemon(o.start_daemon, &o).expect("none"),
        DaemonState::NotStarted
    );
    assert!(!o.paths.pid_file().exists());
}
