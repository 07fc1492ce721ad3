//! Kernel checks: root, link types and nf_tables tested for real in a throwaway network
//! namespace, SCTP and IPVS (optional), BPF and cgroup v2.

use std::path::Path;
use std::time::Duration;

use nix::sys::socket::{AddressFamily, SockFlag, SockProtocol, SockType, socket};

use super::{Check, CheckId, mountinfo};
use crate::command::{self, RunError};
use crate::netns;

/// How long one `ip`/`nft` call in the probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether we are root.
pub fn check_root() -> Check {
    if nix::unistd::geteuid().is_root() {
        Check::ok(CheckId::Root, "running as root")
    } else {
        Check::error(
            CheckId::Root,
            "knet bootstrap changes the node's network and must run as root: use sudo",
        )
    }
}

/// A link type to try: check, kind, extra `ip link add` args, whether required, kernel option.
struct LinkProbe {
    id: CheckId,
    args: &'static [&'static str],
    required: bool,
    config: &'static str,
    without: &'static str,
}

const LINK_PROBES: &[LinkProbe] = &[
    LinkProbe {
        id: CheckId::Veth,
        args: &["kpf-veth0", "type", "veth", "peer", "name", "kpf-veth1"],
        required: true,
        config: "CONFIG_VETH",
        without: "",
    },
    LinkProbe {
        id: CheckId::Bridge,
        args: &["kpf-br0", "type", "bridge"],
        required: true,
        config: "CONFIG_BRIDGE",
        without: "",
    },
    LinkProbe {
        id: CheckId::Vxlan,
        args: &["kpf-vx0", "type", "vxlan", "id", "42", "dstport", "4789"],
        required: true,
        config: "CONFIG_VXLAN",
        without: "",
    },
    LinkProbe {
        id: CheckId::Dummy,
        args: &["kpf-dummy0", "type", "dummy"],
        required: false,
        config: "CONFIG_DUMMY",
        without: "knet works without them",
    },
    LinkProbe {
        id: CheckId::Wireguard,
        args: &["kpf-wg0", "type", "wireguard"],
        required: false,
        config: "CONFIG_WIREGUARD",
        without: "pod traffic between nodes cannot be encrypted",
    },
];

/// Creates a network namespace for the probe and, inside it, each link type, an nftables table
/// and an SCTP socket; checks IPVS there too. All of it vanishes with the namespace.
pub fn probe_in_throwaway_netns() -> Vec<Check> {
    match netns::in_new_netns(probe_inside) {
        Ok(mut checks) => {
            checks.insert(
                0,
                Check::ok(CheckId::Netns, "network namespaces can be created"),
            );
            checks
        }
        Err(e) => {
            let mut checks = vec![Check::error(
                CheckId::Netns,
                format!(
                    "cannot create a network namespace ({e}): the kernel needs CONFIG_NET_NS, and knet needs CAP_SYS_ADMIN (run as root, not in a restricted container)"
                ),
            )];
            for p in LINK_PROBES.iter().filter(|p| p.required) {
                checks.push(Check::error(p.id, "not tested: no network namespace"));
            }
            checks.push(Check::error(
                CheckId::NfTables,
                "not tested: no network namespace",
            ));
            checks
        }
    }
}

fn probe_inside() -> Vec<Check> {
    let mut checks: Vec<Check> = LINK_PROBES.iter().map(probe_link).collect();
    checks.push(probe_nft());
    checks.push(probe_ipvs());
    checks.push(probe_sctp());
    checks
}

fn probe_link(p: &LinkProbe) -> Check {
    let mut argv = vec!["ip", "link", "add"];
    argv.extend_from_slice(p.args);
    let kind = p.id.to_string();
    let result = command::run(&argv, PROBE_TIMEOUT);
    match &result {
        Ok(out) if out.success => Check::ok(p.id, format!("{kind} links work")),
        Err(RunError::NotFound) => Check::error(
            p.id,
            "`ip` is not installed, so links cannot be tested: install iproute2",
        ),
        _ if p.required => Check::error(
            p.id,
            format!(
                "cannot create a {kind} link ({}): the kernel needs {} (modprobe {kind})",
                command::describe(&result),
                p.config
            ),
        ),
        _ => Check::warning(
            p.id,
            format!(
                "optional: {kind} links are unavailable ({}; {}): {}",
                command::describe(&result),
                p.config,
                p.without
            ),
        ),
    }
}

fn probe_nft() -> Check {
    let add = command::run(
        &["nft", "add", "table", "inet", "knet_preflight"],
        PROBE_TIMEOUT,
    );
    match &add {
        Err(RunError::NotFound) => {
            return Check::error(
                CheckId::NfTables,
                "`nft` is not installed: install nftables (apt install nftables)",
            );
        }
        Ok(out) if out.success => {}
        _ => {
            return Check::error(
                CheckId::NfTables,
                format!(
                    "nf_tables does not work ({}): the kernel needs CONFIG_NF_TABLES and CONFIG_NF_TABLES_INET (modprobe nf_tables)",
                    command::describe(&add)
                ),
            );
        }
    }
    let list = command::run(&["nft", "list", "tables"], PROBE_TIMEOUT);
    match &list {
        Ok(out) if out.success && out.stdout.contains("knet_preflight") => {
            Check::ok(CheckId::NfTables, "nf_tables works (nft)")
        }
        _ => Check::error(
            CheckId::NfTables,
            format!(
                "nft created a table but cannot list it ({}): install a working nftables",
                command::describe(&list)
            ),
        ),
    }
}

fn probe_ipvs() -> Check {
    if Path::new("/proc/thread-self/net/ip_vs").exists() {
        return Check::ok(CheckId::Ipvs, "IPVS is loaded");
    }
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let modules = Path::new("/lib/modules").join(release);
    let available = ["modules.builtin", "modules.dep"]
        .iter()
        .any(|f| std::fs::read_to_string(modules.join(f)).is_ok_and(|t| t.contains("/ip_vs.ko")));
    if available {
        Check::ok(CheckId::Ipvs, "IPVS is available as a module")
    } else {
        Check::warning(
            CheckId::Ipvs,
            "optional: IPVS is unavailable (CONFIG_IP_VS): service load-balancing uses nftables only",
        )
    }
}

fn probe_sctp() -> Check {
    match socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        Some(SockProtocol::Sctp),
    ) {
        Ok(_fd) => Check::ok(CheckId::Sctp, "SCTP sockets work"),
        Err(e) => Check::warning(
            CheckId::Sctp,
            format!(
                "optional: SCTP sockets are unavailable ({e}; CONFIG_IP_SCTP): Services and network policies with protocol SCTP will not work"
            ),
        ),
    }
}

/// BTF (for CO-RE eBPF programs) and the bpf() syscall.
///
/// The syscall is detected without calling it: the `kernel.unprivileged_bpf_disabled` sysctl
/// exists exactly when the kernel is built with `CONFIG_BPF_SYSCALL`.
pub fn check_bpf() -> Check {
    check_bpf_at(Path::new("/"))
}

pub(crate) fn check_bpf_at(root: &Path) -> Check {
    let btf = root.join("sys/kernel/btf/vmlinux");
    let syscall = root.join("proc/sys/kernel/unprivileged_bpf_disabled");
    match (btf.exists(), syscall.exists()) {
        (true, true) => Check::ok(CheckId::Bpf, "BTF and the bpf() syscall are available"),
        (_, false) => Check::error(
            CheckId::Bpf,
            "the kernel has no bpf() syscall: use a kernel built with CONFIG_BPF_SYSCALL",
        ),
        (false, true) => Check::error(
            CheckId::Bpf,
            format!(
                "{} is missing: use a kernel built with BTF (CONFIG_DEBUG_INFO_BTF=y)",
                btf.display()
            ),
        ),
    }
}

/// A mounted cgroup2 hierarchy.
pub fn check_cgroup2() -> Check {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    match mountinfo::cgroup2_mount(&text) {
        Some(path) => Check::ok(
            CheckId::Cgroup2,
            format!("cgroup v2 is mounted at {}", path.display()),
        ),
        None => Check::error(
            CheckId::Cgroup2,
            "no cgroup2 file system is mounted: mount one (mount -t cgroup2 none /sys/fs/cgroup/unified) or boot with systemd.unified_cgroup_hierarchy=1; under `ip netns exec` (which mounts a fresh /sys without cgroups) use `nsenter --net=/run/netns/NAME` instead",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preflight::Severity;

    #[test]
    fn bpf_needs_both_btf_and_the_syscall() {
        let root = tempfile::tempdir().expect("tempdir");
        let mk = |p: &str| {
            let p = root.path().join(p);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, "").expect("write");
        };
        let c = check_bpf_at(root.path());
        assert_eq!(c.severity, Severity::Error);
        assert!(c.message.contains("CONFIG_BPF_SYSCALL"));
        mk("proc/sys/kernel/unprivileged_bpf_disabled");
        let c = check_bpf_at(root.path());
        assert!(c.message.contains("CONFIG_DEBUG_INFO_BTF"), "{}", c.message);
        mk("sys/kernel/btf/vmlinux");
        assert_eq!(check_bpf_at(root.path()).severity, Severity::Ok);
    }
}
