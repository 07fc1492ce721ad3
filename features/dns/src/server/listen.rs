//! Listening sockets: N UDP sockets sharing one address with SO_REUSEPORT (the kernel spreads
//! datagrams over them, one receive loop per core), and one TCP listener.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, bind, listen, setsockopt, socket,
    sockopt,
};

use crate::Error;

fn new_socket(addr: SocketAddr, ty: SockType) -> Result<OwnedFd, Error> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let err = |what: &str, e: nix::Error| Error::Listen(addr, format!("{what}: {e}"));
    let fd = socket(
        family,
        ty,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| err("socket", e))?;
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

/// `count` UDP sockets on `addr`. With port 0, the first picks a port and the rest share it.
/// Returns the sockets and the bound address.
pub fn udp(
    addr: SocketAddr,
    count: usize,
) -> Result<(Vec<tokio::net::UdpSocket>, SocketAddr), Error> {
    let mut addr = addr;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let fd = new_socket(addr, SockType::Datagram)?;
        let std_sock = std::net::UdpSocket::from(fd);
        addr = std_sock
            .local_addr()
            .map_err(|e| Error::Listen(addr, e.to_string()))?;
        let sock = tokio::net::UdpSocket::from_std(std_sock)
            .map_err(|e| Error::Listen(addr, e.to_string()))?;
        out.push(sock);
    }
    Ok((out, addr))
}

/// A TCP listener on `addr`.
pub fn tcp(addr: SocketAddr) -> Result<tokio::net::TcpListener, Error> {
    let fd = new_socket(addr, SockType::Stream)?;
    listen(&fd, Backlog::MAXCONN).map_err(|e| Error::Listen(addr, format!("listen: {e}")))?;
    let std_listener = std::net::TcpListener::from(fd);
    tokio::net::TcpListener::from_std(std_listener).map_err(|e| Error::Listen(addr, e.to_string()))
}
