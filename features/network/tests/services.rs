//! The services ruleset against the real kernel: a node namespace with routed pods and an
//! outside host, the table rendered from Service/EndpointSlice objects and applied with nft,
//! then real TCP and UDP packets. Skipped unless root.

#[path = "services/lab.rs"]
mod lab;

use std::collections::BTreeSet;
use std::io::ErrorKind;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use knet_network::services::apply::{FullScript, delete_script, parse_names};
use knet_network::services::base::{STATIC_CHAINS, StaticConfig};
use knet_network::services::desired::{Desired, NodeInputs};
use knet_network::services::exec::{
    nft_apply, nft_apply_full, nft_apply_streamed, nft_list, nft_list_names,
};
use knet_network::services::model::ServiceTable;
use knet_network::services::nfnl::NfSocket;
use knet_network::services::render::Ruleset;
use lab::{NODE_IP, OUTSIDE_IP, Topology, privileged};
use serde_json::{Value, json};

fn service(name: &str, ip: &str, extra: Value) -> Service {
    let mut spec = json!({"clusterIP": ip, "clusterIPs": [ip],
        "ports": [{"name": "p", "port": 80, "protocol": "TCP"},
                  {"name": "u", "port": 53, "protocol": "UDP"}]});
    for (k, v) in extra.as_object().expect("object") {
        spec[k] = v.clone();
    }
    serde_json::from_value(json!({"metadata": {"namespace": "t", "name": name}, "spec": spec}))
        .expect("service")
}

fn slice(svc: &str, eps: &[(&str, &str)]) -> EndpointSlice {
    let endpoints: Vec<Value> = eps
        .iter()
        .map(|(ip, node)| json!({"addresses": [ip], "nodeName": node}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"namespace": "t", "name": format!("{svc}-x"),
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "ports": [{"name": "p", "port": 8080, "protocol": "TCP"},
                  {"name": "u", "port": 8080, "protocol": "UDP"}],
        "endpoints": endpoints}))
    .expect("slice")
}

fn render(services: &[Service], slices: &[EndpointSlice]) -> Ruleset {
    let table = ServiceTable::build(services, slices, "node", false);
    Ruleset::render(&table, &["10.1.0.0/16".parse().expect("cidr")])
}

/// Which servers answered `n` connections to `addr` from `from`.
fn answers(from: &lab::Ns, addr: &str, n: usize) -> BTreeSet<String> {
    (0..n)
        .map(|_| {
            from.tcp(addr)
                .unwrap_or_else(|e| panic!("{addr}: {e}"))
                .split(' ')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_translate_reject_update_and_clean_up() {
    if !privileged() {
        return;
    }
    let t = Topology::new(3);
    let (a, b, c) = (&t.pods[0], &t.pods[1], &t.pods[2]);
    a.0.serve("a", 8080);
    b.0.serve("b", 8080);
    let ns = Some(t.node.path());
    let ns = ns.as_deref();
    // Node processes need a route to the service CIDR (the feature adds it when missing).
    t.node
        .ip(&["route", "add", "10.152.183.0/24", "dev", "ext0"]);

    let both = [("10.1.0.11", "node"), ("10.1.0.12", "node")];
    let services = vec![
        service(
            "web",
            "10.152.183.5",
            json!({"type": "NodePort",
            "ports": [{"name": "p", "port": 80, "nodePort": 30080},
                      {"name": "u", "port": 53, "protocol": "UDP", "nodePort": 30053}]}),
        ),
        service("empty", "10.152.183.7", json!({})),
        service(
            "local",
            "10.152.183.8",
            json!({"type": "NodePort", "externalTrafficPolicy": "Local",
            "ports": [{"name": "p", "port": 80, "nodePort": 30081}]}),
        ),
        service(
            "sticky",
            "10.152.183.9",
            json!({"sessionAffinity": "ClientIP"}),
        ),
        service(
            "ext",
            "10.152.183.10",
            json!({"externalIPs": ["192.0.2.10"]}),
        ),
    ];
    let slices = vec![
        slice("web", &both),
        slice("local", &[("10.1.0.11", "node")]),
        slice("sticky", &both),
        slice("ext", &both),
    ];
    // The sync loop's path: the desired state kept per Service, applied cold with nft.
    let mut desired = Desired::default();
    let inputs = NodeInputs {
        node: "node".into(),
        sctp: false,
        pod_cidrs: vec!["10.1.0.0/16".parse().expect("cidr")],
        node_ips: Vec::new(),
    };
    desired.update(&services, &slices, &inputs, true);
    let first = desired.ruleset();
    assert_eq!(first, render(&services, &slices));
    // Cold, as the sync loop does it: the table's names listed, the transaction rendered
    // Service by Service as it streams to `nft -f -`.
    let kernel = parse_names(&nft_list_names(ns).await.expect("list"));
    let config = StaticConfig::default();
    let mut script = FullScript::new(&kernel, &config, desired.rendered(), desired.elements());
    nft_apply_streamed(ns, &mut script)
        .await
        .expect("cold apply");
    assert_eq!(script.chains(), first.chains.len());
    let kernel = parse_names(&nft_list_names(ns).await.expect("list"));
    assert_eq!(
        kernel.chains.len(),
        first.chains.len() + STATIC_CHAINS.len()
    );
    assert!(first.chains.keys().all(|c| kernel.chains.contains(c)));
    assert_eq!(kernel.sets.len(), first.sets.len());

    // ClusterIP from a pod: both endpoints serve.
    let client = &c.0;
    assert_eq!(
        answers(client, "10.152.183.5:80", 30),
        BTreeSet::from(["a".to_owned(), "b".to_owned()])
    );
    // UDP through the ClusterIP.
    let u = client.udp("10.152.183.5:53").expect("udp");
    assert!(u.starts_with('a') || u.starts_with('b'), "{u}");
    // From the node's own processes (output hook).
    assert!(!answers(&t.node, "10.152.183.5:80", 4).is_empty());
    // NodePort from outside (masqueraded: the pod sees the node's address).
    let seen = t
        .outside
        .tcp(&format!("{NODE_IP}:30080"))
        .expect("nodeport");
    assert!(seen.ends_with(&format!(" {NODE_IP}")), "{seen}");
    let seen = t
        .outside
        .udp(&format!("{NODE_IP}:30053"))
        .expect("udp nodeport");
    assert!(seen.contains(' '), "{seen}");
    // externalTrafficPolicy Local keeps the client address.
    let seen = t.outside.tcp(&format!("{NODE_IP}:30081")).expect("local");
    assert_eq!(seen, format!("a {OUTSIDE_IP}"));
    // externalIPs from outside.
    t.outside
        .ip(&["route", "add", "192.0.2.10", "via", NODE_IP]);
    assert!(t.outside.tcp("192.0.2.10:80").is_ok());
    // A Service without endpoints rejects at once (TCP reset), it does not black-hole.
    let err = client.tcp("10.152.183.7:80").expect_err("no endpoints");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    let err = client
        .udp("10.152.183.7:53")
        .expect_err("no endpoints, UDP");
    assert_eq!(
        err.kind(),
        ErrorKind::ConnectionRefused,
        "ICMP unreachable: {err}"
    );
    // ClientIP affinity: one client, one endpoint.
    assert_eq!(answers(client, "10.152.183.9:80", 20).len(), 1);
    // An endpoint goes away: only that Service is recomputed, and the change goes to the
    // kernel as an nf_tables netlink batch.
    let mut s2 = slices.clone();
    s2[0] = slice("web", &[("10.1.0.11", "node")]);
    let update = desired.update(&services, &s2, &inputs, true);
    assert_eq!(update.recomputed, 1, "only web");
    let second = desired.ruleset();
    assert_eq!(second, render(&services, &s2));
    let mut socket = NfSocket::open(ns).await.expect("netlink socket");
    let (messages, _) = socket.apply(&update.diff).expect("netlink batch");
    assert!(messages > 0);
    // Hairpin: a pod reaching itself through its Service.
    assert_eq!(
        answers(client, "10.152.183.5:80", 10),
        BTreeSet::from(["a".to_owned()])
    );
    let hair = a.0.tcp("10.152.183.5:80").expect("hairpin");
    assert!(hair.starts_with("a "), "{hair}");
    assert_ne!(hair, "a 10.1.0.11", "hairpin traffic is masqueraded");

    // Drift: someone flushes a map; the full sync repairs it.
    t.node.exec(&[
        "nft",
        "flush",
        "map",
        "inet",
        "knet-services",
        "service-ips-v4",
    ]);
    assert!(client.tcp("10.152.183.5:80").is_err());
    // And leaves a chain and a set of its own in our table; the resync must remove them.
    t.node.exec(&[
        "nft",
        "add",
        "chain",
        "inet",
        "knet-services",
        "stray-chain",
    ]);
    t.node.exec(&[
        "nft",
        "add set inet knet-services stray-set { type ipv4_addr; }",
    ]);
    // The sync loop's full transaction: names listed, the ruleset streamed Service by Service.
    nft_apply_full(ns, &StaticConfig::default(), &desired)
        .await
        .expect("resync");
    assert_eq!(
        answers(client, "10.152.183.5:80", 3),
        BTreeSet::from(["a".to_owned()])
    );
    // Everything removed: stale chains from the first ruleset too, and the stray ones.
    let listing = nft_list(ns).await.expect("list");
    assert!(
        !listing.contains("stray-chain") && !listing.contains("stray-set"),
        "stray objects survived the resync: {listing}"
    );
    let kernel = parse_names(&listing);
    assert_eq!(
        kernel.chains.len(),
        second.chains.len() + STATIC_CHAINS.len(),
        "no stale chains after a resync"
    );
    nft_apply(ns, &delete_script()).await.expect("delete");
    assert_eq!(nft_list(ns).await.expect("list"), "");
    assert!(client.tcp("10.152.183.5:80").is_err());
    let _ = (b, OUTSIDE_IP);
}

/// A cgroup v2 directory this test creates (under the cgroup2 mount), removed on drop.
struct Cgroup(std::path::PathBuf);

impl Cgroup {
    fn create() -> Option<Cgroup> {
        let dir = lab::cgroup2_root()?.join(format!("knettest-svc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        Some(Cgroup(dir))
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Empty once the test's short-lived clients have exited; bounded retries.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

/// Runs `socat` in `netns`, inside `cgroup` when given; its output or None on failure.
fn socat_in(netns: &lab::Ns, cgroup: Option<&Cgroup>, input: &str, target: &str) -> Option<String> {
    let join = cgroup.map_or(String::new(), |c| {
        format!("echo $$ > {}/cgroup.procs && ", c.0.display())
    });
    // nsenter, not `ip netns exec`: the latter mounts a fresh /sys, hiding the cgroup tree.
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net={}", netns.path().display()))
        .args(["sh", "-c"])
        .arg(format!(
            "{join}printf '{input}' | exec timeout 5 socat -T2 - {target}"
        ))
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !s.is_empty()).then_some(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_lb_connects_straight_to_the_backend() {
    use knet_network::services::socket_lb::SocketLb;
    if !privileged() {
        return;
    }
    let Some(cg) = Cgroup::create() else {
        panic!("no cgroup v2 mount to create a test cgroup in");
    };
    let t = Topology::new(2);
    t.pods[0].0.serve("a", 8080);
    let client = &t.pods[1].0;
    let services = vec![service("web", "10.152.183.5", json!({}))];
    let slices = vec![slice("web", &[("10.1.0.11", "node")])];
    let table = ServiceTable::build(&services, &slices, "node", false);
    let mut lb = SocketLb::attach(&cg.0).expect("attach (kernel with cgroup sock_addr hooks)");
    assert_eq!(lb.sync(&table).expect("maps"), 2, "TCP and UDP ports");
    let attached = lab::run(&["bpftool", "cgroup", "show", &cg.0.display().to_string()]);
    let listing = String::from_utf8_lossy(&attached.stdout);
    for hook in [
        "connect4",
        "sendmsg4",
        "recvmsg4",
        "getpeername4",
        "connect6",
    ] {
        assert!(listing.contains(hook), "{hook} attached:\n{listing}");
    }

    // No nftables at all: only the socket hooks can make this work.
    let tcp = socat_in(client, Some(&cg), "", "TCP:10.152.183.5:80");
    let tcp = tcp.expect("TCP via socket LB");
    assert_eq!(
        tcp, "a 10.1.0.12",
        "the backend sees the client's own address"
    );
    let udp = socat_in(client, Some(&cg), "hi", "UDP:10.152.183.5:53").expect("UDP via socket LB");
    assert_eq!(udp, "a 10.1.0.12");
    // Processes outside the cgroup are not translated.
    assert_eq!(socat_in(client, None, "", "TCP:10.152.183.5:80"), None);
    // An endpoint change is a map update.
    let none = ServiceTable::build(&services, &[], "node", false);
    assert_eq!(lb.sync(&none).expect("maps"), 0);
    assert_eq!(socat_in(client, Some(&cg), "", "TCP:10.152.183.5:80"), None);
    lb.sync(&table).expect("maps");
    assert!(socat_in(client, Some(&cg), "", "TCP:10.152.183.5:80").is_some());
    // Dropping it detaches every program.
    drop(lb);
    let attached = lab::run(&["bpftool", "cgroup", "show", &cg.0.display().to_string()]);
    assert!(
        String::from_utf8_lossy(&attached.stdout).trim().is_empty(),
        "nothing left attached"
    );
    assert_eq!(socat_in(client, Some(&cg), "", "TCP:10.152.183.5:80"), None);
}
