//! PortForward's connections: to a port on the pod's own loopback, made inside the pod's
//! network namespace (never through a host port), one per forwarded connection.

use tokio::net::TcpStream;

use super::{SandboxState, Sandboxes};
use crate::error::{Error, Result};

impl Sandboxes {
    /// Connect to `port` inside pod `id`'s network namespace (the host's for a
    /// host-network pod). NotFound for an unknown pod, FailedPrecondition for one that is
    /// not ready (its namespace is gone).
    pub async fn dial(&self, id: &str, port: u16) -> Result<TcpStream> {
        let record = self.get(id)?;
        if record.state != SandboxState::Ready {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {} is not ready",
                record.id
            )));
        }
        let netns = if record.config.host_network() {
            None
        } else {
            Some(record.netns.clone().ok_or_else(|| {
                Error::FailedPrecondition(format!(
                    "pod sandbox {} has no network namespace",
                    record.id
                ))
            })?)
        };
        Ok(network::dial_loopback(netns.as_deref(), port).await?)
    }
}
