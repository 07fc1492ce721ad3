//! The API forwarder: a TCP relay listening inside the underlay namespace on
//! the router address (the apiserver's advertised address) that connects to
//! the apiserver on 127.0.0.1 in the host namespace. This is how nodes and
//! pods reach the API without the lab touching the host's network.

use std::net::SocketAddr;

use anyhow::Result;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::netns;

/// Starts the forwarder task; abort the handle to stop it.
pub fn start(netns_name: &str, listen: SocketAddr, target: SocketAddr) -> Result<JoinHandle<()>> {
    let listener = TcpListener::from_std(netns::bind_tcp(netns_name, listen)?)?;
    tracing::info!(%listen, %target, netns = netns_name, "api forwarder listening");
    Ok(tokio::spawn(async move {
        loop {
            let (inbound, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(error) => {
                    tracing::warn!(%error, "forwarder accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            tokio::spawn(async move {
                if let Err(error) = relay(inbound, target).await {
                    tracing::debug!(%error, %peer, "forwarded connection ended");
                }
            });
        }
    }))
}

async fn relay(mut inbound: TcpStream, target: SocketAddr) -> Result<()> {
    let mut outbound = TcpStream::connect(target).await?;
    inbound.set_nodelay(true)?;
    outbound.set_nodelay(true)?;
    tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await?;
    Ok(())
}
