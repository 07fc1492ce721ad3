//! Named network namespaces (`ip netns`), the only place the lab puts links,
//! addresses, routes and sysctls: the host's own network is never touched.

use std::ffi::OsString;
use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sched::{CloneFlags, setns};

use crate::process::{self, ExecOutput};

/// Where `ip netns` keeps its namespace bind mounts.
pub const NETNS_DIR: &str = "/run/netns";

/// How long one `ip` call may take.
const IP_TIMEOUT: Duration = Duration::from_secs(20);

/// Path of a named namespace, as passed in `CNI_NETNS`.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(name)
}

/// Whether the named namespace exists.
pub fn exists(name: &str) -> bool {
    path(name).exists()
}

/// Names of all named network namespaces.
pub fn list() -> Vec<String> {
    let Ok(entries) = fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

/// The inode identifying a named namespace (compare with `/proc/PID/ns/net`).
pub fn inode(name: &str) -> Option<u64> {
    fs::metadata(path(name)).ok().map(|m| m.ino())
}

/// Creates a namespace with loopback up; fails if it already exists.
pub async fn add(name: &str) -> Result<()> {
    if exists(name) {
        bail!("network namespace {name} already exists");
    }
    process::run(&["ip", "netns", "add", name], IP_TIMEOUT)
        .await?
        .ok()?;
    ip(name, &["link", "set", "lo", "up"]).await?;
    Ok(())
}

/// Deletes a namespace (synchronous, for teardown). Missing is fine.
pub fn del_sync(name: &str) -> Result<()> {
    if !exists(name) {
        return Ok(());
    }
    let out = process::run_sync(&["ip", "netns", "del", name])?;
    if !out.status.success() && exists(name) {
        bail!(
            "ip netns del {name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs `ip -n NAME ARGS...`, failing on a non-zero exit.
pub async fn ip(name: &str, args: &[&str]) -> Result<ExecOutput> {
    let mut argv = vec!["ip", "-n", name];
    argv.extend_from_slice(args);
    process::run(&argv, IP_TIMEOUT)
        .await?
        .ok()
        .with_context(|| format!("ip -n {name} {}", args.join(" ")))
}

/// Sets a sysctl inside the namespace (net.* sysctls are per namespace).
pub async fn sysctl(name: &str, key: &str, value: &str) -> Result<()> {
    exec(
        name,
        &["sysctl", "-q", "-w", &format!("{key}={value}")],
        IP_TIMEOUT,
    )
    .await?
    .ok()
    .with_context(|| format!("sysctl {key}={value} in {name}"))?;
    Ok(())
}

/// The argv that runs `argv` inside the namespace.
pub fn exec_argv<S: Into<OsString> + Clone>(name: &str, argv: &[S]) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec!["ip".into(), "netns".into(), "exec".into(), name.into()];
    v.extend(argv.iter().cloned().map(Into::into));
    v
}

/// Runs `argv` inside the namespace to completion, killed after `timeout`.
pub async fn exec(name: &str, argv: &[&str], timeout: Duration) -> Result<ExecOutput> {
    if !exists(name) {
        bail!("network namespace {name} does not exist");
    }
    process::run(&exec_argv(name, argv), timeout).await
}

/// Binds a TCP listener inside the namespace: the socket is created by a
/// short-lived thread that first enters the namespace, and keeps belonging to
/// it after the thread is gone.
pub fn bind_tcp(name: &str, addr: SocketAddr) -> Result<std::net::TcpListener> {
    let file = fs::File::open(path(name)).with_context(|| format!("opening netns {name}"))?;
    let name = name.to_owned();
    std::thread::spawn(move || -> Result<std::net::TcpListener> {
        setns(&file, CloneFlags::CLONE_NEWNET).with_context(|| format!("entering netns {name}"))?;
        let l = std::net::TcpListener::bind(addr)
            .with_context(|| format!("binding {addr} in {name}"))?;
        l.set_nonblocking(true)?;
        Ok(l)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("netns bind thread panicked"))?
}
