//! Forwarder tests against fake upstreams on loopback.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_server::proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::{A, SOA};
use hickory_server::proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

use super::*;

/// How a fake upstream answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `A 192.0.2.1`, TTL 60.
    Answer,
    /// Never answers.
    Silent,
    /// Sets TC over UDP; answers in full over TCP.
    Truncate,
    /// SERVFAIL.
    ServFail,
    /// NXDOMAIN with an SOA (negative TTL 30).
    NxDomain,
}

struct Fake {
    addr: SocketAddr,
    udp_queries: Arc<AtomicUsize>,
    tcp_queries: Arc<AtomicUsize>,
    mode: Arc<Mutex<Mode>>,
}

fn respond(query: &Message, mode: Mode, tcp: bool) -> Option<Vec<u8>> {
    let mut msg = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
    msg.metadata.recursion_available = true;
    let q = query.queries.first()?.clone();
    let name = q.name().clone();
    msg.add_query(q);
    match mode {
        Mode::Silent => return None,
        Mode::Answer => {
            msg.add_answer(Record::from_rdata(name, 60, RData::A(A::new(192, 0, 2, 1))));
        }
        Mode::Truncate if !tcp => msg.metadata.truncation = true,
        Mode::Truncate => {
            for i in 0..100u8 {
                msg.add_answer(Record::from_rdata(
                    name.clone(),
                    60,
                    RData::A(A::new(192, 0, 2, i)),
                ));
            }
        }
        Mode::ServFail => msg.metadata.response_code = ResponseCode::ServFail,
        Mode::NxDomain => {
            msg.metadata.response_code = ResponseCode::NXDomain;
            let zone = Name::from_ascii("test.").ok()?;
            let soa = SOA::new(zone.clone(), zone.clone(), 1, 1, 1, 1, 30);
            msg.add_authority(Record::from_rdata(zone, 60, RData::SOA(soa)));
        }
    }
    msg.to_vec().ok()
}

async fn fake(mode: Mode) -> Fake {
    let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
    let addr = udp.local_addr().expect("addr");
    let tcp = TcpListener::bind(addr).await.expect("bind tcp");
    let fake = Fake {
        addr,
        udp_queries: Arc::default(),
        tcp_queries: Arc::default(),
        mode: Arc::new(Mutex::new(mode)),
    };
    let (count, mode) = (fake.udp_queries.clone(), fake.mode.clone());
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = udp.recv_from(&mut buf).await {
            count.fetch_add(1, Ordering::SeqCst);
            let current = *mode.lock().expect("lock");
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            if let Some(reply) = respond(&query, current, false) {
                let _ = udp.send_to(&reply, from).await;
            }
        }
    });
    let (count, mode) = (fake.tcp_queries.clone(), fake.mode.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = tcp.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let current = *mode.lock().expect("lock");
            let mut len = [0u8; 2];
            if stream.read_exact(&mut len).await.is_err() {
                continue;
            }
            let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
            if stream.read_exact(&mut buf).await.is_err() {
                continue;
            }
            let Ok(query) = Message::from_vec(&buf) else {
                continue;
            };
            if let Some(reply) = respond(&query, current, true) {
                let mut framed = u16::try_from(reply.len())
                    .expect("len")
                    .to_be_bytes()
                    .to_vec();
                framed.extend_from_slice(&reply);
                let _ = stream.write_all(&framed).await;
            }
        }
    });
    fake
}

fn question(name: &str) -> Question {
    Question {
        name: Name::from_ascii(name).expect("name"),
        qtype: RecordType::A,
        qclass: DNSClass::IN,
        dnssec_ok: false,
    }
}

fn forwarder() -> Forwarder {
    Forwarder::new(ForwardConfig {
        attempt_timeout: Duration::from_millis(300),
        health_interval: Duration::from_millis(50),
        ..ForwardConfig::default()
    })
}

#[tokio::test]
async fn answers_are_cached() {
    let up = fake(Mode::Answer).await;
    let f = forwarder();
    f.set_upstreams(vec![up.addr]);
    let first = f
        .resolve(&question("www.example.test."), false)
        .await
        .expect("first");
    assert!(!first.cached);
    assert_eq!(first.answer.answers.len(), 1);
    let second = f
        .resolve(&question("WWW.Example.TEST."), false)
        .await
        .expect("second");
    assert!(second.cached, "same name in another case hits the cache");
    assert!(second.answer.answers[0].ttl <= 60);
    assert_eq!(up.udp_queries.load(Ordering::SeqCst), 1);
    assert_eq!(f.cache_len(), (1, 0));
}

#[tokio::test]
async fn negative_answers_are_cached_and_servfail_is_not() {
    let up = fake(Mode::NxDomain).await;
    let f = forwarder();
    f.set_upstreams(vec![up.addr]);
    let a = f.resolve(&question("nope.test."), false).await.expect("nx");
    assert_eq!(a.answer.rcode, ResponseCode::NXDomain);
    assert!(
        f.resolve(&question("nope.test."), false)
            .await
            .expect("nx")
            .cached
    );
    assert_eq!(f.cache_len(), (0, 1));

    *up.mode.lock().expect("lock") = Mode::ServFail;
    for _ in 0..2 {
        let a = f
            .resolve(&question("broken.test."), false)
            .await
            .expect("servfail is passed on");
        assert_eq!(a.answer.rcode, ResponseCode::ServFail);
        assert!(!a.cached);
    }
}

#[tokio::test]
async fn truncated_answers_are_retried_over_tcp() {
    let up = fake(Mode::Truncate).await;
    let f = forwarder();
    f.set_upstreams(vec![up.addr]);
    let a = f.resolve(&question("big.test."), false).await.expect("big");
    assert_eq!(a.answer.answers.len(), 100);
    assert_eq!(up.udp_queries.load(Ordering::SeqCst), 1);
    assert_eq!(up.tcp_queries.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn fails_over_to_the_next_upstream() {
    let dead = fake(Mode::Silent).await;
    let alive = fake(Mode::Answer).await;
    let f = forwarder();
    f.set_upstreams(vec![dead.addr, alive.addr]);
    // Whichever is tried first, every query is answered.
    for i in 0..8 {
        let a = f
            .resolve(&question(&format!("n{i}.test.")), false)
            .await
            .expect("answered");
        assert_eq!(a.answer.answers.len(), 1);
    }
}

#[tokio::test]
async fn unhealthy_upstreams_are_checked_until_they_recover() {
    let dead = fake(Mode::Silent).await;
    let alive = fake(Mode::Answer).await;
    let f = forwarder();
    f.set_upstreams(vec![dead.addr]);
    for _ in 0..upstream::MAX_FAILS {
        assert_eq!(
            f.resolve(&question("x.test."), false).await,
            Err(ForwardError::Failed)
        );
    }
    assert!(!f.status()[0].healthy);
    // Unhealthy upstreams go last: with a healthy one beside it, queries do not wait for it.
    f.set_upstreams(vec![dead.addr, alive.addr]);
    let a = f
        .resolve(&question("y.test."), false)
        .await
        .expect("answered");
    assert_eq!(a.answer.answers.len(), 1);
    // It comes back: a health check sees it answer.
    *dead.mode.lock().expect("lock") = Mode::Answer;
    for _ in 0..200 {
        if f.status().iter().all(|s| s.healthy) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(f.status().iter().all(|s| s.healthy), "{:?}", f.status());
}

#[tokio::test]
async fn all_upstreams_down_is_an_error() {
    let dead = fake(Mode::Silent).await;
    let f = forwarder();
    f.set_upstreams(vec![dead.addr]);
    assert_eq!(
        f.resolve(&question("x.test."), false).await,
        Err(ForwardError::Failed)
    );
    let none = forwarder();
    assert_eq!(
        none.resolve(&question("x.test."), false).await,
        Err(ForwardError::NoUpstreams)
    );
}

#[tokio::test]
async fn over_the_concurrency_limit_is_refused() {
    let up = fake(Mode::Answer).await;
    let f = Forwarder::new(ForwardConfig {
        max_concurrent: 0,
        ..ForwardConfig::default()
    });
    f.set_upstreams(vec![up.addr]);
    assert_eq!(
        f.resolve(&question("x.test."), false).await,
        Err(ForwardError::Overloaded)
    );
}

#[tokio::test]
async fn upstream_list_keeps_state_and_skips_ourselves() {
    let f = forwarder();
    let a: SocketAddr = "192.0.2.1:53".parse().expect("addr");
    let b: SocketAddr = "192.0.2.2:53".parse().expect("addr");
    assert!(f.set_upstreams(vec![a, b, a]));
    assert!(!f.set_upstreams(vec![a, b]), "same list: no change");
    f.set_local_addrs(vec![b]);
    assert_eq!(
        f.status().iter().map(|s| s.addr).collect::<Vec<_>>(),
        vec![a]
    );
}

#[tokio::test]
async fn loop_probe_marks_the_upstream() {
    let up = fake(Mode::Silent).await;
    let f = forwarder();
    f.set_upstreams(vec![up.addr]);
    let probing = {
        let f = f.clone();
        tokio::spawn(async move { f.probe_loops().await })
    };
    // Stand in for the server: the probe name arrives back here.
    let mut seen = None;
    for _ in 0..100 {
        let name = f.inner.probes.lock().expect("lock").keys().next().cloned();
        if let Some(name) = name {
            seen = Some(name);
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let name = seen.expect("a probe was sent");
    assert!(f.is_loop_probe(&name));
    assert!(!f.is_loop_probe(&Name::from_ascii("other.test.").expect("name")));
    probing.await.expect("probe task");
    assert!(f.status()[0].looping);
    assert_eq!(
        f.resolve(&question("x.test."), false).await,
        Err(ForwardError::NoUpstreams)
    );
}
