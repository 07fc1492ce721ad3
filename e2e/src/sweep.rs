//! Teardown of one lab and the sweep of stale labs (whose owner process
//! died without tearing down). Everything a lab creates is findable from its
//! id: pid files in its run dir, processes tagged `KNETLAB_LAB=<id>` in their
//! environment (set on everything the lab starts, inherited by children),
//! and names starting with `knetlab-<id>-` (netns, /etc/netns dirs, cgroups,
//! bpffs pins). Nothing outside that is touched.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::config::{CGROUP_ROOT, PREFIX, lab_prefix};
use crate::netns;
use crate::process::{self, PidRecord};

/// Environment variable tagging every process a lab starts.
pub const LAB_ENV: &str = "KNETLAB_LAB";

/// File in a lab's run dir naming its owner process.
pub const OWNER_FILE: &str = "owner.json";

/// What a teardown removed.
#[derive(Debug, Default)]
pub struct Report {
    /// Processes stopped through pid files.
    pub stopped: usize,
    /// Stray tagged processes killed.
    pub strays: usize,
    /// Namespaces deleted.
    pub netns: Vec<String>,
}

/// The owner of lab `dir`, if it is still running.
pub fn live_owner(dir: &Path) -> Option<PidRecord> {
    PidRecord::read(&dir.join(OWNER_FILE))
        .ok()
        .filter(PidRecord::is_ours)
}

/// Removes everything lab `id` created. Safe to call repeatedly.
pub fn teardown(run_root: &Path, id: &str) -> Report {
    let prefix = lab_prefix(id);
    let dir = run_root.join(id);
    let mut report = Report {
        stopped: process::stop_all(&dir.join("pids"), Duration::from_secs(3)),
        ..Report::default()
    };
    report.strays = kill_tagged(id);
    // Pods first, then nodes, then the underlay.
    let mut names: Vec<String> = netns::list()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    names.sort_by_key(|n| {
        if n.contains("-pod-") {
            0
        } else if n.ends_with("-underlay") {
            2
        } else {
            1
        }
    });
    for n in names {
        match netns::del_sync(&n) {
            Ok(()) => report.netns.push(n),
            Err(error) => tracing::warn!(%error, netns = %n, "could not delete namespace"),
        }
    }
    remove_prefixed("/etc/netns", &prefix);
    let lab_tree = prefix.trim_end_matches('-');
    remove_cgroup_tree(&Path::new(CGROUP_ROOT).join(lab_tree));
    let _ = fs::remove_dir_all(Path::new("/sys/fs/bpf").join(lab_tree));
    if dir.exists()
        && let Err(error) = fs::remove_dir_all(&dir)
    {
        tracing::warn!(%error, dir = %dir.display(), "could not remove run dir");
    }
    tracing::info!(
        id,
        stopped = report.stopped,
        strays = report.strays,
        netns = report.netns.len(),
        "lab torn down"
    );
    report
}

/// Tears down every lab whose owner is gone (including orphaned names with
/// no run dir at all). Returns the ids swept.
pub fn sweep_stale(run_root: &Path) -> Vec<String> {
    let mut ids = BTreeSet::new();
    if let Ok(entries) = fs::read_dir(run_root) {
        for e in entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        {
            match e.file_name().to_str() {
                // A lab being created (see `Lab::start`): its creator's pid
                // ends the name; remove it only once that process is gone.
                Some(n) if n.starts_with(".new-") => {
                    let pid = n.rsplit('-').next().and_then(|p| p.parse::<i32>().ok());
                    if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
                        let _ = fs::remove_dir_all(e.path());
                    }
                }
                Some(id) => {
                    ids.insert(id.to_owned());
                }
                None => {}
            }
        }
    }
    let netns_ids = netns::list();
    let etc_ids: Vec<String> = list_dir("/etc/netns");
    let cg_ids: Vec<String> = list_dir(CGROUP_ROOT);
    for name in netns_ids.iter().chain(&etc_ids).chain(&cg_ids) {
        if let Some(id) = name
            .strip_prefix(PREFIX)
            .map(|r| r.split('-').next().unwrap_or(r))
        {
            ids.insert(id.to_owned());
        }
    }
    let mut swept = Vec::new();
    for id in ids {
        if live_owner(&run_root.join(&id)).is_some() {
            continue;
        }
        tracing::info!(id, "sweeping stale lab");
        teardown(run_root, &id);
        swept.push(id);
    }
    swept
}

/// Pids of processes carrying `KNETLAB_LAB=<id>` in their environment.
pub fn tagged_processes(id: &str) -> Vec<i32> {
    let tag = format!("{LAB_ENV}={id}");
    let me = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| u32::try_from(*pid).ok() != Some(me))
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|b| *b == 0).any(|kv| kv == tag.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

fn kill_tagged(id: &str) -> usize {
    let pids = tagged_processes(id);
    for pid in &pids {
        tracing::debug!(pid, "killing stray lab process");
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    if !pids.is_empty() {
        std::thread::sleep(Duration::from_millis(200));
    }
    pids.len()
}

fn list_dir(dir: &str) -> Vec<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn remove_prefixed(dir: &str, prefix: &str) {
    for name in list_dir(dir) {
        if name.starts_with(prefix) {
            let _ = fs::remove_dir_all(Path::new(dir).join(name));
        }
    }
}

/// Removes a cgroup directory tree bottom-up (cgroup dirs are removed with
/// rmdir; their control files go with them). Retries briefly while the last
/// processes leave.
fn remove_cgroup_tree(root: &Path) {
    if !root.exists() {
        return;
    }
    for _ in 0..20 {
        let mut dirs: Vec<PathBuf> = Vec::new();
        collect_dirs(root, &mut dirs);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in &dirs {
            let _ = fs::remove_dir(d);
        }
        if !root.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    tracing::warn!(cgroup = %root.display(), "could not remove cgroup tree");
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_owned());
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&e.path(), out);
            }
        }
    }
}

/// A snapshot of machine state the lab must leave as it found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    /// Named network namespaces.
    pub netns: Vec<String>,
    /// Links in the host namespace.
    pub host_links: Vec<String>,
    /// `nft list ruleset` in the host namespace.
    pub nft: String,
    /// Entries in /etc/netns.
    pub etc_netns: Vec<String>,
    /// cgroup v2 directories at the top level.
    pub cgroups: Vec<String>,
}

// === impl Inventory ===

impl Inventory {
    /// Takes a snapshot now.
    pub fn take() -> Result<Self> {
        let links = process::run_sync(&["ip", "-o", "link", "show"])?;
        let host_links = String::from_utf8_lossy(&links.stdout)
            .lines()
            .filter_map(|l| l.split(':').nth(1).map(|s| s.trim().to_owned()))
            .collect();
        let nft = process::run_sync(&["nft", "list", "ruleset"])?;
        let mut cgroups = list_dir(CGROUP_ROOT);
        cgroups.sort();
        let mut etc_netns = list_dir("/etc/netns");
        etc_netns.sort();
        Ok(Self {
            netns: netns::list(),
            host_links,
            nft: String::from_utf8_lossy(&nft.stdout).into_owned(),
            etc_netns,
            cgroups,
        })
    }
}
