//! The server on 127.0.0.1 (random port), queried with `dig` over UDP and TCP: cluster names from
//! an in-memory index, and forwarding to a real upstream (`named`) on loopback.

mod dig;
mod named;

use std::net::SocketAddr;
use std::time::Duration;

use knet_dns::answer::{PodMode, ZoneConfig};
use knet_dns::fixture::{
    cluster_ip, ep, ep_host, external_name, headless, index, namespace, slice,
};
use knet_dns::forward::{ForwardConfig, Forwarder};
use knet_dns::index::Index;
use knet_dns::metrics::{self, Outcome, Zone};
use knet_dns::server::{DnsServer, DnsState, ServerConfig};

use dig::dig;
use named::Named;

fn world() -> Index {
    let http = [("http", "TCP", 80)];
    let many: Vec<_> = (0..100).map(|i| ep(&format!("172.1.0.{i}"))).collect();
    index(
        vec![namespace("testns"), namespace("podns")],
        vec![
            cluster_ip("testns", "svc1", &["10.0.0.1"], &http),
            cluster_ip("testns", "dual", &["10.0.0.3", "fd00::3"], &http),
            headless("testns", "hdls1", &http),
            headless("testns", "big", &[]),
            external_name("testns", "ext", "www.example.test"),
        ],
        vec![
            slice(
                "testns",
                "hdls1-a",
                "hdls1",
                &http,
                vec![ep("172.0.0.2"), ep_host("172.0.0.4", "web-0")],
            ),
            slice("testns", "big-a", "big", &[], many),
        ],
        vec![],
    )
}

async fn start(index: Index, upstreams: Vec<SocketAddr>) -> (DnsServer, SocketAddr, DnsState) {
    let mut zone = ZoneConfig::new(
        "cluster.local",
        30,
        vec!["10.152.183.10".parse().expect("ip")],
    )
    .expect("zone");
    zone.pods = PodMode::Insecure;
    let forwarder = Forwarder::new(ForwardConfig {
        attempt_timeout: Duration::from_millis(1500),
        ..ForwardConfig::default()
    });
    forwarder.set_upstreams(upstreams);
    let state = DnsState::with_index(index, zone, forwarder);
    let mut cfg = ServerConfig::new(vec!["127.0.0.1:0".parse().expect("addr")]);
    cfg.udp_sockets = 2;
    let server = DnsServer::start(state.clone(), &cfg).expect("server starts");
    let addr = server.bound()[0];
    state.forwarder().set_local_addrs(server.bound().to_vec());
    (server, addr, state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_names_over_udp_and_tcp() {
    let (server, addr, _state) = start(world(), vec![]).await;
    for tcp in [false, true] {
        let d = dig(addr, "svc1.testns.svc.cluster.local", "A", tcp, &[]).await;
        assert_eq!(d.status, "NOERROR", "tcp={tcp} {d:?}");
        assert!(d.flag("aa") && d.flag("qr"), "{d:?}");
        assert_eq!(
            d.answer,
            vec!["svc1.testns.svc.cluster.local. 30 IN A 10.0.0.1"]
        );

        let d = dig(addr, "dual.testns.svc.cluster.local", "AAAA", tcp, &[]).await;
        assert_eq!(d.data(), vec!["fd00::3"]);

        let d = dig(addr, "hdls1.testns.svc.cluster.local", "A", tcp, &[]).await;
        assert_eq!(d.data(), vec!["172.0.0.2", "172.0.0.4"]);

        let d = dig(addr, "web-0.hdls1.testns.svc.cluster.local", "A", tcp, &[]).await;
        assert_eq!(d.data(), vec!["172.0.0.4"]);

        let d = dig(
            addr,
            "_http._tcp.svc1.testns.svc.cluster.local",
            "SRV",
            tcp,
            &[],
        )
        .await;
        assert_eq!(d.data(), vec!["0 100 80 svc1.testns.svc.cluster.local."]);
        assert_eq!(
            d.additional,
            vec!["svc1.testns.svc.cluster.local. 30 IN A 10.0.0.1"]
        );

        let d = dig(addr, "1.0.0.10.in-addr.arpa", "PTR", tcp, &[]).await;
        assert_eq!(d.data(), vec!["svc1.testns.svc.cluster.local."]);

        let d = dig(addr, "dns-version.cluster.local", "TXT", tcp, &[]).await;
        assert_eq!(d.data(), vec!["\"1.1.0\""]);

        let d = dig(addr, "10-244-1-7.podns.pod.cluster.local", "A", tcp, &[]).await;
        assert_eq!(d.data(), vec!["10.244.1.7"]);

        // Case is echoed.
        let d = dig(addr, "SvC1.TeStNs.sVc.Cluster.Local", "A", tcp, &[]).await;
        assert_eq!(
            d.answer,
            vec!["SvC1.TeStNs.sVc.Cluster.Local. 30 IN A 10.0.0.1"]
        );

        // NXDOMAIN and NODATA carry the SOA.
        let d = dig(addr, "nope.testns.svc.cluster.local", "A", tcp, &[]).await;
        assert_eq!(d.status, "NXDOMAIN");
        assert_eq!(d.authority.len(), 1);
        assert!(
            d.authority[0].starts_with(
                "cluster.local. 30 IN SOA ns.dns.cluster.local. hostmaster.cluster.local."
            ),
            "{d:?}"
        );
        let d = dig(addr, "svc1.testns.svc.cluster.local", "AAAA", tcp, &[]).await;
        assert_eq!(
            (d.status.as_str(), d.answer.len(), d.authority.len()),
            ("NOERROR", 0, 1)
        );

        let d = dig(addr, "cluster.local", "NS", tcp, &[]).await;
        assert_eq!(d.data(), vec!["ns.dns.cluster.local."]);
        assert_eq!(
            d.additional,
            vec!["ns.dns.cluster.local. 30 IN A 10.152.183.10"]
        );
    }
    // Zone transfers are refused.
    let d = dig(addr, "cluster.local", "AXFR", true, &[]).await;
    assert!(d.status.is_empty() || d.status == "REFUSED", "{d:?}");
    assert!(metrics::global().requests(Zone::Cluster, Outcome::Success) > 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_answers_truncate_over_udp_and_complete_over_tcp() {
    let (server, addr, _state) = start(world(), vec![]).await;
    let udp = dig(
        addr,
        "big.testns.svc.cluster.local",
        "A",
        false,
        &["+ignore", "+bufsize=1232"],
    )
    .await;
    assert!(udp.flag("tc"), "{udp:?}");
    assert!(udp.answer.len() < 100);
    let tcp = dig(addr, "big.testns.svc.cluster.local", "A", true, &[]).await;
    assert!(!tcp.flag("tc"));
    assert_eq!(tcp.answer.len(), 100);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_synced_gives_servfail_for_cluster_names() {
    let mut idx = world();
    idx.set_synced(false);
    let (server, addr, state) = start(idx, vec![]).await;
    let d = dig(addr, "svc1.testns.svc.cluster.local", "A", false, &[]).await;
    assert_eq!(d.status, "SERVFAIL");
    state.write_index().set_synced(true);
    let d = dig(addr, "svc1.testns.svc.cluster.local", "A", false, &[]).await;
    assert_eq!(d.status, "NOERROR");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_to_a_real_upstream_and_caches() {
    let mut upstream = Named::authoritative().await;
    let (server, addr, state) = start(world(), vec![upstream.addr]).await;
    for tcp in [false, true] {
        let d = dig(addr, "www.example.test", "A", tcp, &[]).await;
        assert_eq!(d.status, "NOERROR", "tcp={tcp} {d:?}");
        assert!(d.flag("ra") && !d.flag("aa"), "{d:?}");
        assert_eq!(d.data(), vec!["192.0.2.10"]);
        let d = dig(addr, "nope.example.test", "A", tcp, &[]).await;
        assert_eq!(d.status, "NXDOMAIN");
        assert!(d.authority[0].contains("SOA"), "{d:?}");
    }
    // An ExternalName pointing outside the zone: CNAME, then the target resolved upstream.
    let d = dig(addr, "ext.testns.svc.cluster.local", "A", false, &[]).await;
    assert_eq!(
        d.answer,
        vec![
            "ext.testns.svc.cluster.local. 30 IN CNAME www.example.test.",
            "www.example.test. 60 IN A 192.0.2.10"
        ]
    );
    // With the upstream gone, cached answers (positive and negative) are still served.
    upstream.stop().await;
    let d = dig(addr, "www.example.test", "A", false, &[]).await;
    assert_eq!(d.data(), vec!["192.0.2.10"]);
    let d = dig(addr, "nope.example.test", "A", false, &[]).await;
    assert_eq!(d.status, "NXDOMAIN");
    // Uncached names fail.
    let d = dig(addr, "other.example.test", "A", false, &[]).await;
    assert_eq!(d.status, "SERVFAIL");
    let (pos, neg) = state.forwarder().cache_len();
    assert!(pos >= 1 && neg >= 1, "{pos} {neg}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_loops_are_detected() {
    // An upstream that forwards everything back to us.
    let (server, addr, state) = start(world(), vec![]).await;
    let looping = Named::forwarding_to(addr).await;
    state.forwarder().set_upstreams(vec![looping.addr]);
    state.forwarder().probe_loops().await;
    let status = state.forwarder().status();
    assert!(status[0].looping, "{status:?}");
    // Queries do not circle: they fail at once.
    let d = dig(addr, "www.example.com", "A", false, &[]).await;
    assert_eq!(d.status, "SERVFAIL");
    // Cluster names still work.
    let d = dig(addr, "svc1.testns.svc.cluster.local", "A", false, &[]).await;
    assert_eq!(d.status, "NOERROR");
    server.stop().await;
}

/// UDP sockets bound to `addr` in this namespace, from /proc/net/udp (`0100007F:PORT` for
/// 127.0.0.1).
fn udp_sockets_on(addr: SocketAddr) -> usize {
    let want = format!("0100007F:{:04X}", addr.port());
    std::fs::read_to_string("/proc/net/udp")
        .expect("/proc/net/udp")
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some(want.as_str()))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_udp_socket_per_core_sharing_the_port() {
    let zone = ZoneConfig::new("cluster.local", 30, vec![]).expect("zone");
    let state = DnsState::with_index(world(), zone, Forwarder::new(ForwardConfig::default()));
    // The default: one per core.
    let cfg = ServerConfig::new(vec!["127.0.0.1:0".parse().expect("addr")]);
    let server = DnsServer::start(state.clone(), &cfg).expect("server starts");
    let addr = server.bound()[0];
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    assert_eq!(
        udp_sockets_on(addr),
        cores,
        "one SO_REUSEPORT socket per core on {addr}"
    );
    // Each socket answers: many client ports spread over them (the kernel hashes the source).
    for _ in 0..16 {
        let d = dig(addr, "svc1.testns.svc.cluster.local", "A", false, &[]).await;
        assert_eq!(d.data(), vec!["10.0.0.1"]);
    }
    server.stop().await;
    assert_eq!(udp_sockets_on(addr), 0, "stopping closes every socket");
    let mut cfg = cfg;
    cfg.udp_sockets = 3;
    let server = DnsServer::start(state, &cfg).expect("server starts");
    assert_eq!(udp_sockets_on(server.bound()[0]), 3);
    server.stop().await;
}
