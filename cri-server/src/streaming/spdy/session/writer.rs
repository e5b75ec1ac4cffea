//! The session's writer task: owns the connection's write half and the outgoing header
//! compression; serves the control queue before the data queue.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::debug;

use super::{Control, Shared, MAX_DATA_FRAME, WRITE_BATCH};
use crate::streaming::channel::Frame;
use crate::streaming::spdy::frame::{self, goaway, status, Frame as Wire};
use crate::streaming::spdy::headers::{HeaderEncoder, Headers};

pub(super) struct Writer<W> {
    pub(super) session: u64,
    pub(super) io: W,
    pub(super) control: mpsc::Receiver<Control>,
    pub(super) data: mpsc::Receiver<Frame>,
    pub(super) shared: Arc<Shared>,
    pub(super) headers: HeaderEncoder,
    pub(super) out: BytesMut,
    /// Dropped when the writer ends, which stops the reader.
    pub(super) _stop: watch::Sender<()>,
}

enum Item {
    Control(Control),
    Data(Frame),
}

/// How the writer ends: the GOAWAY status to send (none after a write error) and whom to
/// tell.
struct End {
    goaway: Option<u32>,
    done: Option<oneshot::Sender<()>>,
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    pub(super) async fn run(mut self) {
        let end = self.serve().await;
        if let Some(status) = end.goaway {
            let last_good_stream_id = self.shared.last_good.load(Ordering::Relaxed);
            let goaway = Wire::GoAway {
                last_good_stream_id,
                status,
            };
            self.encode(&goaway);
            let _ = self.write_out().await;
            let _ = self.io.shutdown().await;
        }
        debug!(session = self.session, "spdy: writer ended");
        // The queues go before `close` returns, so a send after it fails.
        drop(self);
        if let Some(done) = end.done {
            let _ = done.send(());
        }
    }

    async fn serve(&mut self) -> End {
        let mut control_open = true;
        loop {
            let first = tokio::select! {
                biased;
                c = self.control.recv(), if control_open => match c {
                    Some(c) => Item::Control(c),
                    None => {
                        control_open = false;
                        continue;
                    }
                },
                d = self.data.recv() => match d {
                    Some(d) => Item::Data(d),
                    // Session and every stream dropped.
                    None => return End { goaway: Some(goaway::OK), done: None },
                },
            };
            let mut next = Some(first);
            while let Some(item) = next.take() {
                match item {
                    Item::Control(Control::Close { status, done }) => {
                        // What is queued now goes out first; later sends find the queue gone.
                        while let Ok(frame) = self.data.try_recv() {
                            self.data_frame(frame);
                        }
                        if let Err(e) = self.write_out().await {
                            debug!(session = self.session, error = %e, "spdy: write failed");
                            return End { goaway: None, done };
                        }
                        return End {
                            goaway: Some(status),
                            done,
                        };
                    }
                    Item::Control(c) => self.control_frame(c),
                    Item::Data(frame) => self.data_frame(frame),
                }
                if self.out.len() < WRITE_BATCH {
                    next = match self.control.try_recv() {
                        Ok(c) => Some(Item::Control(c)),
                        Err(_) => self.data.try_recv().ok().map(Item::Data),
                    };
                }
            }
            if let Err(e) = self.write_out().await {
                debug!(session = self.session, error = %e, "spdy: write failed");
                return End {
                    goaway: None,
                    done: None,
                };
            }
        }
    }

    async fn write_out(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.io.write_all(&self.out).await?;
            self.out.clear();
        }
        self.io.flush().await
    }

    fn encode(&mut self, frame: &Wire) {
        // Only oversized payloads fail, and the writer makes none (data is split, header
        // blocks are tiny).
        if let Err(e) = frame.encode(&mut self.out) {
            debug!(session = self.session, error = %e, "spdy: frame not encoded");
        }
    }

    fn control_frame(&mut self, control: Control) {
        let frame = match control {
            Control::SynReply(stream_id) => {
                // A stream reset in the meantime gets no reply.
                if !self.shared.streams().contains_key(&stream_id) {
                    return;
                }
                match self.headers.encode(&Headers::new()) {
                    Ok(header_block) => Wire::SynReply {
                        stream_id,
                        flags: 0,
                        header_block,
                    },
                    Err(e) => {
                        debug!(session = self.session, error = %e, "spdy: SYN_REPLY headers");
                        Wire::RstStream {
                            stream_id,
                            status: status::INTERNAL_ERROR,
                        }
                    }
                }
            }
            Control::Rst { stream_id, status } => Wire::RstStream { stream_id, status },
            Control::Ping(id) => Wire::Ping { id },
            Control::WindowUpdate { stream_id, delta } => Wire::WindowUpdate { stream_id, delta },
            Control::Close { .. } => return,
        };
        self.encode(&frame);
    }

    fn data_frame(&mut self, frame: Frame) {
        match frame {
            Frame::Data(stream_id, data) => {
                let open = matches!(
                    self.shared.streams().get(&stream_id),
                    Some(state) if !state.local_closed
                );
                // Data for a stream reset since is dropped, as the spec asks.
                if !open {
                    return;
                }
                let mut at = 0;
                while at < data.len() {
                    let end = (at + MAX_DATA_FRAME).min(data.len());
                    let frame = Wire::Data {
                        stream_id,
                        flags: 0,
                        data: data.slice(at..end),
                    };
                    self.encode(&frame);
                    at = end;
                }
            }
            Frame::Close(stream_id) => {
                let send_fin = {
                    let mut streams = self.shared.streams();
                    let Some(state) = streams.get_mut(&stream_id) else {
                        return;
                    };
                    let send_fin = !state.local_closed;
                    state.local_closed = true;
                    if state.remote_closed {
                        streams.remove(&stream_id);
                    }
                    send_fin
                };
                if send_fin {
                    self.encode(&Wire::Data {
                        stream_id,
                        flags: frame::FLAG_FIN,
                        data: Bytes::new(),
                    });
                }
            }
        }
    }
}
