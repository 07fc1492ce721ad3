//! Test fixtures: named network namespaces, a fake Kubernetes API server, a fake daemon API,
//! a fake knet binary.

pub mod apiserver;
pub mod daemon_api;
pub mod netns;

use std::path::{Path, PathBuf};

use knet_core::paths::Paths;

/// Node paths inside a temp dir.
pub fn temp_paths(root: &Path) -> Paths {
    Paths {
        state_dir: root.join("state"),
        run_dir: root.join("run"),
        cni_conf_dir: root.join("cni/net.d"),
        cni_bin_dir: root.join("cni/bin"),
    }
}

/// A shell script named `knet` that logs its arguments and runs until SIGTERM; `exit_code`
/// makes it exit at once instead.
pub fn fake_knet(dir: &Path, exit_code: Option<i32>) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("knet");
    let body = match exit_code {
        Some(code) => format!("echo \"fake knet failing: $*\"\nexit {code}\n"),
        None => "echo \"fake knet $*\"\ntrap 'exit 0' TERM\nwhile :; do sleep 0.1; done\n".into(),
    };
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).expect("write fake knet");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().next())
            .is_some_and(|st| st != "Z" && st != "X")
    })
}

/// Every entry under `dir`, recursively, relative and sorted.
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            out.push(
                p.strip_prefix(base)
                    .expect("under base")
                    .display()
                    .to_string(),
            );
            if p.is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
