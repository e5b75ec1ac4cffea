//! The daemon's side of the streaming server: starting it with this service as its
//! runtime, and the URLs the Exec, Attach and PortForward calls hand out.

use std::sync::{Arc, Weak};

use ::runtime::container::{AttachSession, ExecSession, StreamFds, StreamRequest};
use cri_server::streaming::tokens::Pending;
use cri_server::streaming::{Backend, BoxFuture, StreamingConfig, StreamingServer};

use super::{CriService, Inner};
use crate::status::CriError;

/// The runtime as the streaming server sees it. Weak, because the server lives inside
/// the service it calls back into.
struct StreamBackend(Weak<Inner>);

impl StreamBackend {
    fn inner(&self) -> ::runtime::Result<Arc<Inner>> {
        self.0
            .upgrade()
            .ok_or_else(|| ::runtime::Error::Unavailable("corrald is shutting down".into()))
    }
}

impl Backend for StreamBackend {
    fn exec<'a>(
        &'a self,
        container_id: &'a str,
        cmd: &'a [String],
        want: StreamRequest,
    ) -> BoxFuture<'a, ::runtime::Result<(StreamFds, ExecSession)>> {
        Box::pin(async move {
            let inner = self.inner()?;
            inner.containers.exec_stream(container_id, cmd, want).await
        })
    }

    fn attach<'a>(
        &'a self,
        container_id: &'a str,
        want: StreamRequest,
    ) -> BoxFuture<'a, ::runtime::Result<(StreamFds, AttachSession)>> {
        Box::pin(async move {
            let inner = self.inner()?;
            inner.containers.attach(container_id, want).await
        })
    }

    fn dial<'a>(
        &'a self,
        pod_id: &'a str,
        port: u16,
    ) -> BoxFuture<'a, ::runtime::Result<tokio::net::TcpStream>> {
        Box::pin(async move {
            let inner = self.inner()?;
            inner.sandboxes.dial(pod_id, port).await
        })
    }
}

impl CriService {
    /// Start the streaming server; its address is in the URLs from then on.
    pub async fn start_streaming(
        &self,
        config: &StreamingConfig,
    ) -> std::io::Result<std::net::SocketAddr> {
        let backend = Arc::new(StreamBackend(Arc::downgrade(&self.inner)));
        let server = StreamingServer::start(config, backend).await?;
        let addr = server.local_addr();
        if let Err(server) = self.inner.streaming.set(server) {
            server.stop();
        }
        Ok(addr)
    }

    pub fn stop_streaming(&self) {
        if let Some(s) = self.inner.streaming.get() {
            s.stop();
        }
    }

    /// A URL for `request`.
    pub(crate) fn stream_url(&self, request: Pending) -> Result<String, CriError> {
        let server = self.inner.streaming.get().ok_or_else(|| {
            CriError::Runtime(::runtime::Error::Unavailable(
                "the streaming server is not running".into(),
            ))
        })?;
        server
            .url(request)
            .map_err(|e| CriError::Runtime(::runtime::Error::Unavailable(e.to_string())))
    }

    /// The full id of a running container (NotFound, or FailedPrecondition when it is
    /// not running).
    pub(crate) fn running_container(&self, id: &str) -> Result<String, CriError> {
        let record = self.containers().get(id)?;
        if !record.is_running() {
            return Err(CriError::Runtime(::runtime::Error::FailedPrecondition(
                format!("container {} is not running", record.id),
            )));
        }
        Ok(record.id)
    }
}
