//! The session's reader task: decodes the client's frames and routes them.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, watch};
use tracing::debug;

use super::{Control, NewStream, Shared, StreamState, MAX_STREAMS, WINDOW_UPDATE_EVERY};
use crate::streaming::channel::{Frame, Inbound};
use crate::streaming::spdy::frame::{self, goaway, status, Decoder, Frame as Wire};
use crate::streaming::spdy::headers::{HeaderDecoder, Headers};

/// Why the reader stopped.
#[derive(Debug)]
enum Stop {
    Eof,
    GoAway,
    /// Framing or header state lost: GOAWAY PROTOCOL_ERROR.
    Protocol(String),
    /// The writer is gone; nothing can be answered any more.
    WriterGone,
}

pub(super) struct Reader {
    pub(super) session: u64,
    pub(super) shared: Arc<Shared>,
    pub(super) control: mpsc::Sender<Control>,
    /// Weak so that the session ends once its users are gone although the reader lives on.
    pub(super) data: mpsc::WeakSender<Frame>,
    pub(super) incoming: mpsc::Sender<NewStream>,
    pub(super) headers: HeaderDecoder,
    /// Highest stream id the client opened.
    pub(super) last_id: u32,
    pub(super) session_unacked: u32,
}

impl Reader {
    pub(super) async fn run<R: AsyncRead + Unpin>(mut self, rd: R, mut stop: watch::Receiver<()>) {
        let session = self.session;
        let shared = self.shared.clone();
        let control = self.control.clone();
        let why = tokio::select! {
            why = self.read(rd) => why,
            _ = stop.changed() => Stop::WriterGone,
        };
        drop(self);
        debug!(session, reason = ?why, "spdy: reader ended");
        if let Stop::Protocol(error) = why {
            debug!(session, %error, "spdy: protocol error, going away");
            let close = Control::Close {
                status: goaway::PROTOCOL_ERROR,
                done: None,
            };
            tokio::select! {
                _ = control.send(close) => {}
                _ = stop.changed() => {}
            }
        }
        // Every Inbound ends; the streams' outbound side lives on until the writer ends.
        for state in shared.streams().values_mut() {
            state.inbound = None;
        }
    }

    async fn read<R: AsyncRead + Unpin>(&mut self, mut rd: R) -> Stop {
        let decoder = Decoder::default();
        let mut buf = BytesMut::with_capacity(64 * 1024);
        loop {
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(frame)) => {
                        if let Err(stop) = self.handle(frame).await {
                            return stop;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return Stop::Protocol(e.to_string()),
                }
            }
            if buf.capacity() - buf.len() < 8 * 1024 {
                buf.reserve(64 * 1024);
            }
            match rd.read_buf(&mut buf).await {
                Ok(0) => return Stop::Eof,
                Ok(_) => {}
                Err(e) => {
                    debug!(session = self.session, error = %e, "spdy: read failed");
                    return Stop::Eof;
                }
            }
        }
    }

    async fn send(&self, control: Control) -> Result<(), Stop> {
        self.control
            .send(control)
            .await
            .map_err(|_| Stop::WriterGone)
    }

    async fn rst(&self, stream_id: u32, status: u32) -> Result<(), Stop> {
        debug!(
            session = self.session,
            stream = stream_id,
            status,
            "spdy: resetting stream"
        );
        self.send(Control::Rst { stream_id, status }).await
    }

    /// Decode a header block; `Err` only when the zlib state is lost.
    fn decode_headers(&mut self, block: &[u8]) -> Result<Result<Headers, String>, Stop> {
        match self.headers.decode(block) {
            Ok(headers) => Ok(Ok(headers)),
            Err(e) if e.is_fatal() => Err(Stop::Protocol(e.to_string())),
            Err(e) => Ok(Err(e.to_string())),
        }
    }

    async fn handle(&mut self, frame: Wire) -> Result<(), Stop> {
        match frame {
            Wire::SynStream {
                stream_id,
                flags,
                header_block,
                ..
            } => self.syn_stream(stream_id, flags, &header_block).await,
            Wire::Data {
                stream_id,
                flags,
                data,
            } => self.data(stream_id, flags, data).await,
            Wire::RstStream { stream_id, status } => {
                debug!(
                    session = self.session,
                    stream = stream_id,
                    status,
                    "spdy: client reset"
                );
                // Dropping the entry ends the Inbound, and the writer drops what is queued.
                self.shared.streams().remove(&stream_id);
                Ok(())
            }
            // Odd ids are the client's pings; even ones would answer the server's, and it
            // sends none.
            Wire::Ping { id } if id & 1 == 1 => self.send(Control::Ping(id)).await,
            Wire::GoAway {
                last_good_stream_id,
                status,
            } => {
                debug!(
                    session = self.session,
                    last_good_stream_id, status, "spdy: GOAWAY"
                );
                Err(Stop::GoAway)
            }
            Wire::Headers {
                stream_id,
                flags,
                header_block,
            } => {
                // Decoded to keep the zlib state; extra headers mean nothing here.
                let _ = self.decode_headers(&header_block)?;
                if flags & frame::FLAG_FIN != 0 {
                    self.remote_finished(stream_id);
                }
                Ok(())
            }
            Wire::SynReply {
                stream_id,
                header_block,
                ..
            } => {
                let _ = self.decode_headers(&header_block)?;
                // The server opens no streams, so there is nothing to reply to.
                self.rst(stream_id, status::INVALID_STREAM).await
            }
            // See the module doc on flow control.
            Wire::Ping { .. }
            | Wire::Settings { .. }
            | Wire::WindowUpdate { .. }
            | Wire::Unknown { .. } => Ok(()),
        }
    }

    async fn syn_stream(&mut self, stream_id: u32, flags: u8, block: &[u8]) -> Result<(), Stop> {
        let headers = self.decode_headers(block)?;
        if stream_id & 1 == 0 || stream_id <= self.last_id {
            return self.rst(stream_id, status::PROTOCOL_ERROR).await;
        }
        self.last_id = stream_id;
        let headers = match headers {
            Ok(headers) => headers,
            Err(e) => {
                debug!(session = self.session, stream = stream_id, error = %e, "spdy: bad headers");
                return self.rst(stream_id, status::PROTOCOL_ERROR).await;
            }
        };
        let Some(data) = self.data.upgrade() else {
            return self.rst(stream_id, status::REFUSED_STREAM).await;
        };
        let fin = flags & frame::FLAG_FIN != 0;
        let (tx, inbound) = Inbound::new();
        let full = {
            let mut streams = self.shared.streams();
            let full = streams.len() >= MAX_STREAMS;
            if !full {
                let state = StreamState {
                    inbound: (!fin).then_some(tx),
                    unacked: 0,
                    remote_closed: fin,
                    local_closed: flags & frame::FLAG_UNIDIRECTIONAL != 0,
                };
                streams.insert(stream_id, state);
            }
            full
        };
        if full {
            return self.rst(stream_id, status::REFUSED_STREAM).await;
        }
        self.shared.last_good.store(stream_id, Ordering::Relaxed);
        debug!(session = self.session, stream = stream_id, fin, headers = ?headers, "spdy: new stream");
        let stream = NewStream {
            id: stream_id,
            headers,
            fin,
            inbound: Some(inbound),
            control: self.control.clone(),
            data,
            shared: self.shared.clone(),
            answered: false,
        };
        // A failed send drops the stream, whose Drop refuses it.
        let _ = self.incoming.send(stream).await;
        Ok(())
    }

    async fn data(&mut self, stream_id: u32, flags: u8, data: Bytes) -> Result<(), Stop> {
        // At most 16 MiB by the frame bound, so it fits.
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        self.session_unacked = self.session_unacked.saturating_add(len);
        if self.session_unacked >= WINDOW_UPDATE_EVERY {
            let delta = std::mem::take(&mut self.session_unacked);
            self.send(Control::WindowUpdate {
                stream_id: 0,
                delta,
            })
            .await?;
        }
        let fin = flags & frame::FLAG_FIN != 0;
        let route = match self.shared.streams().get_mut(&stream_id) {
            None => Err(status::INVALID_STREAM),
            Some(state) if state.remote_closed => Err(status::STREAM_ALREADY_CLOSED),
            Some(state) => {
                state.unacked = state.unacked.saturating_add(len);
                let update = if state.unacked >= WINDOW_UPDATE_EVERY && !fin {
                    std::mem::take(&mut state.unacked)
                } else {
                    0
                };
                Ok((state.inbound.clone(), update))
            }
        };
        let (inbound, update) = match route {
            Ok(route) => route,
            Err(status) => return self.rst(stream_id, status).await,
        };
        if let (false, Some(inbound)) = (data.is_empty(), inbound) {
            // Waits while the consumer's queue is full: the back-pressure of this session.
            if inbound.send(data).await.is_err() {
                debug!(
                    session = self.session,
                    stream = stream_id,
                    "spdy: inbound dropped, discarding"
                );
                if let Some(state) = self.shared.streams().get_mut(&stream_id) {
                    state.inbound = None;
                }
            }
        }
        if update > 0 {
            self.send(Control::WindowUpdate {
                stream_id,
                delta: update,
            })
            .await?;
        }
        if fin {
            self.remote_finished(stream_id);
        }
        Ok(())
    }

    fn remote_finished(&self, stream_id: u32) {
        let mut streams = self.shared.streams();
        if let Some(state) = streams.get_mut(&stream_id) {
            state.inbound = None;
            state.remote_closed = true;
            if state.local_closed {
                streams.remove(&stream_id);
            }
        }
    }
}
