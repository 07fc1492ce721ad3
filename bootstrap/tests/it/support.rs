//! Test fixtures: named network namespaces, node paths in temp dirs, kubeconfigs, and the lab
//! (a real kube-apiserver and network-namespace nodes, `support/lab.rs`).

pub mod lab;
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

/// The real knet binary, built next to these tests (`make test` builds it before the tests
/// run; see `knet_e2e::bins::knet_bin`). Missing, the test fails saying how to build it.
pub fn knet_binary() -> PathBuf {
    match knet_e2e::bins::knet_bin() {
        Ok(p) => p,
        Err(e) => panic!("{e:#}: `make test` builds it before these tests"),
    }
}

/// Writes a kubeconfig for `server` (plain HTTP, a dummy token) into `dir`.
pub fn write_kubeconfig(dir: &Path, server: &str) -> PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: {server}
users:
- name: u
  user:
    token: not-a-secret
contexts:
- name: c
  context:
    cluster: c
    user: u
current-context: c
"
    );
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().next())
            .is_some_and(|st| st != "Z" && st != "X")
    })
}

/// Waits (at most 15 s) until `pid` is gone.
pub async fn wait_gone(pid: u32) {
    for _ in 0..300 {
        if !alive(pid) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("process {pid} is still alive after 15 s");
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
