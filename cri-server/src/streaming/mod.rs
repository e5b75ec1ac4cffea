//! The streaming server: exec, attach and port-forward over the single-use URLs that the
//! CRI calls `Exec`, `Attach` and `PortForward` return, spoken in SPDY/3.1 or WebSocket.
//!
//! - [`tokens`]: the URLs' single-use, expiring tokens;
//! - [`http`]: the HTTP/1.1 server (hyper) with upgrades, shared with `/metrics`;
//! - [`server`]: the routes and the SPDY and WebSocket upgrades;
//! - [`spdy`], [`websocket`]: the two wires, both ending in [`channel`]'s streams;
//! - [`remotecommand`], [`portforward`]: exec/attach and port-forward on those streams,
//!   whatever the wire; [`fdio`] moves the bytes of the descriptors the shim handed over.

pub mod channel;
pub mod fdio;
pub mod http;
pub mod portforward;
pub mod remotecommand;
pub mod server;
pub mod spdy;
pub mod status;
pub mod tokens;
pub mod websocket;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use runtime::container::{AttachSession, ExecSession, StreamFds, StreamRequest};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use self::tokens::{Full, Pending, Tokens};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the streaming server asks of the runtime.
pub trait Backend: Send + Sync + 'static {
    /// Start `cmd` in the running container `container_id`.
    fn exec<'a>(
        &'a self,
        container_id: &'a str,
        cmd: &'a [String],
        want: StreamRequest,
    ) -> BoxFuture<'a, runtime::Result<(StreamFds, ExecSession)>>;

    /// Attach to the running container `container_id`.
    fn attach<'a>(
        &'a self,
        container_id: &'a str,
        want: StreamRequest,
    ) -> BoxFuture<'a, runtime::Result<(StreamFds, AttachSession)>>;

    /// A connection to `port` on the pod's loopback.
    fn dial<'a>(
        &'a self,
        pod_id: &'a str,
        port: u16,
    ) -> BoxFuture<'a, runtime::Result<tokio::net::TcpStream>>;
}

/// `[streaming]`: where the server listens. The defaults need no configuration: loopback
/// and a free port, which is where kubelet (on the same node) connects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamingConfig {
    /// The address to listen on (an IP).
    pub address: String,
    /// 0: any free port.
    pub port: u16,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        StreamingConfig {
            address: "127.0.0.1".into(),
            port: 0,
        }
    }
}

/// The running streaming server.
pub struct StreamingServer {
    state: Arc<server::State>,
    base_url: String,
    local_addr: SocketAddr,
    stop: CancellationToken,
}

impl StreamingServer {
    /// Bind and start serving.
    pub async fn start(
        config: &StreamingConfig,
        backend: Arc<dyn Backend>,
    ) -> std::io::Result<StreamingServer> {
        let ip: std::net::IpAddr = config.address.trim().parse().map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("streaming.address {:?}: {e}", config.address),
            )
        })?;
        let listener = tokio::net::TcpListener::bind((ip, config.port)).await?;
        let local_addr = listener.local_addr()?;
        let state = Arc::new(server::State {
            tokens: Tokens::default(),
            backend,
        });
        let stop = CancellationToken::new();
        let handler_state = state.clone();
        tokio::spawn(http::serve(
            listener,
            move |req| server::handle(handler_state.clone(), req),
            stop.clone(),
            http::Limits::default(),
        ));
        Ok(StreamingServer {
            state,
            base_url: format!("http://{local_addr}"),
            local_addr,
            stop,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A single-use URL for `request`.
    pub fn url(&self, request: Pending) -> Result<String, Full> {
        let method = request.method();
        let token = self.state.tokens.insert(request)?;
        Ok(format!("{}/{method}/{token}", self.base_url))
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }
}
