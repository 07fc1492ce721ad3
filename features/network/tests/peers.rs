//! Cross-node routing in real namespaces: two "nodes" on a veth underlay, a pod behind each,
//! routes programmed by `sync_peers` in native and VXLAN mode, then removed. Skipped unless root.

#[path = "netns/harness.rs"]
#[allow(
    dead_code,
    reason = "the harness is shared with tests/netns.rs, which uses the rest"
)]
mod harness;

use harness::{Ns, conf, privileged, request};
use knet_core::config::NetworkMode;
use knet_network::cni::Command;
use knet_network::handler::{CniHandler, NodeNetwork};
use knet_network::kernel::{Netlink, apply_masquerade, delete_masquerade, masquerade_ruleset};
use knet_network::peers::{Peer, VxlanSpec, delete_peer_state, local_addresses, plan, sync_peers};

fn net(s: &str) -> ipnet::IpNet {
    s.parse().expect("cidr")
}

async fn node_with_pod(cidr: &str, pod: &Ns, node: &Ns, store: &std::path::Path) -> String {
    let s = knet_store::Store::open(store).expect("store");
    let ipam = knet_network::ipam::Ipam::open(&s).expect("ipam");
    let (_tx, rx) = tokio::sync::watch::channel(NodeNetwork {
        pod_cidrs: vec![net(cidr)],
        mtu: 1400,
    });
    let h = CniHandler::new(ipam, Some(node.path()), rx)
        .await
        .expect("handler");
    let req = request(
        Command::Add,
        "x",
        &pod.path().display().to_string(),
        conf("1.1.0", "/x"),
    );
    let result = h.call(req).await.expect("ADD").expect("result");
    result["ips"][0]["address"]
        .as_str()
        .expect("ip")
        .split('/')
        .next()
        .expect("ip")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_on_two_nodes_talk_natively_and_over_vxlan() {
    if !privileged() {
        return;
    }
    let (n1, n2) = (Ns::create("n1"), Ns::create("n2"));
    for n in [&n1, &n2] {
        n.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    }
    // The underlay: one veth between the two nodes, 192.168.77.0/24.
    harness::run(&[
        "ip",
        "link",
        "add",
        &format!("ul{}", std::process::id() % 100000),
        "netns",
        &n1.name,
        "type",
        "veth",
        "peer",
        "name",
        "ul0",
        "netns",
        &n2.name,
    ]);
    let ul1 = format!("ul{}", std::process::id() % 100000);
    n1.ip(&["link", "set", &ul1, "name", "ul0"]);
    n1.ip(&["addr", "add", "192.168.77.1/24", "dev", "ul0"]);
    n2.ip(&["addr", "add", "192.168.77.2/24", "dev", "ul0"]);
    n1.ip(&["link", "set", "ul0", "up"]);
    n2.ip(&["link", "set", "ul0", "up"]);
    let (p1, p2) = (Ns::create("p1"), Ns::create("p2"));
    let dir = tempfile::tempdir().expect("tempdir");
    let ip1 = node_with_pod("10.1.1.0/24", &p1, &n1, &dir.path().join("s1")).await;
    let ip2 = node_with_pod("10.1.2.0/24", &p2, &n2, &dir.path().join("s2")).await;

    let nl1 = Netlink::open(Some(&n1.path())).await.expect("nl1");
    let nl2 = Netlink::open(Some(&n2.path())).await.expect("nl2");
    let peer_of = |name: &str, cidr: &str, ip: &str| Peer {
        name: name.into(),
        pod_cidrs: vec![net(cidr)],
        node_ips: vec![ip.parse().expect("ip")],
    };
    let to_n2 = [peer_of("n2", "10.1.2.0/24", "192.168.77.2")];
    let to_n1 = [peer_of("n1", "10.1.1.0/24", "192.168.77.1")];
    for mode in [NetworkMode::Auto, NetworkMode::Vxlan] {
        for (nl, peers, local, cidr) in [
            (&nl1, &to_n2, "192.168.77.1", "10.1.1.0"),
            (&nl2, &to_n1, "192.168.77.2", "10.1.2.0"),
        ] {
            let connected = local_addresses(nl).await.expect("addresses");
            let routes = plan(mode, &connected, peers);
            let spec = VxlanSpec {
                port: 8472,
                local: local.parse().expect("ip"),
                mtu: 1450,
                vteps: vec![cidr.parse().expect("ip")],
            };
            sync_peers(nl, &routes, Some(&spec)).await.expect("sync");
            // Twice: idempotent.
            sync_peers(nl, &routes, Some(&spec))
                .await
                .expect("sync again");
        }
        let has_vxlan = n1.has_link("knet.vxlan");
        assert_eq!(has_vxlan, mode == NetworkMode::Vxlan, "{mode:?}");
        assert!(p1.pings(&ip2), "{mode:?}: pod on n1 -> pod on n2");
        assert!(p2.pings(&ip1), "{mode:?}: pod on n2 -> pod on n1");
    }
    let routes =
        String::from_utf8_lossy(&n1.ip(&["route", "show", "proto", "76"]).stdout).into_owned();
    assert!(routes.contains("10.1.2.0/24"), "{routes}");

    // Masquerade table: ours only, replaced atomically, removed cleanly.
    let ruleset = masquerade_ruleset(&[net("10.1.0.0/16")], &[net("10.1.0.0/16")]);
    apply_masquerade(Some(&n1.path()), ruleset.clone())
        .await
        .expect("nft");
    apply_masquerade(Some(&n1.path()), ruleset)
        .await
        .expect("nft again");
    let listed = n1.exec(&["nft", "list", "table", "inet", "knet-network"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("masquerade"));
    delete_masquerade(Some(&n1.path())).await.expect("delete");
    delete_masquerade(Some(&n1.path()))
        .await
        .expect("delete twice");

    // Disable: routes and the tunnel go; pods on the same node keep their wiring.
    delete_peer_state(&nl1).await.expect("cleanup");
    assert!(n1.ip(&["route", "show", "proto", "76"]).stdout.is_empty());
    assert!(!n1.has_link("knet.vxlan"));
    assert!(!p1.pings(&ip2), "no route across once disabled");
}
