//! Finding the binaries the lab runs: the control plane built by
//! `e2e/control-plane/build.sh` and the knet binary under test.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::config::{ETCD_VERSION, K8S_VERSION};

/// The control-plane binaries.
#[derive(Debug, Clone)]
pub struct Bins {
    dir: PathBuf,
}

// === impl Bins ===

impl Bins {
    /// `KNET_LAB_BIN_DIR`, else the build script's cache dir; every binary
    /// must be there (run `make lab-bins` to build them).
    pub fn locate() -> Result<Self> {
        let dir = match std::env::var_os("KNET_LAB_BIN_DIR") {
            Some(d) => PathBuf::from(d),
            None => {
                let cache = std::env::var("KNET_LAB_CACHE")
                    .unwrap_or_else(|_| "/var/cache/knet-lab".into());
                Path::new(&cache).join(format!("bin-{K8S_VERSION}-etcd-{ETCD_VERSION}"))
            }
        };
        let bins = Self { dir };
        let missing: Vec<&str> = [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "agnhost",
        ]
        .into_iter()
        .filter(|b| !bins.get(b).is_file())
        .collect();
        if !missing.is_empty() {
            bail!(
                "lab binaries missing in {}: {} (run `make lab-bins`, or set KNET_LAB_BIN_DIR)",
                bins.dir.display(),
                missing.join(", ")
            );
        }
        Ok(bins)
    }

    /// Path of binary `name` in the bin dir.
    pub fn get(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The bin dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The knet binary: `KNET_BIN`; else the `knet` built next to the running test binary (tests
/// live in `<target>/debug/deps/`, binaries in `<target>/debug/`, whatever `CARGO_TARGET_DIR`
/// is); else `<workspace>/target/debug/knet`.
pub fn knet_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("KNET_BIN") {
        return existing(PathBuf::from(p));
    }
    let beside_tests = std::env::current_exe().ok().and_then(|exe| {
        let dir = exe.parent()?;
        let dir = if dir.ends_with("deps") {
            dir.parent()?
        } else {
            dir
        };
        Some(dir.join("knet"))
    });
    match beside_tests {
        Some(p) if p.is_file() => Ok(p),
        _ => existing(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/knet")),
    }
}

fn existing(p: PathBuf) -> Result<PathBuf> {
    if !p.is_file() {
        bail!(
            "knet binary not found at {} (build it with `cargo build -p knet`, or set KNET_BIN)",
            p.display()
        );
    }
    Ok(p)
}
