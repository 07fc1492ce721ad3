//! Detached mode and reset with a stand-in `knet` script: one daemon per node, its own session,
//! pid and log files, stale pid files ignored, only knet daemons signalled.

use std::time::Duration;

use knet_bootstrap::{
    BootstrapError, BootstrapOptions, DaemonStart, DaemonState, ResetStep, detached_daemon_pid,
    is_knet_daemon, reset, start_daemon,
};

use crate::support::{alive, fake_knet, temp_paths};

fn opts(dir: &std::path::Path, exit_code: Option<i32>) -> BootstrapOptions {
    let mut o = BootstrapOptions::new(temp_paths(dir), "n1");
    o.knet_binary = fake_knet(dir, exit_code);
    o.start_daemon = DaemonStart::Detached;
    o
}

/// The session id (field 6 of /proc/PID/stat).
fn session(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(3)?.parse().ok()
}

async fn wait_log(path: &std::path::Path, needle: &str) -> String {
    for _ in 0..100 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} never contained {needle:?}", path.display());
}

#[tokio::test]
async fn detached_daemon_starts_once_in_its_own_session_and_reset_stops_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = opts(dir.path(), None);
    let state = start_daemon(o.start_daemon, &o).expect("start");
    let DaemonState::Spawned { pid, log } = state else {
        panic!("expected a spawn, got {state:?}");
    };
    assert_eq!(log, o.paths.log_file());
    assert!(is_knet_daemon(pid));
    assert_eq!(session(pid), Some(pid), "the daemon leads its own session");
    let pid_file = std::fs::read_to_string(o.paths.pid_file()).expect("pid file");
    assert_eq!(pid_file.trim(), pid.to_string());
    let text = wait_log(&log, "fake knet daemon").await;
    assert!(
        text.contains(&format!(
            "daemon --state-dir {} --run-dir {}",
            o.paths.state_dir.display(),
            o.paths.run_dir.display()
        )),
        "{text}"
    );
    // Second start: the same daemon.
    assert_eq!(
        start_daemon(o.start_daemon, &o).expect("again"),
        DaemonState::AlreadyRunning { pid }
    );
    assert_eq!(detached_daemon_pid(&o.paths), Some(pid));

    let mut steps = Vec::new();
    reset(&o.paths, &mut |s| steps.push(s))
        .await
        .expect("reset");
    assert!(
        steps.contains(&ResetStep::DaemonStopped { pid }),
        "{steps:?}"
    );
    assert!(!alive(pid), "daemon stopped");
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

#[tokio::test]
async fn stale_pid_file_of_another_process_is_neither_trusted_nor_killed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = opts(dir.path(), None);
    let mut stranger = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("sleep");
    std::fs::create_dir_all(&o.paths.run_dir).expect("mkdir");
    std::fs::write(o.paths.pid_file(), format!("{}\n", stranger.id())).expect("pid file");
    assert_eq!(detached_daemon_pid(&o.paths), None);
    let state = start_daemon(o.start_daemon, &o).expect("start");
    let DaemonState::Spawned { pid, .. } = state else {
        panic!("expected a spawn, got {state:?}");
    };
    assert_ne!(pid, stranger.id());
    // Point the pid file at the stranger again: reset must not kill it.
    std::fs::write(o.paths.pid_file(), format!("{}\n", stranger.id())).expect("pid file");
    reset(&o.paths, &mut |_| {}).await.expect("reset");
    assert!(
        alive(stranger.id()),
        "reset killed a process that is not a knet daemon"
    );
    stranger.kill().expect("kill sleep");
    let _ = stranger.wait();
    // Clean up the daemon we started (it is a knet daemon, so this is allowed).
    std::fs::write(o.paths.pid_file(), format!("{pid}\n")).expect("pid file");
    reset(&o.paths, &mut |_| {}).await.expect("reset");
    assert!(!alive(pid));
}

#[tokio::test]
async fn daemon_that_exits_at_once_is_reported_with_its_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = opts(dir.path(), Some(3));
    let err = start_daemon(o.start_daemon, &o).expect_err("dies");
    assert!(matches!(err, BootstrapError::DaemonStart { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("exited at once"), "{msg}");
    assert!(msg.contains("fake knet failing: daemon"), "{msg}");
    assert!(!o.paths.pid_file().exists());
}

#[test]
fn none_starts_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut o = opts(dir.path(), None);
    o.start_daemon = DaemonStart::None;
    assert_eq!(
        start_daemon(o.start_daemon, &o).expect("none"),
        DaemonState::NotStarted
    );
    assert!(!o.paths.pid_file().exists());
}
