//! The protocol-neutral pipes between a wire protocol (SPDY, WebSocket) and what is
//! streamed (an exec's stdio, an attach, a port's connection).
//!
//! A wire protocol's session gives each logical stream the client opened an [`Inbound`]
//! (bytes from the client, `None` once the client half-closed it) and an [`Outbound`]
//! (bytes to the client, closed once). Outbound frames of every stream of a session go
//! through one queue to the session's writer task, which frames them for its wire: a SPDY
//! DATA frame on the stream's id, a WebSocket message on the channel's number. The queue is
//! bounded, so a slow client slows the producer instead of growing memory.

use std::io;

use bytes::Bytes;
use tokio::sync::mpsc;

/// Frames queued per session before a sender waits.
pub const SESSION_QUEUE: usize = 64;
/// Chunks queued per inbound stream before the session's reader waits.
pub const STREAM_QUEUE: usize = 16;

/// What a session's writer task receives.
#[derive(Debug)]
pub enum Frame {
    /// Bytes for the stream `key` (a SPDY stream id, a WebSocket channel).
    Data(u32, Bytes),
    /// The stream `key` is finished in the server's direction (SPDY FIN, WebSocket v5
    /// close signal).
    Close(u32),
}

/// Bytes the client sends on one stream.
#[derive(Debug)]
pub struct Inbound {
    rx: mpsc::Receiver<Bytes>,
}

impl Inbound {
    /// A stream and the sender its session's reader feeds it through.
    pub fn new() -> (mpsc::Sender<Bytes>, Inbound) {
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        (tx, Inbound { rx })
    }

    /// The next chunk; `None` once the client closed its side or the session ended.
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.rx.recv().await
    }
}

/// Bytes the server sends on one stream.
#[derive(Debug)]
pub struct Outbound {
    key: u32,
    tx: mpsc::Sender<Frame>,
    closed: bool,
}

impl Outbound {
    pub fn new(key: u32, tx: mpsc::Sender<Frame>) -> Outbound {
        Outbound {
            key,
            tx,
            closed: false,
        }
    }

    pub fn key(&self) -> u32 {
        self.key
    }

    /// Queue `data` for the client; an error once the session is gone.
    pub async fn send(&mut self, data: Bytes) -> io::Result<()> {
        if self.closed {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "stream closed"));
        }
        if data.is_empty() {
            return Ok(());
        }
        self.tx
            .send(Frame::Data(self.key, data))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "session closed"))
    }

    /// Resolves once the session's writer has gone (the client disconnected or the session
    /// ended): what streams to this client can stop.
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    /// Finish the stream in the server's direction; idempotent.
    pub async fn close(&mut self) {
        if !std::mem::replace(&mut self.closed, true) {
            let _ = self.tx.send(Frame::Close(self.key)).await;
        }
    }
}

impl Drop for Outbound {
    /// A stream dropped without `close` is closed too (best effort: a full queue means the
    /// session is stalled, and it ends with the session anyway).
    fn drop(&mut self) {
        if !self.closed {
            let _ = self.tx.try_send(Frame::Close(self.key));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_keep_their_key_and_close_once() {
        let (tx, mut rx) = mpsc::channel(SESSION_QUEUE);
        let mut out = Outbound::new(5, tx);
        out.send(Bytes::from_static(b"hi")).await.unwrap();
        out.send(Bytes::new()).await.unwrap();
        out.close().await;
        out.close().await;
        assert!(out.send(Bytes::from_static(b"late")).await.is_err());
        drop(out);
        assert!(matches!(rx.recv().await, Some(Frame::Data(5, b)) if &b[..] == b"hi"));
        assert!(matches!(rx.recv().await, Some(Frame::Close(5))));
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_dropped_stream_is_closed() {
        let (tx, mut rx) = mpsc::channel(SESSION_QUEUE);
        drop(Outbound::new(3, tx));
        assert!(matches!(rx.recv().await, Some(Frame::Close(3))));
    }

    #[tokio::test]
    async fn inbound_ends_when_its_sender_goes() {
        let (tx, mut inbound) = Inbound::new();
        tx.send(Bytes::from_static(b"x")).await.unwrap();
        drop(tx);
        assert_eq!(inbound.recv().await.as_deref(), Some(&b"x"[..]));
        assert!(inbound.recv().await.is_none());
    }
}
