//! The `inet knet-dns` table in a network namespace of our own (needs root, `nft` and
//! `conntrack`): with it, DNS traffic to and from the listening addresses leaves no conntrack
//! entry while other ports still do; without it, port 53 is tracked again.

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;

use knet_dns::{address, notrack};

const SVC: &str = "10.152.183.10";
const LOCAL: &str = "169.254.20.10";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn run(argv: &[&str]) -> String {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Conntrack entries of this namespace, one per line (`conntrack -L` prints a count on stderr).
fn entries() -> String {
    run(&["conntrack", "-L"])
}

/// Sends a datagram to `to` from a fresh port (so each send is a new flow) and waits for it.
fn udp_flow(to: SocketAddr, server: &UdpSocket) {
    let client = UdpSocket::bind("0.0.0.0:0").expect("client");
    client.send_to(b"query", to).expect("send");
    let mut buf = [0u8; 16];
    let (_, from) = server.recv_from(&mut buf).expect("the server receives");
    server.send_to(b"answer", from).expect("answer");
    client
        .recv_from(&mut buf)
        .expect("the client gets the answer");
}

fn tcp_flow(to: SocketAddr, server: &TcpListener) {
    let _client = TcpStream::connect(to).expect("connect");
    let _conn = server.accept().expect("accept");
}

fn tracked(dport: u16, proto: &str, dst: &str) -> bool {
    entries().lines().any(|l| {
        l.starts_with(proto)
            && l.contains(&format!("dst={dst} "))
            && l.contains(&format!("dport={dport} "))
    })
}

#[test]
fn port_53_on_the_dns_addresses_is_not_tracked() {
    let ran = std::thread::spawn(|| {
        if nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
            return false;
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        run(&["ip", "link", "set", "lo", "up"]);
        rt.block_on(address::ensure(&[ip(SVC), ip(LOCAL)]))
            .expect("addresses");
        // A rule with a ct expression turns conntrack on in this namespace, as the network
        // feature's NAT table does on a node.
        run(&["nft", "add", "table", "inet", "probe"]);
        run(&[
            "nft",
            "add chain inet probe in { type filter hook input priority 0; }",
        ]);
        run(&["nft", "add rule inet probe in ct state new counter"]);
        rt.block_on(notrack::apply(&[ip(SVC), ip(LOCAL)]))
            .expect("notrack table");
        let tables = run(&["nft", "list", "tables"]);
        assert!(tables.contains("table inet knet-dns"), "{tables}");

        for dst in [SVC, LOCAL] {
            let dns = UdpSocket::bind((ip(dst), 53)).expect("bind 53");
            let other = UdpSocket::bind((ip(dst), 5353)).expect("bind 5353");
            let dns_tcp = TcpListener::bind((ip(dst), 53)).expect("bind tcp 53");
            udp_flow(SocketAddr::new(ip(dst), 53), &dns);
            udp_flow(SocketAddr::new(ip(dst), 5353), &other);
            tcp_flow(SocketAddr::new(ip(dst), 53), &dns_tcp);
            assert!(
                tracked(5353, "udp", dst),
                "conntrack must be on for other ports (else this test proves nothing):\n{}",
                entries()
            );
            assert!(
                !tracked(53, "udp", dst) && !tracked(53, "tcp", dst),
                "port 53 to {dst} must not be tracked:\n{}",
                entries()
            );
        }

        // Removed: port 53 is tracked again and the table is gone.
        rt.block_on(notrack::remove()).expect("remove");
        rt.block_on(notrack::remove())
            .expect("remove is idempotent");
        let tables = run(&["nft", "list", "tables"]);
        assert!(!tables.contains("knet-dns"), "{tables}");
        let dns = UdpSocket::bind((ip(SVC), 53)).expect("bind 53");
        udp_flow(SocketAddr::new(ip(SVC), 53), &dns);
        assert!(
            tracked(53, "udp", SVC),
            "without the table port 53 is tracked:\n{}",
            entries()
        );
        true
    })
    .join()
    .expect("netns thread");
    assert!(
        ran,
        "creating a network namespace needs root: run the tests as root (sudo make test)"
    );
}
