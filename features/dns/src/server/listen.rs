//! Listening sockets: N UDP sockets sharing one address with SO_REUSEPORT (the kernel spreads
//! datagrams over them, one receive thread per core), and one TCP listener.
//!
//! The UDP sockets are blocking with a short receive timeout (their threads check for shutdown
//! that often) and get large receive and send buffers: the default ~200 KiB receive buffer holds
//! only a few hundred queries, so a burst that arrives while the node's cores are busy elsewhere
//! overflows it and the kernel drops queries (`nstat` `UdpRcvbufErrors`).

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, bind, listen, setsockopt, socket,
    sockopt,
};

use crate::Error;

/// Receive and send buffer of each UDP socket (the kernel doubles it for bookkeeping).
pub const UDP_BUFFER: usize = 4 << 20;
/// How often an idle UDP receive thread wakes to check whether the server is stopping.
pub const UDP_RECV_TIMEOUT: Duration = Duration::from_millis(200);

fn new_socket(addr: SocketAddr, ty: SockType, flags: SockFlag) -> Result<OwnedFd, Error> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let err = |what: &str, e: nix::Error| Error::Listen(addr, format!("{what}: {e}"));
    let fd =
        socket(family, ty, flags | SockFlag::SOCK_CLOEXEC, None).map_err(|e| err("socket", e))?;
    setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(|e| err("SO_REUSEADDR", e))?;
    setsockopt(&fd, sockopt::ReusePort, &true).map_err(|e| err("SO_REUSEPORT", e))?;
    match addr {
        // Bind even if the address is not (yet) on an interface.
        SocketAddr::V4(_) => setsockopt(&fd, sockopt::IpFreebind, &true),
        SocketAddr::V6(_) => setsockopt(&fd, sockopt::Ipv6V6Only, &true),
    }
    .map_err(|e| err("setsockopt", e))?;
    bind(fd.as_raw_fd(), &SockaddrStorage::from(addr)).map_err(|e| err("bind", e))?;
    Ok(fd)
}

/// Sets a socket buffer to `bytes`: past `net.core.[rw]mem_max` when the process may
/// (CAP_NET_ADMIN), else as far as the limit allows.
fn set_buffer(fd: &OwnedFd, bytes: usize, receive: bool) {
    let forced = if receive {
        setsockopt(fd, sockopt::RcvBufForce, &bytes)
    } else {
        setsockopt(fd, sockopt::SndBufForce, &bytes)
    };
    if let Err(error) = forced {
        tracing::debug!(%error, receive, "cannot force the dns socket buffer size");
        let capped = if receive {
            setsockopt(fd, sockopt::RcvBuf, &bytes)
        } else {
            setsockopt(fd, sockopt::SndBuf, &bytes)
        };
        if let Err(error) = capped {
            tracing::debug!(%error, receive, "cannot size the dns socket buffer");
        }
    }
}

/// `count` blocking UDP sockets on `addr`, with `buffer`-byte receive and send buffers and
/// [`UDP_RECV_TIMEOUT`]. With port 0, the first picks a port and the rest share it. Returns the
/// sockets and the bound address.
pub fn udp(
    addr: SocketAddr,
    count: usize,
    buffer: usize,
) -> Result<(Vec<std::net::UdpSocket>, SocketAddr), Error> {
    let mut addr = addr;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let fd = new_socket(addr, SockType::Datagram, SockFlag::empty())?;
        set_buffer(&fd, buffer, true);
        set_buffer(&fd, buffer, false);
        let sock = std::net::UdpSocket::from(fd);
        addr = sock
            .local_addr()
            .map_err(|e| Error::Listen(addr, e.to_string()))?;
        sock.set_read_timeout(Some(UDP_RECV_TIMEOUT))
            .map_err(|e| Error::Listen(addr, e.to_string()))?;
        out.push(sock);
    }
    Ok((out, addr))
}

/// A TCP listener on `addr`.
pub fn tcp(addr: SocketAddr) -> Result<tokio::net::TcpListener, Error> {
    let fd = new_socket(addr, SockType::Stream, SockFlag::SOCK_NONBLOCK)?;
    listen(&fd, Backlog::MAXCONN).map_err(|e| Error::Listen(addr, format!("listen: {e}")))?;
    let std_listener = std::net::TcpListener::from(fd);
    tokio::net::TcpListener::from_std(std_listener).map_err(|e| Error::Listen(addr, e.to_string()))
}
