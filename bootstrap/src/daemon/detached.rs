//! Detached mode: `setsid <knet> daemon ...` with a log file and a pid file (see the module doc
//! of [`crate::daemon`]).

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use knet_core::paths::Paths;

use super::{DaemonState, detached_daemon_pid, process};
use crate::{BootstrapError, fsutil};

/// How long a freshly spawned daemon must stay up before we call it started.
const SETTLE: Duration = Duration::from_millis(500);
/// How long a daemon gets to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Starts the daemon unless the pid file names a live one.
pub(super) fn start(
    knet: &Path,
    args: &[String],
    paths: &Paths,
) -> Result<DaemonState, BootstrapError> {
    if let Some(pid) = detached_daemon_pid(paths) {
        return Ok(DaemonState::AlreadyRunning { pid });
    }
    for dir in [&paths.state_dir, &paths.run_dir] {
        std::fs::create_dir_all(dir).map_err(|e| BootstrapError::io("create directory", dir, e))?;
    }
    let log_path = paths.log_file();
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(&log_path)
        .map_err(|e| BootstrapError::io("open", &log_path, e))?;
    let log2 = log
        .try_clone()
        .map_err(|e| BootstrapError::io("open", &log_path, e))?;
    let mut child = spawn(knet, args, log, log2)?;
    let pid = child.id();
    fsutil::write_atomic(&paths.pid_file(), format!("{pid}\n").as_bytes(), 0o644)?;
    // A daemon that dies at once (bad flags, missing kubeconfig) is reported now, with its log.
    let deadline = Instant::now() + SETTLE;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            let _ = fsutil::remove_if_exists(&paths.pid_file());
            return Err(BootstrapError::DaemonStart {
                reason: format!(
                    "`{} {}` exited at once ({status}); last log lines: {}",
                    knet.display(),
                    args.join(" "),
                    log_tail(&log_path, 5)
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Reap it when it exits, so it never lingers as a zombie of a long-lived caller.
    std::thread::spawn(move || child.wait());
    tracing::info!(pid, log = %log_path.display(), "started detached daemon");
    Ok(DaemonState::Spawned { pid, log: log_path })
}

/// Stops the detached daemon named by the pid file (only if it is a knet daemon) and removes
/// the pid file. Returns the pid that was stopped.
pub(crate) fn stop_detached(paths: &Paths) -> Result<Option<u32>, BootstrapError> {
    let pid = detached_daemon_pid(paths);
    if let Some(pid) = pid {
        tracing::info!(pid, "stopping detached daemon");
        process::terminate(pid, STOP_GRACE);
    }
    fsutil::remove_if_exists(&paths.pid_file())?;
    Ok(pid)
}

/// `setsid` (util-linux) gives the daemon a session of its own, detached from our terminal;
/// it execs in place (our child is not a group leader), so the pid is the daemon's. Without
/// `setsid`, a new process group is the fallback.
fn spawn(
    knet: &Path,
    args: &[String],
    out: std::fs::File,
    err: std::fs::File,
) -> Result<Child, BootstrapError> {
    let mut cmd = Command::new("setsid");
    cmd.arg(knet).args(args);
    let (out2, err2) = (
        out.try_clone()
            .map_err(|e| BootstrapError::io("open", knet, e))?,
        err.try_clone()
            .map_err(|e| BootstrapError::io("open", knet, e))?,
    );
    configure(&mut cmd, out, err);
    match cmd.spawn() {
        Ok(child) => Ok(child),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut cmd = Command::new(knet);
            cmd.args(args).process_group(0);
            configure(&mut cmd, out2, err2);
            cmd.spawn().map_err(|e| BootstrapError::DaemonStart {
                reason: format!("cannot run {}: {e}", knet.display()),
            })
        }
        Err(e) => Err(BootstrapError::DaemonStart {
            reason: format!("cannot run setsid {}: {e}", knet.display()),
        }),
    }
}

fn configure(cmd: &mut Command, out: std::fs::File, err: std::fs::File) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .current_dir("/");
}

/// The last `n` lines of a log file, joined with ` | `.
pub(crate) fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(n)..];
    if tail.is_empty() {
        format!("(none in {})", path.display())
    } else {
        tail.join(" | ")
    }
}
