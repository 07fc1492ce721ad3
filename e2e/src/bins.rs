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

/// The knet binary: `KNET_BIN`, else `<workspace>/target/debug/knet`.
pub fn knet_bin() -> Result<PathBuf> {
    let p = match std::env::var_os("KNET_BIN") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/knet"),
    };
    if !p.is_file() {
        bail!(
            "knet binary not found at {} (build it or set KNET_BIN)",
            p.display()
        );
    }
    Ok(p)
}
