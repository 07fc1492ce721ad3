//! The DNS server: our hickory-server request handler, on UDP and TCP.
//!
//! [`DnsState`] is what the handler reads and the feature updates live: the index, the zone
//! config and the forwarder, plus a generation number and the UDP fast path's response cache.
//! [`DnsServer`] binds the listeners (one UDP socket per core per address, with SO_REUSEPORT,
//! plus one TCP listener) and runs until stopped. TCP is served by hickory-server's `Server`; UDP
//! by one receive thread per socket ([`udp`]), which answers repeated cluster-zone questions from
//! the response cache and hands everything else to the same handler.

mod cache;
mod handler;
pub mod listen;
mod udp;

use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

pub use cache::ResponseCache;
pub use handler::Handler;

use crate::Error;
use crate::answer::ZoneConfig;
use crate::forward::Forwarder;
use crate::index::Index;
use crate::metrics::{self, Metrics};

/// The state requests are answered from. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DnsState {
    inner: Arc<StateInner>,
}

#[derive(Debug)]
struct StateInner {
    index: RwLock<Index>,
    zone: RwLock<Arc<ZoneConfig>>,
    forwarder: Forwarder,
    /// Bumped, under the index write lock, after every change of the index or the zone config;
    /// read under the read lock together with them. Cached responses of another generation are
    /// stale.
    generation: AtomicU64,
    responses: ResponseCache,
}

/// Write access to the index; the generation moves on when it is dropped.
pub struct IndexWriter<'a> {
    guard: RwLockWriteGuard<'a, Index>,
    generation: &'a AtomicU64,
}

/// Bytes of cached UDP requests and responses kept at most (tens of thousands of answers).
pub const RESPONSE_CACHE_CAPACITY: usize = 4 << 20;

/// Where and how to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Addresses to listen on, UDP and TCP. Port 0 picks a free port (tests).
    pub addrs: Vec<SocketAddr>,
    /// UDP sockets per address (SO_REUSEPORT); 0 means one per core.
    pub udp_sockets: usize,
    /// Receive (and send) buffer of each UDP socket, in bytes.
    pub udp_buffer: usize,
    /// Idle timeout of TCP connections.
    pub tcp_timeout: Duration,
}

/// A running server.
pub struct DnsServer {
    server: hickory_server::Server<Handler>,
    udp: udp::UdpServing,
    bound: Vec<SocketAddr>,
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer")
            .field("bound", &self.bound)
            .finish_non_exhaustive()
    }
}

// === impl DnsState ===

impl DnsState {
    /// State with an empty, unsynced index.
    pub fn new(zone: ZoneConfig, forwarder: Forwarder) -> DnsState {
        DnsState::with_index(Index::new(), zone, forwarder)
    }

    /// State with a given index (tests).
    pub fn with_index(index: Index, zone: ZoneConfig, forwarder: Forwarder) -> DnsState {
        DnsState {
            inner: Arc::new(StateInner {
                index: RwLock::new(index),
                zone: RwLock::new(Arc::new(zone)),
                forwarder,
                generation: AtomicU64::new(0),
                responses: ResponseCache::new(RESPONSE_CACHE_CAPACITY),
            }),
        }
    }

    /// Reads the index (hold briefly: writers wait).
    pub fn read_index(&self) -> RwLockReadGuard<'_, Index> {
        self.inner
            .index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes the index. Responses cached before the writer is dropped are not served after.
    pub fn write_index(&self) -> IndexWriter<'_> {
        IndexWriter {
            guard: self
                .inner
                .index
                .write()
                .unwrap_or_else(PoisonError::into_inner),
            generation: &self.inner.generation,
        }
    }

    /// The generation of the index and zone config. Read it under [`DnsState::read_index`] to
    /// name the state that guard shows.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// The UDP fast path's cached responses.
    pub fn responses(&self) -> &ResponseCache {
        &self.inner.responses
    }

    /// The zone config in force.
    pub fn zone(&self) -> Arc<ZoneConfig> {
        self.inner
            .zone
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the zone config (cluster domain, TTL, NS addresses) live.
    pub fn set_zone(&self, zone: ZoneConfig) {
        // Under the index write lock, so that the generation moves with the config.
        let _index = self.write_index();
        *self
            .inner
            .zone
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(zone);
    }

    /// The forwarder.
    pub fn forwarder(&self) -> &Forwarder {
        &self.inner.forwarder
    }

    /// The query counters.
    pub fn metrics(&self) -> &'static Metrics {
        metrics::global()
    }
}

// === impl IndexWriter ===

impl Deref for IndexWriter<'_> {
    type Target = Index;

    fn deref(&self) -> &Index {
        &self.guard
    }
}

impl DerefMut for IndexWriter<'_> {
    fn deref_mut(&mut self) -> &mut Index {
        &mut self.guard
    }
}

impl Drop for IndexWriter<'_> {
    fn drop(&mut self) {
        // Still under the write lock: no reader sees the new index with the old generation.
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

// === impl ServerConfig ===

impl ServerConfig {
    /// Listen on `addrs` with the defaults: a UDP socket per core, 10 s TCP idle timeout.
    pub fn new(addrs: Vec<SocketAddr>) -> ServerConfig {
        ServerConfig {
            addrs,
            udp_sockets: 0,
            udp_buffer: listen::UDP_BUFFER,
            tcp_timeout: Duration::from_secs(10),
        }
    }
}

/// UDP sockets and a TCP listener on the same port. With port 0 the kernel picks the UDP port,
/// which something else may hold for TCP: then pick again (bounded).
fn bind_pair(
    addr: SocketAddr,
    sockets: usize,
    buffer: usize,
) -> Result<
    (
        Vec<std::net::UdpSocket>,
        tokio::net::TcpListener,
        SocketAddr,
    ),
    Error,
> {
    let tries = if addr.port() == 0 { 20 } else { 1 };
    let mut last = None;
    for _ in 0..tries {
        let (udp, actual) = listen::udp(addr, sockets, buffer)?;
        match listen::tcp(actual) {
            Ok(tcp) => return Ok((udp, tcp, actual)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::Listen(addr, "no port could be bound".into())))
}

// === impl DnsServer ===

impl DnsServer {
    /// Binds every address and starts serving. Must run inside a Tokio runtime.
    pub fn start(state: DnsState, cfg: &ServerConfig) -> Result<DnsServer, Error> {
        let sockets = match cfg.udp_sockets {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let handler = Handler::new(state);
        let mut server = hickory_server::Server::new(handler.clone());
        let mut udp_sockets = Vec::new();
        let mut bound = Vec::new();
        for addr in &cfg.addrs {
            let (udp, tcp, actual) = bind_pair(*addr, sockets, cfg.udp_buffer)?;
            udp_sockets.extend(udp);
            // 64 KiB: a whole TCP DNS message fits in one write.
            server.register_listener(tcp, cfg.tcp_timeout, 65536);
            tracing::debug!(addr = %actual, udp_sockets = sockets, "dns listening");
            bound.push(actual);
        }
        let udp = udp::UdpServing::start(udp_sockets, &handler)?;
        Ok(DnsServer { server, udp, bound })
    }

    /// The addresses bound (with the real port when 0 was asked).
    pub fn bound(&self) -> &[SocketAddr] {
        &self.bound
    }

    /// Stops accepting, lets in-flight requests finish, and closes the sockets.
    pub async fn stop(mut self) {
        self.udp.stop().await;
        if let Err(error) = self.server.shutdown_gracefully().await {
            tracing::debug!(%error, "dns server stopped with an error");
        }
    }
}
