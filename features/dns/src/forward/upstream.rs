//! One upstream resolver: its health, and a query exchange over UDP with TCP fallback.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use hickory_server::proto::op::{Edns, Message, MessageType, Query};
use hickory_server::proto::rr::{DNSClass, Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// After this many consecutive failures an upstream is unhealthy until a health check answers
/// (CoreDNS `max_fails`).
pub const MAX_FAILS: u32 = 2;
/// The EDNS buffer size we advertise upstream (DNS flag day 2020).
const EDNS_PAYLOAD: u16 = 1232;

/// A failed exchange.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// A socket error.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// No answer in time.
    #[error("timed out")]
    Timeout,
    /// The answer could not be parsed.
    #[error("malformed answer: {0}")]
    Malformed(String),
}

/// A question to forward.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Question {
    /// The name (any case).
    pub name: Name,
    /// The type.
    pub qtype: RecordType,
    /// The class.
    pub qclass: DNSClass,
    /// The client asked for DNSSEC records (EDNS DO bit).
    pub dnssec_ok: bool,
}

/// An upstream resolver and what we know about it.
#[derive(Debug)]
pub struct Upstream {
    /// Its address.
    pub addr: SocketAddr,
    fails: AtomicU32,
    healthy: AtomicBool,
    checking: AtomicBool,
    looping: AtomicBool,
    /// Exchanges that failed, for metrics.
    pub failures: AtomicU64,
}

// === impl Upstream ===

impl Upstream {
    /// A new, presumed healthy, upstream.
    pub fn new(addr: SocketAddr) -> Upstream {
        Upstream {
            addr,
            fails: AtomicU32::new(0),
            healthy: AtomicBool::new(true),
            checking: AtomicBool::new(false),
            looping: AtomicBool::new(false),
            failures: AtomicU64::new(0),
        }
    }

    /// Answered recently (or not yet tried).
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Sends our own queries back to us: never used while this is set.
    pub fn looping(&self) -> bool {
        self.looping.load(Ordering::Relaxed)
    }

    /// Marks (or clears) a forwarding loop through this upstream.
    pub fn set_looping(&self, looping: bool) {
        self.looping.store(looping, Ordering::Relaxed);
    }

    /// Records a good exchange.
    pub fn succeeded(&self) {
        self.fails.store(0, Ordering::Relaxed);
        self.healthy.store(true, Ordering::Relaxed);
    }

    /// Records a failed exchange. Returns true when this made the upstream unhealthy and no
    /// health check is running yet: the caller should start one.
    pub fn failed(&self) -> bool {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let fails = self.fails.fetch_add(1, Ordering::Relaxed) + 1;
        if fails >= MAX_FAILS {
            self.healthy.store(false, Ordering::Relaxed);
            return !self.checking.swap(true, Ordering::Relaxed);
        }
        false
    }

    /// The health check loop ended.
    pub fn check_done(&self) {
        self.checking.store(false, Ordering::Relaxed);
    }

    /// Asks this upstream `q`, over UDP and again over TCP if the answer was truncated (or
    /// straight over TCP if `tcp`).
    pub async fn exchange(
        &self,
        q: &Question,
        tcp: bool,
        timeout: Duration,
    ) -> Result<Message, ExchangeError> {
        let id: u16 = rand::random();
        let wire = encode_query(q, id)?;
        if !tcp
            && let Some(answer) = udp_exchange(self.addr, &wire, id, q, timeout).await?
            && !answer.metadata.truncation
        {
            return Ok(answer);
        }
        tcp_exchange(self.addr, &wire, id, q, timeout).await
    }
}

/// The wire form of a recursive query for `q`.
fn encode_query(q: &Question, id: u16) -> Result<Vec<u8>, ExchangeError> {
    let mut msg = Message::query();
    msg.metadata.id = id;
    msg.metadata.recursion_desired = true;
    let mut query = Query::query(q.name.clone(), q.qtype);
    query.set_query_class(q.qclass);
    msg.add_query(query);
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    edns.set_dnssec_ok(q.dnssec_ok);
    msg.set_edns(edns);
    msg.to_vec()
        .map_err(|e| ExchangeError::Malformed(e.to_string()))
}

/// Parses an answer and checks it answers our query (id and question), so stray or spoofed
/// datagrams are ignored.
fn decode_answer(bytes: &[u8], id: u16, q: &Question) -> Option<Message> {
    let msg = Message::from_vec(bytes).ok()?;
    let matches = msg.metadata.id == id
        && msg.metadata.message_type == MessageType::Response
        && msg.queries.len() == 1
        && msg.queries[0].name() == &q.name
        && msg.queries[0].query_type() == q.qtype;
    matches.then_some(msg)
}

async fn udp_exchange(
    addr: SocketAddr,
    wire: &[u8],
    id: u16,
    q: &Question,
    timeout: Duration,
) -> Result<Option<Message>, ExchangeError> {
    let local: SocketAddr = match addr.ip() {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    // A fresh socket (random source port) per query: no demultiplexing, and a spoofer has to
    // guess the port as well as the id.
    let socket = UdpSocket::bind(local).await?;
    socket.connect(addr).await?;
    socket.send(wire).await?;
    // We advertise 1232 bytes; a server that ignores that and overflows this buffer gets asked
    // again over TCP.
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let n = tokio::time::timeout_at(deadline, socket.recv(&mut buf))
            .await
            .map_err(|_| ExchangeError::Timeout)??;
        if n >= buf.len() {
            return Ok(None);
        }
        if let Some(msg) = buf.get(..n).and_then(|b| decode_answer(b, id, q)) {
            return Ok(Some(msg));
        }
    }
}

async fn tcp_exchange(
    addr: SocketAddr,
    wire: &[u8],
    id: u16,
    q: &Question,
    timeout: Duration,
) -> Result<Message, ExchangeError> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let len = u16::try_from(wire.len())
            .map_err(|_| ExchangeError::Malformed("query too long".into()))?;
        let mut framed = Vec::with_capacity(wire.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(wire);
        stream.write_all(&framed).await?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut buf).await?;
        decode_answer(&buf, id, q)
            .ok_or_else(|| ExchangeError::Malformed("answer does not match the query".into()))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ExchangeError::Timeout)?
}
