//! Writing sysctls in a network namespace (`/proc/sys/net` shows the namespace of the thread
//! that opens the file).

use std::path::{Path, PathBuf};

use super::{KernelError, in_netns};

/// One write: the path below `/proc/sys`, the value, and whether a missing file is fine (IPv6
/// knobs when IPv6 is disabled).
#[derive(Debug, Clone)]
pub struct Sysctl {
    /// Path components below `/proc/sys`, e.g. `["net", "ipv4", "conf", "eth0", "rp_filter"]`.
    pub path: PathBuf,
    /// Value.
    pub value: &'static str,
    /// Ignore a missing file.
    pub optional: bool,
}

/// `/proc/sys/<parts...>`; interface names may contain dots, so parts are never split on them.
pub fn sysctl_path(parts: &[&str]) -> PathBuf {
    let mut p = PathBuf::from("/proc/sys");
    p.extend(parts);
    p
}

/// Writes `sysctls` in `netns` (the daemon's own namespace when `None`).
pub async fn set_sysctls(netns: Option<&Path>, sysctls: Vec<Sysctl>) -> Result<(), KernelError> {
    match netns {
        None => write_all(&sysctls),
        Some(path) => in_netns(path, move || write_all(&sysctls)).await?,
    }
}

fn write_all(sysctls: &[Sysctl]) -> Result<(), KernelError> {
    for s in sysctls {
        match std::fs::write(&s.path, s.value) {
            Ok(()) => {}
            Err(e) if s.optional && e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(KernelError::Sysctl {
                    path: s.path.display().to_string(),
                    source,
                });
            }
        }
    }
    Ok(())
}

/// The per-interface settings of a host-side pod veth: forward, loose reverse-path filtering
/// (replies may come back another way in asymmetric setups), no proxy ARP (the pod's gateway is
/// a static neighbour entry), no router advertisements and no DAD on the host side.
pub fn host_veth_sysctls(ifname: &str) -> Vec<Sysctl> {
    let v4 = |k: &'static str, v: &'static str| Sysctl {
        path: sysctl_path(&["net", "ipv4", "conf", ifname, k]),
        value: v,
        optional: false,
    };
    let v6 = |k: &'static str, v: &'static str| Sysctl {
        path: sysctl_path(&["net", "ipv6", "conf", ifname, k]),
        value: v,
        optional: true,
    };
    vec![
        v4("forwarding", "1"),
        v4("rp_filter", "2"),
        v4("proxy_arp", "0"),
        v6("accept_dad", "0"),
        v6("accept_ra", "0"),
        v6("forwarding", "1"),
    ]
}
