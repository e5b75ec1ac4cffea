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
use std::path::PathBuf;
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
    /// Serve HTTPS with this PEM certificate chain (and `tls_key_file`); the URLs are
    /// `https://` then.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        StreamingConfig {
            address: "127.0.0.1".into(),
            port: 0,
            tls_cert_file: None,
            tls_key_file: None,
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
        let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
        let tls = match (&config.tls_cert_file, &config.tls_key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(
                http::tls_acceptor(cert, key)
                    .map_err(|e| invalid(format!("streaming.tls_cert_file/tls_key_file: {e}")))?,
            ),
            _ => {
                return Err(invalid(
                    "streaming.tls_cert_file and streaming.tls_key_file go together".into(),
                ))
            }
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
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
            tls,
        ));
        Ok(StreamingServer {
            state,
            base_url: format!("{scheme}://{local_addr}"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A runtime with nothing in it.
    struct Nothing;

    impl Backend for Nothing {
        fn exec<'a>(
            &'a self,
            id: &'a str,
            _: &'a [String],
            _: StreamRequest,
        ) -> BoxFuture<'a, runtime::Result<(StreamFds, ExecSession)>> {
            Box::pin(async move {
                Err(runtime::Error::NotFound {
                    what: format!("container {id}"),
                })
            })
        }

        fn attach<'a>(
            &'a self,
            id: &'a str,
            _: StreamRequest,
        ) -> BoxFuture<'a, runtime::Result<(StreamFds, AttachSession)>> {
            Box::pin(async move {
                Err(runtime::Error::NotFound {
                    what: format!("container {id}"),
                })
            })
        }

        fn dial<'a>(
            &'a self,
            id: &'a str,
            _: u16,
        ) -> BoxFuture<'a, runtime::Result<tokio::net::TcpStream>> {
            Box::pin(async move {
                Err(runtime::Error::NotFound {
                    what: format!("pod {id}"),
                })
            })
        }
    }

    fn exec_request() -> Pending {
        Pending::Exec(proto::ExecRequest {
            container_id: "c".into(),
            cmd: vec!["true".into()],
            stdout: true,
            ..Default::default()
        })
    }

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).await.unwrap();
        reply
    }

    #[tokio::test]
    async fn urls_are_single_use_and_need_an_upgrade() {
        let server = StreamingServer::start(&StreamingConfig::default(), Arc::new(Nothing))
            .await
            .unwrap();
        let addr = server.local_addr();
        assert!(addr.ip().is_loopback());
        let url = server.url(exec_request()).unwrap();
        let path = url.strip_prefix(&format!("http://{addr}")).unwrap();
        assert!(path.starts_with("/exec/"), "{url}");
        // Without an upgrade: refused, and the token is spent.
        let reply = get(addr, path).await;
        assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
        let reply = get(addr, path).await;
        assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
        // A token used under another method is spent too.
        let url = server.url(exec_request()).unwrap();
        let token = url.rsplit('/').next().unwrap();
        let reply = get(addr, &format!("/attach/{token}")).await;
        assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
        let reply = get(addr, &format!("/exec/{token}")).await;
        assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
        let reply = get(addr, "/").await;
        assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
        server.stop();
    }

    #[tokio::test]
    async fn half_a_tls_identity_is_refused_by_name() {
        let config = StreamingConfig {
            tls_cert_file: Some("/nonexistent.pem".into()),
            ..Default::default()
        };
        let e = StreamingServer::start(&config, Arc::new(Nothing))
            .await
            .err()
            .unwrap();
        assert!(e.to_string().contains("tls_key_file"), "{e}");
    }

    #[tokio::test]
    async fn serves_https_with_a_configured_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let made = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1"])
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output();
        if !made.is_ok_and(|o| o.status.success()) {
            eprintln!("skipping serves_https_with_a_configured_certificate: no openssl to make a certificate");
            return;
        }
        let config = StreamingConfig {
            tls_cert_file: Some(cert.clone()),
            tls_key_file: Some(key),
            ..Default::default()
        };
        let server = StreamingServer::start(&config, Arc::new(Nothing))
            .await
            .unwrap();
        let url = server.url(exec_request()).unwrap();
        assert!(url.starts_with("https://127.0.0.1:"), "{url}");

        use rustls_pki_types::pem::PemObject;
        use tokio_rustls::rustls;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls_pki_types::CertificateDer::from_pem_file(&cert).unwrap())
            .unwrap();
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(server.local_addr())
            .await
            .unwrap();
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(name, tcp)
            .await
            .unwrap();
        tls.write_all(b"GET /exec/nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut reply = Vec::new();
        let _ = tls.read_to_end(&mut reply).await;
        let reply = String::from_utf8_lossy(&reply);
        assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
        server.stop();
    }
}
