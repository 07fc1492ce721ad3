//! Test harness: named network namespaces this test process creates (`knettest-net-<pid>-...`)
//! and always deletes, a CNI handler wired into a "node" namespace, and the local API socket.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::future::BoxFuture;
use knet_core::{ApiHandler, ApiRequest};
use knet_network::cni::{CniEnv, Command as CniCommand};
use knet_network::handler::{CniHandler, NodeNetwork};
use knet_network::ipam::Ipam;
use knet_network::wire::CniRequest;
use serde_json::{Value, json};
use tokio::sync::watch;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// These tests need root and `ip` (network namespaces). Without them they fail with a clear
/// message: a test that cannot run must not pass. Always returns true.
pub fn privileged() -> bool {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests need root (they create network namespaces): run them as root, e.g. `sudo make test`"
    );
    assert!(
        Command::new("ip")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success()),
        "these tests need iproute2's `ip`: run e2e/install-deps.sh"
    );
    true
}

/// A named network namespace, deleted on drop.
#[derive(Debug)]
pub struct Ns {
    pub name: String,
}

impl Ns {
    pub fn create(tag: &str) -> Ns {
        let name = format!(
            "knettest-net-{}-{}-{tag}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        run(&["ip", "netns", "add", &name]);
        let ns = Ns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// A namespace set up like a node: forwarding on, an address to source packets from.
    pub fn node() -> Ns {
        let ns = Ns::create("node");
        ns.exec(&[
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
        ]);
        ns.ip(&[
            "link", "add", "tul0", "type", "veth", "peer", "name", "tul1",
        ]);
        ns.ip(&["addr", "add", "192.168.250.1/24", "dev", "tul0"]);
        ns.ip(&["link", "set", "tul0", "up"]);
        ns.ip(&["link", "set", "tul1", "up"]);
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

    /// Whether `ping` from this namespace reaches `ip` (one probe, bounded wait).
    pub fn pings(&self, ip: &str) -> bool {
        let mut all = vec![
            "ip", "netns", "exec", &self.name, "ping", "-c", "1", "-W", "3",
        ];
        if ip.contains(':') {
            all.push("-6");
        }
        all.push(ip);
        try_run(&all).is_some_and(|o| o.status.success())
    }

    /// Whether a link called `name` exists here.
    pub fn has_link(&self, name: &str) -> bool {
        try_run(&["ip", "-n", &self.name, "link", "show", name]).is_some_and(|o| o.status.success())
    }

    /// Names of knet host veths in this namespace.
    pub fn host_veths(&self) -> Vec<String> {
        let out = self.ip(&["-o", "link", "show"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_owned())
            .filter(|n| knet_network::kernel::is_host_veth(n))
            .collect()
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

fn try_run(args: &[&str]) -> Option<Output> {
    Command::new(args[0]).args(&args[1..]).output().ok()
}

pub fn run(args: &[&str]) -> Output {
    let out = try_run(args).unwrap_or_else(|| panic!("cannot run {args:?}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The network the handler serves in tests.
pub fn test_network() -> NodeNetwork {
    NodeNetwork {
        pod_cidrs: vec![
            "10.1.0.0/24".parse().expect("cidr"),
            "fd01::/120".parse().expect("cidr"),
        ],
        mtu: 1450,
    }
}

/// A handler on a store in `store_dir`, wiring pods into `node`.
pub async fn handler_in(
    node: &Ns,
    store_dir: &Path,
) -> (Arc<CniHandler>, watch::Sender<NodeNetwork>) {
    let store = knet_store::Store::open(store_dir).expect("store");
    let ipam = Ipam::open(&store).expect("ipam");
    let (tx, rx) = watch::channel(test_network());
    let h = CniHandler::new(ipam, Some(node.path()), rx)
        .await
        .expect("handler");
    (Arc::new(h), tx)
}

pub fn conf(version: &str, socket: &str) -> Value {
    json!({"cniVersion": version, "name": "knet", "type": "knet", "socket": socket})
}

pub fn request(cmd: CniCommand, id: &str, netns: &str, config: Value) -> CniRequest {
    CniRequest {
        command: cmd,
        env: CniEnv {
            container_id: id.to_owned(),
            netns: netns.to_owned(),
            ifname: "eth0".to_owned(),
            args: Vec::new(),
            path: "/opt/cni/bin".to_owned(),
        },
        config,
    }
}

/// Routes `/v1/feature/network/*` to the handler, like the daemon does.
pub struct TestRouter(pub Arc<CniHandler>);

impl knet_api::Router for TestRouter {
    fn route(
        &self,
        method: String,
        path: String,
        body: Vec<u8>,
    ) -> BoxFuture<'_, (u16, &'static str, Vec<u8>)> {
        Box::pin(async move {
            let Some(rest) = path.strip_prefix("/v1/feature/network/") else {
                return (
                    404,
                    "application/json",
                    b"{\"error\":\"no route\"}".to_vec(),
                );
            };
            let resp = self
                .0
                .handle(ApiRequest {
                    method,
                    path: rest.to_owned(),
                    body,
                })
                .await;
            (resp.status, "application/json", resp.body)
        })
    }
}
