//! A tiny dataplane lab for the services tests: a "node" namespace, pods behind routed veths
//! (the network feature's layout), an "outside" host on a second veth, and servers/clients run
//! on threads that entered a namespace. Everything is named `knettest-svc-<pid>-...` and deleted
//! on drop.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nix::sched::{CloneFlags, setns};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub const NODE_IP: &str = "192.168.77.1";
pub const OUTSIDE_IP: &str = "192.168.77.2";

/// Whether this process may create namespaces.
pub fn privileged() -> bool {
    nix::unistd::geteuid().is_root()
        && Command::new("nft")
            .arg("-v")
            .output()
            .is_ok_and(|o| o.status.success())
}

/// A named network namespace, deleted on drop.
#[derive(Debug)]
pub struct Ns {
    pub name: String,
}

impl Ns {
    pub fn create(tag: &str) -> Ns {
        let name = format!(
            "knettest-svc-{}-{}-{tag}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        run(&["ip", "netns", "add", &name]);
        let ns = Ns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> PathBuf {
        Path::new("/var/run/netns").join(&self.name)
    }

    pub fn ip(&self, args: &[&str]) -> Output {
        let mut all = vec!["ip", "-n", &self.name];
        all.extend_from_slice(args);
        run(&all)
    }

    pub fn exec(&self, args: &[&str]) -> Output {
        let mut all = vec!["ip", "netns", "exec", &self.name];
        all.extend_from_slice(args);
        run(&all)
    }

    /// Runs `f` on a thread inside this namespace.
    pub fn run_in<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let file = std::fs::File::open(self.path()).expect("open netns");
        std::thread::spawn(move || {
            setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("thread")
    }

    /// TCP connect to `addr`, read what the server says (bounded).
    pub fn tcp(&self, addr: &str) -> std::io::Result<String> {
        let addr: SocketAddr = addr.parse().expect("addr");
        self.run_in(move || {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })
    }

    /// One UDP datagram to `addr` from a fresh connected socket; the answer (bounded).
    pub fn udp(&self, addr: &str) -> std::io::Result<String> {
        let addr: SocketAddr = addr.parse().expect("addr");
        self.run_in(move || {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            // Connected, so an ICMP unreachable comes back as ECONNREFUSED.
            s.connect(addr)?;
            s.send(b"hi")?;
            let mut buf = [0u8; 256];
            let n = s.recv(&mut buf)?;
            Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
        })
    }

    /// A TCP and a UDP server on `port` answering `<name> <client ip>`, until the namespace
    /// goes away (the threads end with the test process).
    pub fn serve(&self, name: &str, port: u16) {
        let (tcp, udp) = self.run_in(move || {
            (
                TcpListener::bind(("0.0.0.0", port)).expect("bind tcp"),
                UdpSocket::bind(("0.0.0.0", port)).expect("bind udp"),
            )
        });
        let n = name.to_owned();
        std::thread::spawn(move || {
            for conn in tcp.incoming().flatten() {
                let mut conn = conn;
                let peer = conn
                    .peer_addr()
                    .map(|a| a.ip().to_string())
                    .unwrap_or_default();
                let _ = conn.write_all(format!("{n} {peer}").as_bytes());
            }
        });
        let n = name.to_owned();
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            while let Ok((_, from)) = udp.recv_from(&mut buf) {
                let _ = udp.send_to(format!("{n} {}", from.ip()).as_bytes(), from);
            }
        });
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

pub fn run(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A node with pods and an outside host.
pub struct Topology {
    pub node: Ns,
    pub outside: Ns,
    pub pods: Vec<(Ns, String)>,
}

impl Topology {
    /// `pods` pods at 10.1.0.11, .12, ...; the outside host at 192.168.77.2 routes everything
    /// via the node.
    pub fn new(pods: usize) -> Topology {
        let node = Ns::create("node");
        node.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        let outside = Ns::create("out");
        node.ip(&[
            "link",
            "add",
            "ext0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &outside.name,
        ]);
        node.ip(&["addr", "add", &format!("{NODE_IP}/24"), "dev", "ext0"]);
        node.ip(&["link", "set", "ext0", "up"]);
        outside.ip(&["addr", "add", &format!("{OUTSIDE_IP}/24"), "dev", "eth0"]);
        outside.ip(&["link", "set", "eth0", "up"]);
        outside.ip(&["route", "add", "default", "via", NODE_IP]);
        let mut list = Vec::new();
        for i in 0..pods {
            let pod = Ns::create("pod");
            let ip = format!("10.1.0.{}", 11 + i);
            let host = format!("h{i}");
            node.ip(&[
                "link",
                "add",
                &host,
                "address",
                "ee:ee:ee:ee:ee:ee",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &pod.name,
            ]);
            node.ip(&["link", "set", &host, "up"]);
            node.ip(&["route", "add", &format!("{ip}/32"), "dev", &host]);
            pod.ip(&["addr", "add", &format!("{ip}/32"), "dev", "eth0"]);
            pod.ip(&["link", "set", "eth0", "up"]);
            pod.ip(&["route", "add", "169.254.1.1", "dev", "eth0"]);
            pod.ip(&["route", "add", "default", "via", "169.254.1.1"]);
            pod.ip(&[
                "neigh",
                "add",
                "169.254.1.1",
                "lladdr",
                "ee:ee:ee:ee:ee:ee",
                "dev",
                "eth0",
                "nud",
                "permanent",
            ]);
            list.push((pod, ip));
        }
        Topology {
            node,
            outside,
            pods: list,
        }
    }
}

/// The cgroup v2 mount point (`/sys/fs/cgroup` preferred over hybrid `.../unified`).
pub fn cgroup2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut roots: Vec<PathBuf> = mounts
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            right
                .starts_with("cgroup2 ")
                .then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
        })
        .collect();
    roots.sort_by_key(|p| p != Path::new("/sys/fs/cgroup"));
    roots.into_iter().next()
}
