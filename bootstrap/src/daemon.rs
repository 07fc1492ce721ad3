//! Starting the node daemon: a systemd unit when systemd runs, otherwise a detached process.
//!
//! **Detached mode** (no systemd, e.g. containers, the lab, CI): `<knet> daemon <path flags>` is
//! started in a new session (`setsid`, so it outlives the terminal and the CLI), with stdin
//! from `/dev/null`, stdout and stderr appended to `<state-dir>/knet-daemon.log`, and its pid
//! in `<run-dir>/knet-daemon.pid`. A pid file is trusted only while `/proc/PID/cmdline` is a
//! knet daemon, so a stale file never makes bootstrap skip the start or reset kill a stranger.
//! Nothing restarts a detached daemon that dies; run `knet bootstrap` again (it starts the
//! daemon if it is not running) or use systemd.

use std::fmt;
use std::path::{Path, PathBuf};

use knet_core::paths::Paths;

use crate::{BootstrapError, BootstrapOptions, DaemonStart};

mod detached;
mod process;
mod systemd;

pub(crate) use detached::{log_tail, stop_detached};
pub use process::is_knet_daemon;
pub(crate) use systemd::stop_systemd_unit;
pub use systemd::{parse_dropin_environment, snap_dropin, snap_dropin_environment, systemd_unit};

/// The systemd unit bootstrap installs.
pub const SYSTEMD_UNIT_NAME: &str = "knet.service";

/// The daemon's state after bootstrap's start step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonState {
    /// A systemd unit was enabled and started.
    Systemd {
        /// The unit name.
        unit: String,
        /// Whether the unit file was (re)written.
        changed: bool,
    },
    /// A detached daemon was spawned.
    Spawned {
        /// Its pid.
        pid: u32,
        /// Its log file.
        log: PathBuf,
    },
    /// A detached daemon was already running.
    AlreadyRunning {
        /// Its pid.
        pid: u32,
    },
    /// [`DaemonStart::None`]: the caller runs the daemon.
    NotStarted,
}

impl fmt::Display for DaemonState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DaemonState::Systemd { unit, changed } => {
                let what = if *changed { "installed and " } else { "" };
                write!(f, "daemon: {what}started systemd unit {unit}")
            }
            DaemonState::Spawned { pid, log } => {
                write!(f, "daemon: started (pid {pid}, log {})", log.display())
            }
            DaemonState::AlreadyRunning { pid } => {
                write!(f, "daemon: already running (pid {pid})")
            }
            DaemonState::NotStarted => f.write_str("daemon: not started (left to the caller)"),
        }
    }
}

/// Whether systemd is the init system.
pub fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// The arguments of `knet daemon` for this node: the same path flags bootstrap was given.
pub fn daemon_args(paths: &Paths, node_name: &str, kubeconfig: Option<&Path>) -> Vec<String> {
    let s = |p: &Path| p.display().to_string();
    let mut args = vec![
        "daemon".to_owned(),
        "--state-dir".to_owned(),
        s(&paths.state_dir),
        "--run-dir".to_owned(),
        s(&paths.run_dir),
        "--cni-conf-dir".to_owned(),
        s(&paths.cni_conf_dir),
        "--cni-bin-dir".to_owned(),
        s(&paths.cni_bin_dir),
        "--node-name".to_owned(),
        node_name.to_owned(),
    ];
    if let Some(k) = kubeconfig {
        args.push("--kubeconfig".to_owned());
        args.push(s(k));
    }
    args
}

/// The pid of the detached daemon named by the pid file, if it is alive and a knet daemon.
pub fn detached_daemon_pid(paths: &Paths) -> Option<u32> {
    let text = std::fs::read_to_string(paths.pid_file()).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    is_knet_daemon(pid).then_some(pid)
}

/// Starts (or checks) the daemon as `mode` says.
pub fn start_daemon(
    mode: DaemonStart,
    opts: &BootstrapOptions,
) -> Result<DaemonState, BootstrapError> {
    let args = daemon_args(&opts.paths, &opts.node_name, opts.kubeconfig.as_deref());
    match mode.resolve() {
        DaemonStart::Systemd => {
            let dropin = snap_dropin(&opts.paths, &opts.node_name, opts.kubeconfig.as_deref());
            systemd::start(&opts.knet_binary, &args, &dropin)
        }
        DaemonStart::Detached => detached::start(&opts.knet_binary, &args, &opts.paths),
        DaemonStart::None | DaemonStart::Auto => Ok(DaemonState::NotStarted),
    }
}

/// Where to look when the daemon misbehaves.
pub(crate) fn log_hint(mode: DaemonStart, paths: &Paths) -> String {
    match mode.resolve() {
        DaemonStart::Systemd => match std::env::var("SNAP_NAME") {
            Ok(snap) => format!("see `journalctl -u snap.{snap}.daemon`"),
            Err(_) => "see `journalctl -u knet`".to_owned(),
        },
        DaemonStart::Detached => format!("see {}", paths.log_file().display()),
        _ => "see the daemon's log".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_repeat_every_path_flag() {
        let paths = Paths {
            state_dir: "/var/lib/knet-n1".into(),
            run_dir: "/run/knet-n1".into(),
            cni_conf_dir: "/tmp/cni conf".into(),
            cni_bin_dir: "/tmp/bin".into(),
        };
        let args = daemon_args(&paths, "n1", Some(Path::new("/etc/kube.conf")));
        assert_eq!(
            args.join(" "),
            "daemon --state-dir /var/lib/knet-n1 --run-dir /run/knet-n1 --cni-conf-dir /tmp/cni conf --cni-bin-dir /tmp/bin --node-name n1 --kubeconfig /etc/kube.conf"
        );
        let args = daemon_args(&paths, "n1", None);
        assert!(!args.contains(&"--kubeconfig".to_owned()));
    }

    #[test]
    fn states_read_well() {
        assert_eq!(
            DaemonState::Spawned {
                pid: 42,
                log: "/var/lib/knet/knet-daemon.log".into()
            }
            .to_string(),
            "daemon: started (pid 42, log /var/lib/knet/knet-daemon.log)"
        );
        assert_eq!(
            DaemonState::Systemd {
                unit: "knet.service".into(),
                changed: true
            }
            .to_string(),
            "daemon: installed and started systemd unit knet.service"
        );
    }
}
