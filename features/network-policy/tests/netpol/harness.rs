//! The real-kernel harness: two "node" namespaces joined by a veth (the underlay), nine pod
//! namespaces wired like knet's routed design (pod /32, default route via 169.254.1.1 answered by
//! a permanent neighbour entry, a /32 host route per pod on the node), a TCP and UDP server on
//! ports 80 and 81 in every pod, and a prober that connects from inside each pod namespace.
//! Everything lives in namespaces named `knp<pid>-<tag>-*`, deleted on drop.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sched::CloneFlags;

use super::model::{Model, NODES};

/// The probe timeout (upstream uses 1 s too).
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);

pub struct Harness {
    pub prefix: String,
    names: Vec<String>,
}

/// Whether this process may create namespaces and run nft.
/// These tests need root and `nft`; without them they fail saying so (a test that cannot run
/// must not pass). Always returns true.
pub fn privileged() -> bool {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests need root (network namespaces, nftables): run them as root"
    );
    assert!(
        Command::new("nft")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "these tests need the nft binary: run e2e/install-deps.sh"
    );
    true
}

fn run(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {args:?}"))?;
    if !out.status.success() {
        bail!(
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Harness {
    pub fn start(tag: &str, model: &Model) -> Result<Harness> {
        let prefix = format!("knp{}-{tag}", std::process::id());
        let mut h = Harness {
            prefix,
            names: Vec::new(),
        };
        h.build(model)?;
        for p in &model.pods {
            let key = p.key();
            serve(&h.pod_ns(p.index), &key)?;
        }
        Ok(h)
    }

    pub fn node_ns(&self, node: &str) -> String {
        format!("{}-{node}", self.prefix)
    }

    pub fn pod_ns(&self, index: usize) -> String {
        format!("{}-pod{index}", self.prefix)
    }

    pub fn ns_path(name: &str) -> PathBuf {
        PathBuf::from("/run/netns").join(name)
    }

    fn add_ns(&mut self, name: &str) -> Result<()> {
        run(&["ip", "netns", "add", name])?;
        self.names.push(name.to_owned());
        run(&["ip", "-n", name, "link", "set", "lo", "up"])
    }

    fn build(&mut self, model: &Model) -> Result<()> {
        let (n1, n2) = (self.node_ns(NODES[0]), self.node_ns(NODES[1]));
        for n in [&n1, &n2] {
            self.add_ns(n)?;
            run(&[
                "ip",
                "netns",
                "exec",
                n,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
                "net.ipv6.conf.all.forwarding=1",
            ])?;
        }
        // The underlay: one veth between the nodes.
        // Fixed MACs and permanent neighbours, so the first probes never wait for ARP or NDP.
        run(&[
            "ip",
            "-n",
            &n1,
            "link",
            "add",
            "ul",
            "address",
            "02:00:00:00:01:01",
            "type",
            "veth",
            "peer",
            "name",
            "ul",
            "address",
            "02:00:00:00:01:02",
            "netns",
            &n2,
        ])?;
        for (n, addr, addr6, peer, peer6, peer_mac) in [
            (
                &n1,
                "192.168.99.1/30",
                "fd98::1/64",
                "192.168.99.2",
                "fd98::2",
                "02:00:00:00:01:02",
            ),
            (
                &n2,
                "192.168.99.2/30",
                "fd98::2/64",
                "192.168.99.1",
                "fd98::1",
                "02:00:00:00:01:01",
            ),
        ] {
            run(&["ip", "-n", n, "addr", "add", addr, "dev", "ul"])?;
            run(&["ip", "-n", n, "addr", "add", addr6, "dev", "ul", "nodad"])?;
            run(&["ip", "-n", n, "link", "set", "ul", "up"])?;
            for ip in [peer, peer6] {
                run(&[
                    "ip",
                    "-n",
                    n,
                    "neigh",
                    "add",
                    ip,
                    "lladdr",
                    peer_mac,
                    "dev",
                    "ul",
                    "nud",
                    "permanent",
                ])?;
            }
        }
        for p in &model.pods {
            let node = self.node_ns(p.node);
            let other = if p.node == NODES[0] {
                (&n2, "192.168.99.1", "fd98::1")
            } else {
                (&n1, "192.168.99.2", "fd98::2")
            };
            let pod = self.pod_ns(p.index);
            self.add_ns(&pod)?;
            let host_if = format!("np{}", p.index);
            let pod_mac = format!("02:00:00:00:00:{:02x}", p.index);
            let ip = p.ip.to_string();
            let ip32 = format!("{ip}/32");
            run(&[
                "ip",
                "-n",
                &node,
                "link",
                "add",
                &host_if,
                "address",
                "ee:ee:ee:ee:ee:ee",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "address",
                &pod_mac,
                "netns",
                &pod,
            ])?;
            run(&["ip", "-n", &node, "link", "set", &host_if, "up"])?;
            run(&["ip", "-n", &node, "route", "add", &ip32, "dev", &host_if])?;
            run(&[
                "ip",
                "-n",
                &node,
                "neigh",
                "add",
                &ip,
                "lladdr",
                &pod_mac,
                "dev",
                &host_if,
                "nud",
                "permanent",
            ])?;
            run(&["ip", "-n", other.0, "route", "add", &ip32, "via", other.1])?;
            run(&["ip", "-n", &pod, "addr", "add", &ip32, "dev", "eth0"])?;
            run(&["ip", "-n", &pod, "link", "set", "eth0", "up"])?;
            run(&[
                "ip",
                "-n",
                &pod,
                "route",
                "add",
                "169.254.1.1",
                "dev",
                "eth0",
                "scope",
                "link",
            ])?;
            run(&[
                "ip",
                "-n",
                &pod,
                "route",
                "add",
                "default",
                "via",
                "169.254.1.1",
                "dev",
                "eth0",
            ])?;
            run(&[
                "ip",
                "-n",
                &pod,
                "neigh",
                "add",
                "169.254.1.1",
                "lladdr",
                "ee:ee:ee:ee:ee:ee",
                "dev",
                "eth0",
                "nud",
                "permanent",
            ])?;
            if let Some(ip6) = p.ip6 {
                let hop = (other.0.as_str(), other.2);
                wire_v6(&node, hop, &pod, &host_if, &pod_mac, &ip6.to_string())?;
            }
        }
        Ok(())
    }

    /// Applies `script` in node `node`'s namespace through the crate's own apply.
    pub async fn apply(&self, node: &str, script: &str) -> Result<()> {
        knet_network_policy::nft::apply(Some(&Self::ns_path(&self.node_ns(node))), script)
            .await
            .with_context(|| format!("applying on {node}"))
    }

    /// `nft list table` on a node (for failure reports).
    pub fn list_table(&self, node: &str) -> String {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.node_ns(node),
                "nft",
                "list",
                "table",
                "inet",
                knet_network_policy::TABLE,
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        for n in self.names.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

/// The IPv6 twin of the pod wiring: /128 on the pod, default via fe80::1 (permanent
/// neighbour), /128 host route and neighbour on the node, a route via the peer on the other node.
fn wire_v6(
    node: &str,
    (other, via): (&str, &str),
    pod: &str,
    host_if: &str,
    mac: &str,
    ip6: &str,
) -> Result<()> {
    let ip128 = format!("{ip6}/128");
    let gw = "fe80::1";
    let hm = "ee:ee:ee:ee:ee:ee";
    run(&[
        "ip", "-n", node, "-6", "route", "add", &ip128, "dev", host_if,
    ])?;
    run(&[
        "ip",
        "-n",
        node,
        "-6",
        "neigh",
        "add",
        ip6,
        "lladdr",
        mac,
        "dev",
        host_if,
        "nud",
        "permanent",
    ])?;
    run(&["ip", "-n", other, "-6", "route", "add", &ip128, "via", via])?;
    run(&[
        "ip", "-n", pod, "-6", "addr", "add", &ip128, "dev", "eth0", "nodad",
    ])?;
    run(&["ip", "-n", pod, "-6", "route", "add", gw, "dev", "eth0"])?;
    run(&[
        "ip", "-n", pod, "-6", "route", "add", "default", "via", gw, "dev", "eth0",
    ])?;
    run(&[
        "ip",
        "-n",
        pod,
        "-6",
        "neigh",
        "add",
        gw,
        "lladdr",
        hm,
        "dev",
        "eth0",
        "nud",
        "permanent",
    ])?;
    Ok(())
}

/// Runs `f` on a new thread inside namespace `ns`; threads it spawns stay there too.
pub fn in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<std::thread::JoinHandle<T>> {
    let file =
        std::fs::File::open(Harness::ns_path(ns)).with_context(|| format!("opening netns {ns}"))?;
    Ok(std::thread::spawn(move || {
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    }))
}

/// TCP and UDP servers on ports 80 and 81 answering with the pod's name; they live as long as
/// the test process (their sockets keep the namespace alive after its name is deleted).
fn serve(ns: &str, name: &str) -> Result<()> {
    let name = name.to_owned();
    let sockets = in_ns(
        ns,
        move || -> std::io::Result<Vec<(Option<TcpListener>, Option<UdpSocket>)>> {
            let mut v = Vec::new();
            for port in [80u16, 81] {
                // [::] with v6only off: one socket serves IPv4 and IPv6.
                v.push((Some(TcpListener::bind(("::", port))?), None));
                v.push((None, Some(UdpSocket::bind(("::", port))?)));
            }
            Ok(v)
        },
    )?
    .join()
    .map_err(|_| anyhow::anyhow!("server thread panicked"))??;
    for (tcp, udp) in sockets {
        let reply = name.clone().into_bytes();
        if let Some(l) = tcp {
            std::thread::spawn(move || {
                for mut s in l.incoming().flatten() {
                    let _ = s.write_all(&reply);
                }
            });
        } else if let Some(u) = udp {
            std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                while let Ok((_, from)) = u.recv_from(&mut buf) {
                    let _ = u.send_to(&reply, from);
                }
            });
        }
    }
    Ok(())
}

fn next_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % 40_000;
    u16::try_from(20_000 + n).unwrap_or(0)
}

/// One connection attempt from the current namespace; true when the expected server answered.
pub fn probe(to: SocketAddr, proto: &str, expect: &str) -> bool {
    let mut buf = [0u8; 64];
    match proto {
        "TCP" => {
            let Ok(mut s) = TcpStream::connect_timeout(&to, PROBE_TIMEOUT) else {
                return false;
            };
            let _ = s.set_read_timeout(Some(PROBE_TIMEOUT));
            let n = s.read(&mut buf).unwrap_or(0);
            &buf[..n] == expect.as_bytes()
        }
        _ => {
            // A fresh source port per probe: a reused one could hit the conntrack entry of an
            // earlier admitted probe, which stays established by design.
            let any = if to.is_ipv4() { "0.0.0.0" } else { "::" };
            let Ok(u) = UdpSocket::bind((any, next_port())).or_else(|_| UdpSocket::bind((any, 0)))
            else {
                return false;
            };
            let _ = u.set_read_timeout(Some(PROBE_TIMEOUT / 2));
            for _ in 0..2 {
                if u.send_to(b"hello", to).is_err() {
                    return false;
                }
                if let Ok((n, _)) = u.recv_from(&mut buf) {
                    return &buf[..n] == expect.as_bytes();
                }
            }
            false
        }
    }
}
