//! Running knet on lab nodes: `knet bootstrap` and `knet daemon` inside the
//! node's namespace, each with the node's own state, run and CNI dirs and
//! kubeconfig (which reaches the API through the lab's forwarder).

use std::ffi::OsString;
use std::time::Duration;

use anyhow::{Context, Result};

use super::Lab;
use crate::bins::knet_bin;
use crate::node::LabNode;
use crate::process::{self, ExecOutput, PidRecord};
use crate::sweep::LAB_ENV;

/// How long `knet bootstrap` may take.
const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(120);

// === impl Lab ===

impl Lab {
    /// Runs `knet bootstrap` on `node` as an operator would, with `config`
    /// (YAML) as `--file` if given. Bootstrap starts the daemon itself
    /// (detached); the lab adopts it (pid file `pids/knet-<node>.pid`) so
    /// [`Lab::stop_knet_daemon`] and teardown stop it. Returns bootstrap's
    /// output; check `.ok()` for success.
    pub async fn bootstrap_knet(&self, node: &str, config: Option<&str>) -> Result<ExecOutput> {
        self.bootstrap_knet_with(node, config, &[]).await
    }

    /// [`Lab::bootstrap_knet`] with extra flags, e.g. `--no-start` (then
    /// start the daemon with [`Lab::start_knet_daemon`]). Unless `extra` has its own
    /// `--socket-lb-cgroup` (`off`, say), socket load balancing attaches to the node's
    /// lab-made cgroup.
    pub async fn bootstrap_knet_with(
        &self,
        node: &str,
        config: Option<&str>,
        extra: &[&str],
    ) -> Result<ExecOutput> {
        let n = self.node(node)?;
        let mut args = node_flags(&n);
        // Socket load balancing attaches to the node's own lab-made cgroup (its pods), never
        // to the host's cgroup root that `auto` would pick.
        if !extra.iter().any(|a| a.starts_with("--socket-lb-cgroup")) {
            args.push("--socket-lb-cgroup".into());
            args.push(n.cgroup.clone().into());
        }
        args.extend(extra.iter().map(OsString::from));
        if let Some(cfg) = config {
            let file = n.dir.join("knet-bootstrap.yaml");
            std::fs::write(&file, cfg)?;
            args.push("--file".into());
            args.push(file.into());
        }
        let mut argv: Vec<OsString> = vec![self.knet_bin()?.into(), "bootstrap".into()];
        argv.extend(args);
        let full = knet_argv(&n.netns, &argv);
        let mut cmd = tokio::process::Command::new(&full[0]);
        cmd.args(&full[1..])
            .env(LAB_ENV, self.id())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let out = process::run_command(cmd, BOOTSTRAP_TIMEOUT).await?;
        tracing::info!(node, code = ?out.code, "knet bootstrap ran");
        self.adopt_knet_daemon(&n)?;
        Ok(out)
    }

    /// Records the daemon `knet bootstrap` started (its pid file is
    /// `<run-dir>/knet-daemon.pid`) as the lab's, if it runs.
    fn adopt_knet_daemon(&self, n: &LabNode) -> Result<()> {
        let Ok(text) = std::fs::read_to_string(n.run_dir.join("knet-daemon.pid")) else {
            return Ok(());
        };
        let Ok(pid) = text.trim().parse::<i32>() else {
            return Ok(());
        };
        let Ok(rec) = PidRecord::of(pid, "knet") else {
            return Ok(());
        };
        if rec.is_ours() {
            rec.write(&self.knet_pid_file(&n.name))?;
            tracing::info!(node = %n.name, pid, "adopted the daemon knet bootstrap started");
        }
        Ok(())
    }

    fn knet_pid_file(&self, node: &str) -> std::path::PathBuf {
        self.dir.join("pids").join(format!("knet-{node}.pid"))
    }

    /// Starts `knet daemon` on `node` (log: `<node dir>/knet.log`).
    pub async fn start_knet_daemon(&self, node: &str) -> Result<()> {
        let n = self.node(node)?;
        self.stop_knet_daemon(node).await?;
        let mut argv: Vec<OsString> = vec![self.knet_bin()?.into(), "daemon".into()];
        argv.extend(node_flags(&n));
        let full = knet_argv(&n.netns, &argv);
        let (child, rec) = process::spawn_daemon(
            full,
            n.dir.join("knet.log"),
            self.knet_pid_file(node),
            "knet".into(),
            vec![(LAB_ENV.into(), self.id().into())],
        )
        .await?;
        tracing::info!(node, pid = rec.pid, "knet daemon started");
        self.knet
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .insert(node.to_owned(), child);
        Ok(())
    }

    /// Stops `knet daemon` on `node` (SIGTERM, SIGKILL after 10 s); a no-op
    /// when it is not running.
    pub async fn stop_knet_daemon(&self, node: &str) -> Result<()> {
        let pid_file = self.knet_pid_file(node);
        if let Ok(rec) = PidRecord::read(&pid_file) {
            tokio::task::spawn_blocking(move || rec.stop(Duration::from_secs(10)))
                .await
                .context("stopping knet")?;
            let _ = std::fs::remove_file(&pid_file);
        }
        let child = self
            .knet
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .remove(node);
        if let Some(mut c) = child {
            let _ = tokio::time::timeout(Duration::from_secs(5), c.wait()).await;
        }
        Ok(())
    }

    /// Uses `path` as the knet binary from now on (default: `KNET_BIN`, else
    /// `target/debug/knet`).
    pub fn set_knet_bin(&self, path: impl Into<std::path::PathBuf>) {
        if let Ok(mut b) = self.knet_bin.lock() {
            *b = Some(path.into());
        }
    }

    /// The knet binary this lab runs.
    pub fn knet_bin(&self) -> Result<std::path::PathBuf> {
        match self.knet_bin.lock().ok().and_then(|b| b.clone()) {
            Some(p) => Ok(p),
            None => knet_bin(),
        }
    }

    /// Whether knet's daemon on `node` is running.
    pub fn knet_running(&self, node: &str) -> bool {
        PidRecord::read(&self.dir.join("pids").join(format!("knet-{node}.pid")))
            .is_ok_and(|r| r.is_ours())
    }
}

fn node_flags(n: &LabNode) -> Vec<OsString> {
    vec![
        "--node-name".into(),
        n.name.clone().into(),
        "--kubeconfig".into(),
        n.kubeconfig.clone().into(),
        "--state-dir".into(),
        n.state_dir.clone().into(),
        "--run-dir".into(),
        n.run_dir.clone().into(),
        "--cni-conf-dir".into(),
        n.cni_conf_dir.clone().into(),
        "--cni-bin-dir".into(),
        n.cni_bin_dir.clone().into(),
    ]
}

/// `argv` run in the node's network namespace with `nsenter --net`, not `ip netns exec`: knet
/// must see the host's mounts (the cgroup2 hierarchy for BPF programs, /sys/fs/bpf), which
/// `ip netns exec` hides behind a fresh /sys.
fn knet_argv(netns: &str, argv: &[OsString]) -> Vec<OsString> {
    let mut net = OsString::from("--net=");
    net.push(crate::netns::path(netns));
    let mut v: Vec<OsString> = vec!["nsenter".into(), net];
    v.extend(argv.iter().cloned());
    v
}
