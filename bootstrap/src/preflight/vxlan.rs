//! Is the VXLAN port free? It is taken when a process has bound the UDP port, or when another
//! vxlan device (fan networking, flannel, Cilium) listens on it. knet's own vxlan device on
//! that port (a re-run) is fine.
//!
//! Sockets are read from `/proc/thread-self/net/udp{,6}` (the calling thread's namespace). A
//! socket that no process holds open is a kernel socket: a vxlan device's, or another tunnel's.

use std::collections::HashMap;
use std::time::Duration;

use super::{Check, CheckId};
use crate::command;

/// Links whose names start with this are knet's.
pub const KNET_LINK_PREFIX: &str = "knet";

/// Whether a link name is one of knet's.
pub fn is_knet_link(name: &str) -> bool {
    name.starts_with(KNET_LINK_PREFIX)
}

/// A bound UDP socket from `/proc/net/udp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UdpSocket {
    /// Local port.
    pub port: u16,
    /// Socket inode (matches `socket:[INODE]` in `/proc/PID/fd`).
    pub inode: u64,
}

/// A vxlan device and its UDP destination port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VxlanDevice {
    /// Link name.
    pub name: String,
    /// `dstport`.
    pub port: u16,
}

/// Checks `port` in the calling thread's network namespace.
pub fn check_vxlan_port(port: u16) -> Check {
    let mut sockets = Vec::new();
    for file in ["/proc/thread-self/net/udp", "/proc/thread-self/net/udp6"] {
        if let Ok(text) = std::fs::read_to_string(file) {
            sockets.extend(parse_proc_net_udp(&text));
        }
    }
    let devices = match command::run(
        &["ip", "-d", "-j", "link", "show", "type", "vxlan"],
        Duration::from_secs(10),
    ) {
        Ok(out) if out.success => parse_vxlan_devices(&out.stdout),
        other => {
            return Check::error(
                CheckId::VxlanPort,
                format!(
                    "cannot list vxlan devices with `ip` ({}): install iproute2",
                    command::describe(&other)
                ),
            );
        }
    };
    let owners = if sockets.iter().any(|s| s.port == port) {
        socket_owners()
    } else {
        HashMap::new()
    };
    verdict(port, &sockets, &devices, &owners)
}

/// The decision, given what was found. `owners` maps socket inodes to `"comm (pid N)"`.
pub(crate) fn verdict(
    port: u16,
    sockets: &[UdpSocket],
    devices: &[VxlanDevice],
    owners: &HashMap<u64, String>,
) -> Check {
    let fix = "give knet another port: `network.vxlan-port: <port>` in the file passed to `knet bootstrap --file`, or `knet set network.vxlan-port=<port>` on a bootstrapped cluster";
    if let Some(dev) = devices
        .iter()
        .find(|d| d.port == port && !is_knet_link(&d.name))
    {
        return Check::error(
            CheckId::VxlanPort,
            format!(
                "VXLAN port {port} (network.vxlan-port) is used by vxlan device {}, which is not knet's: {fix}, or remove {}",
                dev.name, dev.name
            ),
        );
    }
    let on_port: Vec<&UdpSocket> = sockets.iter().filter(|s| s.port == port).collect();
    if let Some(owner) = on_port.iter().find_map(|s| owners.get(&s.inode)) {
        return Check::error(
            CheckId::VxlanPort,
            format!(
                "VXLAN port {port} (network.vxlan-port) is already bound by a UDP socket of {owner}: {fix}, or stop that process"
            ),
        );
    }
    let knet_dev = devices
        .iter()
        .find(|d| d.port == port && is_knet_link(&d.name));
    match (on_port.is_empty(), knet_dev) {
        (_, Some(dev)) => Check::ok(
            CheckId::VxlanPort,
            format!(
                "UDP port {port} is used by knet's own vxlan device {}",
                dev.name
            ),
        ),
        (true, None) => Check::ok(CheckId::VxlanPort, format!("UDP port {port} is free")),
        (false, None) => Check::error(
            CheckId::VxlanPort,
            format!(
                "VXLAN port {port} (network.vxlan-port) is held by a kernel socket that is not a vxlan device (a geneve, fou or other UDP tunnel): {fix}, or remove that tunnel"
            ),
        ),
    }
}

/// Parses `/proc/net/udp` or `/proc/net/udp6`.
pub(crate) fn parse_proc_net_udp(text: &str) -> Vec<UdpSocket> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            let (_, port_hex) = local.rsplit_once(':')?;
            Some(UdpSocket {
                port: u16::from_str_radix(port_hex, 16).ok()?,
                inode: fields.get(9)?.parse().ok()?,
            })
        })
        .collect()
}

/// Parses `ip -d -j link show type vxlan`.
pub(crate) fn parse_vxlan_devices(json: &str) -> Vec<VxlanDevice> {
    let Ok(serde_json::Value::Array(links)) = serde_json::from_str(json) else {
        return Vec::new();
    };
    links
        .iter()
        .filter_map(|l| {
            let info = l.get("linkinfo")?;
            if info.get("info_kind")?.as_str()? != "vxlan" {
                return None;
            }
            let port = info.get("info_data")?.get("port")?.as_u64()?;
            Some(VxlanDevice {
                name: l.get("ifname")?.as_str()?.to_owned(),
                port: u16::try_from(port).ok()?,
            })
        })
        .collect()
}

/// Socket inode → `"comm (pid N)"` for every process we can see.
fn socket_owners() -> HashMap<u64, String> {
    let mut owners = HashMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return owners;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let target = target.to_string_lossy();
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .and_then(|s| s.parse().ok())
            {
                owners.insert(inode, format!("{} (pid {pid})", comm.trim()));
            }
        }
    }
    owners
}

#[cfg(test)]
mod tests {
    use super::*;

    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
13757: 00000000:2118 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 43869 2 000000008d80dc4e 0
  200: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 555 2 0000000000000000 0
";
    const UDP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  10: 00000000000000000000000000000000:12B5 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 777 2 0000000000000000 0
";

    fn dev(name: &str, port: u16) -> VxlanDevice {
        VxlanDevice {
            name: name.into(),
            port,
        }
    }

    #[test]
    fn parses_udp_and_udp6() {
        assert_eq!(
            parse_proc_net_udp(UDP),
            vec![
                UdpSocket {
                    port: 8472,
                    inode: 43869
                },
                UdpSocket {
                    port: 53,
                    inode: 555
                }
            ]
        );
        assert_eq!(
            parse_proc_net_udp(UDP6),
            vec![UdpSocket {
                port: 4789,
                inode: 777
            }]
        );
        assert!(parse_proc_net_udp("header only\n").is_empty());
    }

    #[test]
    fn parses_ip_json() {
        let json = r#"[{"ifindex":2,"ifname":"vx0","linkinfo":{"info_kind":"vxlan","info_data":{"id":42,"port":8472}}},
                       {"ifname":"knet.vxlan","linkinfo":{"info_kind":"vxlan","info_data":{"port":4789}}},
                       {"ifname":"br0","linkinfo":{"info_kind":"bridge","info_data":{}}}]"#;
        assert_eq!(
            parse_vxlan_devices(json),
            vec![dev("vx0", 8472), dev("knet.vxlan", 4789)]
        );
        assert!(parse_vxlan_devices("").is_empty());
        assert!(parse_vxlan_devices("[]").is_empty());
    }

    #[test]
    fn verdicts() {
        let none = HashMap::new();
        let sock = |port, inode| UdpSocket { port, inode };
        // Free.
        let c = verdict(8472, &[sock(53, 1)], &[], &none);
        assert_eq!(c.severity, super::super::Severity::Ok);
        // A process holds it: named in the message, with the fix.
        let owners = HashMap::from([(9, "socat (pid 42)".to_owned())]);
        let c = verdict(8472, &[sock(8472, 9)], &[], &owners);
        assert_eq!(c.severity, super::super::Severity::Error);
        assert!(c.message.contains("socat (pid 42)"), "{}", c.message);
        assert!(c.message.contains("knet set network.vxlan-port="));
        assert!(c.message.contains("--file"));
        // A foreign vxlan device, with or without its kernel socket showing.
        let c = verdict(8472, &[sock(8472, 5)], &[dev("flannel.1", 8472)], &none);
        assert_eq!(c.severity, super::super::Severity::Error);
        assert!(c.message.contains("flannel.1"), "{}", c.message);
        let c = verdict(8472, &[], &[dev("fan-vxlan", 8472)], &none);
        assert_eq!(c.severity, super::super::Severity::Error);
        // knet's own device (re-run): fine.
        let c = verdict(8472, &[sock(8472, 5)], &[dev("knet.vxlan", 8472)], &none);
        assert_eq!(c.severity, super::super::Severity::Ok);
        // A foreign device on another port does not matter.
        let c = verdict(8472, &[], &[dev("flannel.1", 4789)], &none);
        assert_eq!(c.severity, super::super::Severity::Ok);
        // A kernel socket with no vxlan device: some other tunnel.
        let c = verdict(8472, &[sock(8472, 5)], &[], &none);
        assert_eq!(c.severity, super::super::Severity::Error);
        assert!(c.message.contains("kernel socket"), "{}", c.message);
    }
}
