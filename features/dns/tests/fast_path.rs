//! The UDP fast path against the normal path, on a real server on 127.0.0.1.
//!
//! For every checklist row (and EDNS, DO, RD and case variants), a question asked twice is
//! answered the first time by the hickory-server request handler and the second time from the
//! response cache, and the two responses are byte for byte the same but for the ID. Answers that
//! must not be cached (forwarded names, ExternalNames chased upstream, responses over the cache's
//! size limit) never come from it, and after a change of the index, the zone config or the synced
//! state the cache is not used until the handler has answered again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_server::proto::rr::{DNSClass, Name, RecordType};
use knet_dns::answer::{PodMode, ZoneConfig};
use knet_dns::fixture::{
    cluster_ip, ep, ep_host, external_name, headless, headless_publish_not_ready, namespace, slice,
};
use knet_dns::forward::{ForwardConfig, Forwarder};
use knet_dns::index::{Index, Snapshot};
use knet_dns::server::{DnsServer, DnsState, ServerConfig};
use tokio::net::UdpSocket;

use RecordType::{A, AAAA, AXFR, NS, PTR, SOA, SRV, TXT};

fn snapshot() -> Snapshot {
    let http = [("http", "TCP", 80)];
    let many: Vec<_> = (0..100).map(|i| ep(&format!("172.1.0.{i}"))).collect();
    Snapshot {
        namespaces: vec![namespace("testns"), namespace("podns")]
            .into_iter()
            .map(Arc::new)
            .collect(),
        services: vec![
            cluster_ip("testns", "svc1", &["10.0.0.1"], &http),
            cluster_ip("testns", "dual", &["10.0.0.3", "fd00::3"], &http),
            headless("testns", "hdls1", &http),
            headless("testns", "big", &[]),
            headless_publish_not_ready("testns", "pnra"),
            external_name("testns", "ext", "www.example.test"),
            external_name("testns", "alias", "svc1.testns.svc.cluster.local"),
        ]
        .into_iter()
        .map(Arc::new)
        .collect(),
        slices: vec![
            slice(
                "testns",
                "hdls1-a",
                "hdls1",
                &http,
                vec![ep("172.0.0.2"), ep_host("172.0.0.4", "web-0")],
            ),
            slice("testns", "big-a", "big", &[], many),
            slice(
                "testns",
                "pnra-a",
                "pnra",
                &[],
                vec![knet_dns::fixture::ep_not_ready("172.0.0.9")],
            ),
        ]
        .into_iter()
        .map(Arc::new)
        .collect(),
        pods: None,
    }
}

fn zone(ttl: u32) -> ZoneConfig {
    let mut zone = ZoneConfig::new(
        "cluster.local",
        ttl,
        vec!["10.152.183.10".parse().expect("ip")],
    )
    .expect("zone");
    zone.pods = PodMode::Insecure;
    zone
}

/// A query message as a stub resolver sends it.
#[derive(Debug, Clone, Copy)]
struct Ask {
    name: &'static str,
    rtype: RecordType,
    class: DNSClass,
    /// EDNS: (UDP size, DO bit).
    edns: Option<(u16, bool)>,
    rd: bool,
}

impl Ask {
    fn new(name: &'static str, rtype: RecordType) -> Ask {
        Ask {
            name,
            rtype,
            class: DNSClass::IN,
            edns: None,
            rd: true,
        }
    }

    fn bytes(&self, id: u16) -> Vec<u8> {
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = self.rd;
        let mut q = Query::query(Name::from_ascii(self.name).expect("name"), self.rtype);
        q.set_query_class(self.class);
        m.add_query(q);
        if let Some((size, dnssec_ok)) = self.edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            e.set_dnssec_ok(dnssec_ok);
            m.set_edns(e);
        }
        m.to_vec().expect("encode")
    }
}

async fn exchange(sock: &UdpSocket, server: SocketAddr, msg: &[u8]) -> Vec<u8> {
    sock.send_to(msg, server).await.expect("send");
    let mut buf = vec![0u8; 65535];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("an answer within 5 s")
        .expect("recv");
    buf.truncate(n);
    buf
}

struct Lab {
    server: DnsServer,
    addr: SocketAddr,
    state: DnsState,
    sock: UdpSocket,
    next_id: u16,
}

impl Lab {
    async fn start() -> Lab {
        let mut index = Index::new();
        index.sync(&snapshot());
        index.set_synced(true);
        let state = DnsState::with_index(
            index,
            zone(30),
            Forwarder::new(ForwardConfig {
                attempt_timeout: Duration::from_millis(300),
                ..ForwardConfig::default()
            }),
        );
        let mut cfg = ServerConfig::new(vec!["127.0.0.1:0".parse().expect("addr")]);
        cfg.udp_sockets = 2;
        let server = DnsServer::start(state.clone(), &cfg).expect("server starts");
        let addr = server.bound()[0];
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("client");
        Lab {
            server,
            addr,
            state,
            sock,
            next_id: 100,
        }
    }

    /// Asks once; returns the response and whether the fast path answered it.
    async fn ask(&mut self, q: &Ask) -> (Vec<u8>, bool) {
        self.next_id = self.next_id.wrapping_add(7919);
        let id = self.next_id;
        let before = self.state.responses().hits();
        let resp = exchange(&self.sock, self.addr, &q.bytes(id)).await;
        assert_eq!(
            resp[..2],
            id.to_be_bytes(),
            "{q:?}: the response carries the query's ID"
        );
        (resp, self.state.responses().hits() > before)
    }
}

fn decode(resp: &[u8]) -> Message {
    Message::from_vec(resp).expect("a valid response")
}

/// One row: the question, the rcode and answer count the handler gives, and whether the answer
/// may come from the cache.
#[derive(Clone, Copy)]
struct Row {
    ask: Ask,
    rcode: ResponseCode,
    answers: usize,
    cached: bool,
}

fn row(ask: Ask, rcode: ResponseCode, answers: usize) -> Row {
    Row {
        ask,
        rcode,
        answers,
        cached: true,
    }
}

fn rows() -> Vec<Row> {
    use ResponseCode::{NXDomain, NoError, Refused, ServFail};
    let q = Ask::new;
    let mut rows = vec![
        row(q("svc1.testns.svc.cluster.local.", A), NoError, 1),
        row(q("dual.testns.svc.cluster.local.", AAAA), NoError, 1),
        row(q("svc1.testns.svc.cluster.local.", AAAA), NoError, 0),
        row(
            q("_http._tcp.svc1.testns.svc.cluster.local.", SRV),
            NoError,
            1,
        ),
        row(q("svc1.testns.svc.cluster.local.", SRV), NoError, 1),
        row(q("1.0.0.10.in-addr.arpa.", PTR), NoError, 1),
        row(q("2.0.0.172.in-addr.arpa.", PTR), NoError, 1),
        row(
            q(
                "3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.",
                PTR,
            ),
            NoError,
            1,
        ),
        row(q("hdls1.testns.svc.cluster.local.", A), NoError, 2),
        row(q("web-0.hdls1.testns.svc.cluster.local.", A), NoError, 1),
        row(
            q("172-0-0-2.hdls1.testns.svc.cluster.local.", A),
            NoError,
            1,
        ),
        row(
            q("_http._tcp.hdls1.testns.svc.cluster.local.", SRV),
            NoError,
            2,
        ),
        row(q("pnra.testns.svc.cluster.local.", A), NoError, 1),
        row(q("alias.testns.svc.cluster.local.", A), NoError, 2),
        row(q("10-244-1-7.podns.pod.cluster.local.", A), NoError, 1),
        row(q("dns-version.cluster.local.", TXT), NoError, 1),
        row(q("cluster.local.", SOA), NoError, 1),
        row(q("cluster.local.", NS), NoError, 1),
        row(q("ns.dns.cluster.local.", A), NoError, 1),
        row(q("nope.testns.svc.cluster.local.", A), NXDomain, 0),
        row(q("web.nosuchns.svc.cluster.local.", A), NXDomain, 0),
        row(q("testns.svc.cluster.local.", A), NoError, 0),
        row(
            q("svc1.testns.svc.cluster.local.cluster.local.", A),
            NXDomain,
            0,
        ),
        row(q("SvC1.TeStNs.sVc.Cluster.Local.", A), NoError, 1),
        row(q("cluster.local.", AXFR), Refused, 0),
        row(
            Ask {
                class: DNSClass::CH,
                ..q("dns-version.cluster.local.", TXT)
            },
            Refused,
            0,
        ),
        // Without EDNS the 100 addresses do not fit in 512 bytes: truncated, TC, still cached.
        row(q("big.testns.svc.cluster.local.", A), NoError, 26),
        // Never from the cache: the answer involves the forwarder (no upstream here: SERVFAIL)...
        Row {
            cached: false,
            ..row(q("www.example.test.", A), ServFail, 0)
        },
        Row {
            cached: false,
            ..row(q("9.9.9.9.in-addr.arpa.", PTR), ServFail, 0)
        },
        // ...or an ExternalName whose target is resolved upstream (the CNAME alone comes back).
        Row {
            cached: false,
            ..row(q("ext.testns.svc.cluster.local.", A), NoError, 1)
        },
        // Too big to keep (with room for all 100 addresses).
        Row {
            cached: false,
            ..row(
                Ask {
                    edns: Some((4096, false)),
                    ..q("big.testns.svc.cluster.local.", A)
                },
                NoError,
                100,
            )
        },
    ];
    // EDNS, DO and RD variants of a few rows.
    let mut variants = Vec::new();
    for r in rows.iter().filter(|r| r.cached).take(8) {
        for (edns, rd) in [
            (Some((1232, false)), true),
            (Some((1232, true)), true),
            (None, false),
        ] {
            variants.push(Row {
                ask: Ask { edns, rd, ..r.ask },
                ..*r
            });
        }
    }
    rows.extend(variants);
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_path_answers_equal_the_handlers_for_every_row() {
    let mut lab = Lab::start().await;
    let mut failures = Vec::new();
    for r in rows() {
        let (first, fast_first) = lab.ask(&r.ask).await;
        let (second, fast_second) = lab.ask(&r.ask).await;
        let m = decode(&first);
        let what = format!("{:?}", r.ask);
        if fast_first {
            failures.push(format!("{what}: first answer came from the cache"));
        }
        if fast_second != r.cached {
            failures.push(format!(
                "{what}: second answer from the cache: {fast_second}, want {}",
                r.cached
            ));
        }
        if first[2..] != second[2..] {
            failures.push(format!(
                "{what}: responses differ past the ID:\n  handler {first:?}\n  second  {second:?}"
            ));
        }
        if m.metadata.response_code != r.rcode || m.answers.len() != r.answers {
            failures.push(format!(
                "{what}: {} with {} answers, want {} with {}",
                m.metadata.response_code,
                m.answers.len(),
                r.rcode,
                r.answers
            ));
        }
        if m.metadata.recursion_desired != r.ask.rd
            || m.edns
                .as_ref()
                .map(|e| (e.max_payload(), e.flags().dnssec_ok))
                != r.ask.edns
        {
            failures.push(format!("{what}: RD or EDNS not echoed: {m:?}"));
        }
        // Owner names echo the question's case, whichever path answered.
        if let Some(a) = decode(&second).answers.first()
            && a.name.to_string() != r.ask.name
            && r.ask.class == DNSClass::IN
            && !r.ask.name.ends_with("arpa.")
        {
            failures.push(format!(
                "{what}: owner {} does not echo the question",
                a.name
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    lab.server.stop().await;
}

fn a_records(resp: &[u8]) -> Vec<(String, u32)> {
    decode(resp)
        .answers
        .iter()
        .map(|r| (r.data.to_string(), r.ttl))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_are_never_answered_from_the_cache() {
    let mut lab = Lab::start().await;
    let svc1 = Ask::new("svc1.testns.svc.cluster.local.", A);
    let late = Ask::new("late.testns.svc.cluster.local.", A);
    for q in [&svc1, &late] {
        lab.ask(q).await;
        assert!(lab.ask(q).await.1, "{q:?} is cached");
    }

    // The index changes: svc1 moves, `late` appears.
    let mut snap = snapshot();
    let mut moved = cluster_ip("testns", "svc1", &["10.0.0.99"], &[("http", "TCP", 80)]);
    moved.metadata.resource_version = Some("2".into());
    snap.services
        .retain(|s| s.metadata.name.as_deref() != Some("svc1"));
    snap.services.push(Arc::new(moved));
    snap.services.push(Arc::new(cluster_ip(
        "testns",
        "late",
        &["10.0.0.50"],
        &[("http", "TCP", 80)],
    )));
    lab.state.write_index().sync(&snap);
    let (resp, fast) = lab.ask(&svc1).await;
    assert!(
        !fast,
        "the first answer after a change comes from the handler"
    );
    assert_eq!(a_records(&resp), vec![("10.0.0.99".to_string(), 30)]);
    let (resp, fast) = lab.ask(&late).await;
    assert!(!fast);
    assert_eq!(decode(&resp).metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&resp), vec![("10.0.0.50".to_string(), 30)]);
    let (resp, fast) = lab.ask(&svc1).await;
    assert!(fast, "then it is cached again");
    assert_eq!(a_records(&resp), vec![("10.0.0.99".to_string(), 30)]);

    // The zone config changes (TTL).
    lab.state.set_zone(zone(7));
    let (resp, fast) = lab.ask(&svc1).await;
    assert!(!fast);
    assert_eq!(a_records(&resp), vec![("10.0.0.99".to_string(), 7)]);

    // Not synced: SERVFAIL (cached too), and answers again once synced.
    lab.state.write_index().set_synced(false);
    for want_fast in [false, true] {
        let (resp, fast) = lab.ask(&svc1).await;
        assert_eq!(fast, want_fast);
        assert_eq!(decode(&resp).metadata.response_code, ResponseCode::ServFail);
    }
    lab.state.write_index().set_synced(true);
    let (resp, fast) = lab.ask(&svc1).await;
    assert!(!fast);
    assert_eq!(a_records(&resp), vec![("10.0.0.99".to_string(), 7)]);
    lab.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_response_messages_get_what_hickory_gives_them() {
    let lab = Lab::start().await;
    // A header that promises a question that is not there: FORMERR with the ID.
    let mut bad = Ask::new("svc1.testns.svc.cluster.local.", A).bytes(0x4242);
    bad.truncate(20);
    let resp = exchange(&lab.sock, lab.addr, &bad).await;
    let m = decode(&resp);
    assert_eq!(
        (
            m.metadata.id,
            m.metadata.response_code,
            m.metadata.message_type
        ),
        (0x4242, ResponseCode::FormErr, MessageType::Response)
    );
    // A response (QR set) and a runt get no answer at all; the server still answers after.
    let mut reflected = Ask::new("svc1.testns.svc.cluster.local.", A).bytes(1);
    reflected[2] |= 0x80;
    lab.sock.send_to(&reflected, lab.addr).await.expect("send");
    lab.sock.send_to(&[0u8; 5], lab.addr).await.expect("send");
    let ok = exchange(
        &lab.sock,
        lab.addr,
        &Ask::new("svc1.testns.svc.cluster.local.", A).bytes(2),
    )
    .await;
    assert_eq!(
        ok[..2],
        [0, 2],
        "the next answer is the good query's, nothing for the others"
    );
    lab.server.stop().await;
}
