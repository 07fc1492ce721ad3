//! UDP serving: one receive thread per SO_REUSEPORT socket.
//!
//! Each thread reads a datagram and, when the response cache holds what the request handler sent
//! for the same bytes in the current generation, sends that back with the request's ID: the fast
//! path, with no task, no lock but one cache shard's, no allocation and no parsing past the
//! header. Everything else (a question asked for the first time since the last change, names
//! outside the zone, malformed messages) takes the normal path: it is parsed by hickory-server
//! (`Request::from_bytes`) and answered by the hickory-server [`Handler`] on the Tokio runtime,
//! as hickory-server's own UDP loop does it (short messages and responses dropped, FORMERR for
//! messages that do not parse, responses encoded with hickory's encoder to the client's UDP
//! size). The handler's cluster-zone responses fill the cache.
//!
//! The fast-path thread sends with a blocking `sendto` (a full send buffer slows it down instead
//! of dropping answers); normal-path tasks send without blocking and retry briefly.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hickory_server::net::NetError;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{
    Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_server::proto::rr::Record;
use hickory_server::proto::serialize::binary::{
    BinDecodable, BinDecoder, BinEncodable, BinEncoder,
};
use hickory_server::server::{Request, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder, Queries};
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, SockaddrStorage, sendto};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::handler::Handler;
use crate::Error;
use crate::metrics::{Outcome, Zone};

/// The largest datagram read (hickory-server's `MAX_RECEIVE_BUFFER_SIZE`).
const MAX_DATAGRAM: usize = 4096;
/// How long a normal-path response waits for room in a full send buffer.
const SEND_RETRIES: usize = 100;
const SEND_RETRY_EVERY: Duration = Duration::from_millis(1);

/// The receive threads and the normal-path tasks of every UDP socket.
pub(super) struct UdpServing {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    tasks: TaskTracker,
    cancel: CancellationToken,
}

/// What a receive thread needs to hand a datagram to the handler.
#[derive(Clone)]
struct NormalPath {
    runtime: tokio::runtime::Handle,
    tasks: TaskTracker,
    cancel: CancellationToken,
    handler: Handler,
    socket: Arc<UdpSocket>,
}

/// hickory-server's `ResponseHandler` for a UDP client: encodes like hickory-server's own and
/// keeps the bytes; the normal path sends them once the handler is done (after storing them in
/// the cache, so that a client's next question finds them there).
#[derive(Clone, Default)]
struct UdpResponder {
    encoded: Arc<Mutex<Option<Encoded>>>,
}

/// A response ready to send.
struct Encoded {
    bytes: Vec<u8>,
    /// Encoded as the handler built it (not the SERVFAIL that replaces an unencodable message).
    complete: bool,
}

// === impl UdpServing ===

impl UdpServing {
    /// Starts one receive thread per socket. Must run inside a Tokio runtime.
    pub(super) fn start(sockets: Vec<UdpSocket>, handler: &Handler) -> Result<UdpServing, Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = TaskTracker::new();
        let cancel = CancellationToken::new();
        let runtime = tokio::runtime::Handle::current();
        let mut serving = UdpServing {
            stop,
            threads: Vec::with_capacity(sockets.len()),
            tasks,
            cancel,
        };
        for socket in sockets {
            let addr = socket
                .local_addr()
                .map_err(|e| Error::Listen(SocketAddr::from(([0, 0, 0, 0], 0)), e.to_string()))?;
            let normal = NormalPath {
                runtime: runtime.clone(),
                tasks: serving.tasks.clone(),
                cancel: serving.cancel.clone(),
                handler: handler.clone(),
                socket: Arc::new(socket),
            };
            let stop = serving.stop.clone();
            let thread = std::thread::Builder::new()
                .name("knet-dns-udp".into())
                .spawn(move || receive_loop(&normal, &stop))
                .map_err(|e| Error::Listen(addr, format!("cannot start a thread: {e}")))?;
            serving.threads.push(thread);
        }
        Ok(serving)
    }

    /// Stops the threads (within the receive timeout) and the normal-path tasks; the sockets are
    /// closed when this returns.
    pub(super) async fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.cancel.cancel();
        let threads = std::mem::take(&mut self.threads);
        let joined = tokio::task::spawn_blocking(move || {
            for t in threads {
                if t.join().is_err() {
                    tracing::warn!("a dns udp thread panicked");
                }
            }
        })
        .await;
        if let Err(error) = joined {
            tracing::warn!(%error, "waiting for the dns udp threads");
        }
        self.tasks.close();
        self.tasks.wait().await;
    }
}

impl Drop for UdpServing {
    fn drop(&mut self) {
        // Not stopped: the threads end on their own at their next timeout.
        self.stop.store(true, Ordering::Relaxed);
        self.cancel.cancel();
    }
}

/// Whether hickory-server would look at this datagram at all: a whole header, a query (not a
/// response: no reflection), and a source that can be answered.
fn answerable(message: &[u8], src: SocketAddr) -> bool {
    let bad_src = src.port() == 0
        || match src.ip() {
            IpAddr::V4(v4) => v4.is_unspecified() || v4.is_broadcast(),
            IpAddr::V6(v6) => v6.is_unspecified(),
        };
    message.len() >= 12 && message[2] & 0x80 == 0 && !bad_src
}

fn receive_loop(normal: &NormalPath, stop: &AtomicBool) {
    let state = &normal.handler.state;
    let socket = &normal.socket;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut out = Vec::with_capacity(512);
    while !stop.load(Ordering::Relaxed) {
        let (len, src) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(error) => {
                tracing::warn!(%error, "receiving on a dns udp socket");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let start = Instant::now();
        let request = &buf[..len];
        if !answerable(request, src) {
            continue;
        }
        if let Some(outcome) = state
            .responses()
            .answer(request, state.generation(), &mut out)
        {
            if let Err(error) = socket.send_to(&out, src) {
                tracing::debug!(%error, %src, "sending a dns response failed");
            }
            state
                .metrics()
                .record(Zone::Cluster, outcome, start.elapsed());
            continue;
        }
        normal.spawn(request.to_vec(), src, start);
    }
}

// === impl NormalPath ===

impl NormalPath {
    fn spawn(&self, message: Vec<u8>, src: SocketAddr, start: Instant) {
        let this = self.clone();
        let cancel = self.cancel.clone();
        self.tasks.spawn_on(
            async move {
                tokio::select! {
                    () = cancel.cancelled() => {}
                    () = this.answer(message, src, start) => {}
                }
            },
            &self.runtime,
        );
    }

    async fn answer(self, message: Vec<u8>, src: SocketAddr, start: Instant) {
        let state = &self.handler.state;
        let Ok(header) = Header::read(&mut BinDecoder::new(&message)) else {
            return;
        };
        let responder = UdpResponder::default();
        let encoded = responder.encoded.clone();
        let request = match Request::from_bytes(message, src, Protocol::Udp) {
            Ok(request) => request,
            Err(error) => {
                tracing::debug!(%error, %src, "malformed dns request");
                form_error(&header.metadata, responder).await;
                self.send(&encoded, src).await;
                state
                    .metrics()
                    .record(Zone::Forward, Outcome::Other, start.elapsed());
                return;
            }
        };
        let handled = self.handler.handle(&request, responder).await;
        if let Some(generation) = handled.cacheable
            && let Some(e) = &*encoded.lock().unwrap_or_else(PoisonError::into_inner)
            && e.complete
        {
            state
                .responses()
                .insert(request.as_slice(), generation, &e.bytes, handled.outcome);
        }
        self.send(&encoded, src).await;
        state
            .metrics()
            .record(handled.zone, handled.outcome, start.elapsed());
    }

    async fn send(&self, encoded: &Mutex<Option<Encoded>>, dst: SocketAddr) {
        let taken = encoded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(e) = taken
            && let Err(error) = send_nonblocking(&self.socket, &e.bytes, dst).await
        {
            tracing::debug!(%error, %dst, "sending a dns response failed");
        }
    }
}

/// hickory-server's answer to a message whose header parses but whose body does not.
async fn form_error(request: &Metadata, mut responder: UdpResponder) {
    let Ok(queries) = Queries::read(&mut BinDecoder::new(&[]), 0) else {
        return;
    };
    let response =
        MessageResponseBuilder::new(&queries, None).error_msg(request, ResponseCode::FormErr);
    if let Err(error) = responder.send_response(response).await {
        tracing::debug!(%error, "sending a FORMERR failed");
    }
}

/// Sends without blocking the runtime; waits briefly for room in a full send buffer.
async fn send_nonblocking(socket: &UdpSocket, bytes: &[u8], dst: SocketAddr) -> Result<(), Errno> {
    let addr = SockaddrStorage::from(dst);
    let mut last = Errno::EAGAIN;
    for _ in 0..SEND_RETRIES {
        match sendto(socket.as_raw_fd(), bytes, &addr, MsgFlags::MSG_DONTWAIT) {
            Ok(_) => return Ok(()),
            Err(e @ (Errno::EAGAIN | Errno::EINTR | Errno::ENOBUFS)) => {
                last = e;
                tokio::time::sleep(SEND_RETRY_EVERY).await;
            }
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

// === impl UdpResponder ===

#[async_trait::async_trait]
impl ResponseHandler for UdpResponder {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        // As hickory-server's `ResponseHandle` encodes for UDP: at most the client's EDNS size
        // (512 without EDNS), truncating with TC; SERVFAIL if the message cannot be encoded.
        let id = response.metadata().id;
        let max = response.edns().map_or(512, |e| e.max_payload());
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(max);
        let (info, complete) = match response.destructive_emit(&mut encoder) {
            Ok(info) => (info, true),
            Err(error) => {
                tracing::error!(%error, "error encoding a dns response");
                bytes.clear();
                let mut encoder = BinEncoder::new(&mut bytes);
                encoder.set_max_size(512);
                let mut metadata = Metadata::new(id, MessageType::Response, OpCode::Query);
                metadata.response_code = ResponseCode::ServFail;
                let header = Header {
                    metadata,
                    counts: HeaderCounts::default(),
                };
                header.emit(&mut encoder)?;
                (ResponseInfo::from(header), false)
            }
        };
        *self.encoded.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(Encoded { bytes, complete });
        Ok(info)
    }
}
