//! Connections into a pod's network namespace, for port-forward: the socket is made by a
//! thread that entered the namespace (sockets belong to the namespace they were created
//! in), then handed to the async side. Nothing is published on the host: the connection
//! goes to the pod's own loopback, as kubelet's port-forward does.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::netns::run_in_netns_async;

/// How long a connect to the pod's loopback may take (a full accept backlog).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connect to `port` on the loopback of the namespace pinned at `netns` (IPv4 first, then
/// IPv6, as a dial of "localhost" does); `None` for the host's own (a host-network pod).
pub async fn dial_loopback(netns: Option<&Path>, port: u16) -> Result<tokio::net::TcpStream> {
    let connected = match netns {
        Some(ns) => run_in_netns_async(ns, move || connect(port)).await?,
        None => tokio::task::spawn_blocking(move || connect(port))
            .await
            .map_err(|_| Error::Internal("dial task panicked".into()))?,
    };
    let stream = connected.map_err(Error::io(format!("connect to localhost:{port}")))?;
    stream
        .set_nonblocking(true)
        .map_err(Error::io("set the connection non-blocking"))?;
    tokio::net::TcpStream::from_std(stream).map_err(Error::io("register the connection"))
}

fn connect(port: u16) -> io::Result<TcpStream> {
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT) {
        Ok(s) => Ok(s),
        Err(e4) => {
            let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
            // Report the IPv4 error unless IPv6 got further than "nothing there".
            TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT).map_err(|e6| {
                if e6.kind() == io::ErrorKind::ConnectionRefused {
                    e4
                } else {
                    e6
                }
            })
        }
    }
}
