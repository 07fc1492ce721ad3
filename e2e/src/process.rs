//! Processes the lab starts, and commands it runs to completion.
//!
//! Every long-running process the lab starts is recorded in a pid file under
//! the lab's run dir (`pids/<name>.pid`): its pid, its start time (field 22 of
//! `/proc/PID/stat`, so a recycled pid is never mistaken for ours) and a marker
//! that must appear in `/proc/PID/cmdline`. Teardown and the stale sweep kill
//! a recorded process only when both still match, and kill its whole process
//! group (each one is started as a group leader), never anything else.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};

/// What a pid file records about a process the lab started.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PidRecord {
    /// The process id (also its process group id).
    pub pid: i32,
    /// Start time in clock ticks since boot, from `/proc/PID/stat`.
    pub start_time: u64,
    /// A string that `/proc/PID/cmdline` (or else `/proc/PID/environ`) must contain.
    pub marker: String,
}

/// The result of a command run to completion.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    /// Exit code, `None` when killed by a signal or by the timeout.
    pub code: Option<i32>,
    /// Captured standard output.
    pub stdout: String,
    /// Captured standard error.
    pub stderr: String,
    /// Whether the command was killed because it ran past its timeout.
    pub timed_out: bool,
}

// === impl ExecOutput ===

impl ExecOutput {
    /// Whether the command exited with status 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Returns `self` if the command succeeded, else an error with its output.
    pub fn ok(self) -> Result<Self> {
        if self.success() {
            return Ok(self);
        }
        bail!(
            "command failed (code {:?}{}): stdout: {} stderr: {}",
            self.code,
            if self.timed_out { ", timed out" } else { "" },
            self.stdout.trim(),
            self.stderr.trim()
        )
    }
}

// === impl PidRecord ===

impl PidRecord {
    /// Records the running process `pid`, which must be alive.
    pub fn of(pid: i32, marker: &str) -> Result<Self> {
        let start_time =
            start_time(pid).with_context(|| format!("process {pid} is not running"))?;
        Ok(Self {
            pid,
            start_time,
            marker: marker.to_owned(),
        })
    }

    /// Whether the recorded process still runs and still is the one we started.
    pub fn is_ours(&self) -> bool {
        if start_time(self.pid) != Some(self.start_time) {
            return false;
        }
        // The marker is in the command line, or (for processes that exec
        // something else, like pod commands) in the environment we gave them.
        let has = |file: &str| {
            fs::read(format!("/proc/{}/{file}", self.pid))
                .map(|c| String::from_utf8_lossy(&c).contains(&self.marker))
                .unwrap_or(false)
        };
        has("cmdline") || has("environ")
    }

    /// Writes the record to `path`.
    pub fn write(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(path, serde_json::to_vec(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Reads a record from `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let data = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(serde_json::from_slice(&data)?)
    }

    /// Stops the process group: SIGTERM, then SIGKILL after `grace`.
    /// Does nothing when the process is gone or is no longer ours.
    pub fn stop(&self, grace: Duration) -> bool {
        if !self.is_ours() {
            return false;
        }
        tracing::debug!(pid = self.pid, marker = %self.marker, "stopping process");
        signal_group(self.pid, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !self.is_alive() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        signal_group(self.pid, Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && self.is_alive() {
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Alive and not a zombie.
    fn is_alive(&self) -> bool {
        if start_time(self.pid) != Some(self.start_time) {
            return false;
        }
        proc_state(self.pid).is_some_and(|s| s != 'Z' && s != 'X')
    }
}

/// Sends `sig` to the process group led by `pid` (and to `pid` itself).
fn signal_group(pid: i32, sig: Signal) {
    let _ = killpg(Pid::from_raw(pid), sig);
    let _ = kill(Pid::from_raw(pid), sig);
}

/// Start time of `pid` in clock ticks since boot.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces: fields restart after ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

fn proc_state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

/// Writes the pid file for a spawned child and returns the record.
pub fn record_child(child: &Child, marker: &str, pid_file: &Path) -> Result<PidRecord> {
    let pid = child
        .id()
        .context("child exited before it could be recorded")?;
    let rec = PidRecord::of(i32::try_from(pid)?, marker)?;
    rec.write(pid_file)?;
    Ok(rec)
}

/// Starts a long-running lab process: its own process group, output
/// appended to `log`, killed by the kernel if the starting thread dies
/// (`setpriv --pdeathsig KILL`), and recorded in `pid_file`.
///
/// The parent-death signal fires when the *thread* that forked exits, so the
/// fork happens on a runtime worker thread (which lives as long as the
/// runtime), never on the caller's possibly short-lived thread.
pub async fn spawn_daemon(
    argv: Vec<OsString>,
    log: PathBuf,
    pid_file: PathBuf,
    marker: String,
    env: Vec<(String, String)>,
) -> Result<(Child, PidRecord)> {
    tokio::spawn(async move { spawn_daemon_here(&argv, &log, &pid_file, &marker, &env) })
        .await
        .context("spawner task failed")?
}

fn spawn_daemon_here(
    argv: &[OsString],
    log: &Path,
    pid_file: &Path,
    marker: &str,
    env: &[(String, String)],
) -> Result<(Child, PidRecord)> {
    if let Some(dir) = log.parent() {
        fs::create_dir_all(dir)?;
    }
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let mut cmd = Command::new("setpriv");
    cmd.args(["--pdeathsig", "KILL", "--"])
        .args(argv)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0)
        .kill_on_drop(false);
    let child = cmd
        .spawn()
        .with_context(|| format!("spawning {:?}", argv.first()))?;
    let rec = record_child(&child, marker, pid_file)?;
    Ok((child, rec))
}

/// Stops every process recorded under `pid_dir` (pid files `*.pid`) and
/// removes the pid files. Returns how many were ours and got stopped.
pub fn stop_all(pid_dir: &Path, grace: Duration) -> usize {
    let Ok(entries) = fs::read_dir(pid_dir) else {
        return 0;
    };
    let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    // Pods and daemons (whose names sort first) before the control plane.
    files.sort_by_key(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("cp-"))
    });
    let mut stopped = 0;
    for f in files {
        if f.extension() != Some(OsStr::new("pid")) {
            continue;
        }
        match PidRecord::read(&f) {
            Ok(rec) if rec.stop(grace) => stopped += 1,
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, file = %f.display(), "unreadable pid file"),
        }
        let _ = fs::remove_file(&f);
    }
    stopped
}

/// Runs `argv` to completion (killed after `timeout`), capturing its output.
pub async fn run<S: AsRef<OsStr>>(argv: &[S], timeout: Duration) -> Result<ExecOutput> {
    let (prog, args) = argv.split_first().context("empty command")?;
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    run_command(cmd, timeout).await
}

/// Runs a prepared command to completion, killed after `timeout`.
pub async fn run_command(mut cmd: Command, timeout: Duration) -> Result<ExecOutput> {
    cmd.kill_on_drop(true);
    let desc = format!("{:?}", cmd.as_std());
    let child = cmd.spawn().with_context(|| format!("spawning {desc}"))?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(out) => {
            let out = out.with_context(|| format!("waiting for {desc}"))?;
            Ok(ExecOutput {
                code: out.status.code(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                timed_out: false,
            })
        }
        // Dropping the future drops the child, which kill_on_drop kills.
        Err(_) => Ok(ExecOutput {
            code: None,
            stdout: String::new(),
            stderr: format!("timed out after {timeout:?}"),
            timed_out: true,
        }),
    }
}

/// Runs `argv` synchronously (for teardown paths that can't be async).
pub fn run_sync<S: AsRef<OsStr>>(argv: &[S]) -> Result<std::process::Output> {
    let (prog, args) = argv.split_first().context("empty command")?;
    std::process::Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {:?}", prog.as_ref()))
}

/// Polls `f` every `every` until it returns `Ok(Some(_))`, failing after
/// `timeout` with the last error or `what`.
pub async fn wait_for<T, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut f: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last: Option<anyhow::Error> = None;
    loop {
        match f().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = Some(e),
        }
        if Instant::now() >= deadline {
            return Err(match last {
                Some(e) => e.context(format!("timed out after {timeout:?} waiting for {what}")),
                None => anyhow::anyhow!("timed out after {timeout:?} waiting for {what}"),
            });
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_recorded_and_recognised() {
        let me = i32::try_from(std::process::id()).expect("pid fits");
        let rec = PidRecord::of(me, "").expect("we are running");
        assert!(rec.is_ours());
        let other = PidRecord {
            start_time: rec.start_time + 1,
            ..rec.clone()
        };
        assert!(
            !other.is_ours(),
            "a different start time is another process"
        );
        let wrong_marker = PidRecord {
            marker: "definitely-not-in-cmdline-xyz".into(),
            ..rec
        };
        assert!(!wrong_marker.is_ours());
    }
}
