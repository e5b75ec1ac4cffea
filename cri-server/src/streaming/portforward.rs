//! Port-forward: each forwarded connection is a pair of streams from the client, data
//! and error, for one port of the pod; the data goes to a connection made to that port on
//! the pod's own loopback, inside its network namespace. Several ports and several
//! connections per port run at once, each on its own task; half-closes pass through (the
//! client's end of data shuts down the write side towards the pod, and the pod's end of
//! data finishes the data stream).

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::channel::{Inbound, Outbound};
use super::Backend;

/// Bytes read from the pod's connection at once.
const CHUNK: usize = 32 * 1024;

/// Forward one connection: `data_in`/`data_out` are the client's data stream, `error`
/// gets the reason when the pod's port cannot be reached or the copy fails.
pub async fn forward(
    backend: Arc<dyn Backend>,
    pod_id: String,
    port: u16,
    mut data_in: Inbound,
    mut data_out: Outbound,
    mut error: Outbound,
) {
    let span = tracing::debug_span!("port_forward", pod = %pod_id, port);
    let _e = span.enter();
    let conn = match backend.dial(&pod_id, port).await {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("error forwarding port {port} to pod {pod_id}: {e}");
            tracing::debug!("{msg}");
            let _ = error.send(msg.into_bytes().into()).await;
            error.close().await;
            data_out.close().await;
            return;
        }
    };
    let _ = conn.set_nodelay(true);
    let (mut rd, mut wr) = conn.into_split();
    let to_pod = async {
        while let Some(chunk) = data_in.recv().await {
            if wr.write_all(&chunk).await.is_err() {
                return;
            }
        }
        // The client closed its side: so does the connection to the pod, for writing.
        let _ = wr.shutdown().await;
    };
    let from_pod = async {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    if data_out
                        .send(bytes::Bytes::copy_from_slice(&buf[..n]))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "reading from the pod");
                    break;
                }
            }
        }
        data_out.close().await;
    };
    tokio::select! {
        _ = async { tokio::join!(to_pod, from_pod) } => {}
        () = error.closed() => {}
    }
    error.close().await;
}

/// A port as the client names it: 1 to 65535.
pub fn parse_port(text: &str) -> Option<u16> {
    text.trim().parse::<u16>().ok().filter(|p| *p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_1_to_65535() {
        assert_eq!(parse_port("80"), Some(80));
        assert_eq!(parse_port("65535"), Some(65535));
        assert_eq!(parse_port("0"), None);
        assert_eq!(parse_port("65536"), None);
        assert_eq!(parse_port("-1"), None);
        assert_eq!(parse_port("http"), None);
    }
}
