//! The server side of one SPDY/3.1 connection: a reader task that decodes the client's
//! frames and routes them, and a writer task that owns the socket's write half and the
//! outgoing header compression.
//!
//! Life cycle. The reader ends at EOF, a read error, the client's GOAWAY, a protocol error
//! that loses the framing or the header zlib state (it then has the writer send GOAWAY
//! PROTOCOL_ERROR and close), or when the writer ends; it then ends every stream's
//! [`Inbound`] and [`Session::next_stream`] answers `None`. The writer ends on
//! [`Session::close`] (GOAWAY OK after what is queued), once the [`Session`] and every
//! stream handed out are dropped (GOAWAY OK), or at a write error; it then shuts the
//! connection down.
//!
//! Ordering. Frames the session itself makes (SYN_REPLY, RST_STREAM, PING replies,
//! WINDOW_UPDATE, GOAWAY) go through a control queue that the writer always serves before
//! the data queue; [`NewStream::accept`] queues its SYN_REPLY before it hands out the
//! stream's [`Outbound`], so the client sees the reply before any data (spdystream drops
//! data on a stream not yet replied to).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::debug;

use super::frame::{self, goaway, status, Decoder, Frame as Wire};
use super::headers::{HeaderDecoder, HeaderEncoder, Headers};
use crate::streaming::channel::{Frame, Inbound, Outbound, SESSION_QUEUE};

/// Streams open at once on one session; more are refused (RST_STREAM REFUSED_STREAM).
pub const MAX_STREAMS: usize = 1000;
/// Largest DATA payload the writer sends; longer chunks are split.
pub const MAX_DATA_FRAME: usize = 32 * 1024;
/// Bytes consumed on a stream (and on the session) before a WINDOW_UPDATE returns them.
pub const WINDOW_UPDATE_EVERY: u32 = 32 * 1024;

/// Streams opened by the client that wait for [`Session::next_stream`].
const NEW_STREAM_QUEUE: usize = 16;
/// Frames the session itself makes, waiting for the writer.
const CONTROL_QUEUE: usize = 64;
/// Encoded bytes gathered before a write to the socket.
const WRITE_BATCH: usize = 256 * 1024;

static SESSION_IDS: AtomicU64 = AtomicU64::new(1);

/// What the writer is asked to send besides stream data.
#[derive(Debug)]
enum Control {
    SynReply(u32),
    Rst {
        stream_id: u32,
        status: u32,
    },
    Ping(u32),
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    /// GOAWAY with `status` after the data already queued, then close.
    Close {
        status: u32,
        done: Option<oneshot::Sender<()>>,
    },
}

#[derive(Debug, Default)]
struct StreamState {
    /// Feeds the stream's [`Inbound`]; `None` once the client finished it or the consumer
    /// went away (its data is then discarded).
    inbound: Option<mpsc::Sender<Bytes>>,
    /// Bytes received and not yet returned by a WINDOW_UPDATE.
    unacked: u32,
    remote_closed: bool,
    local_closed: bool,
}

#[derive(Debug, Default)]
struct Shared {
    /// Open streams; an entry goes when both directions are finished or either side resets.
    streams: Mutex<HashMap<u32, StreamState>>,
    /// The last stream accepted into the table, for GOAWAY.
    last_good: AtomicU32,
}

impl Shared {
    fn streams(&self) -> MutexGuard<'_, HashMap<u32, StreamState>> {
        // A panic while holding the lock leaves a table that is still consistent: every
        // update under it is a single field write or insert/remove.
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A SPDY/3.1 server session on one connection.
#[derive(Debug)]
pub struct Session {
    id: u64,
    incoming: mpsc::Receiver<NewStream>,
    handle: SessionHandle,
    /// Keeps the data queue open while the session is held, even with no stream out.
    _data: mpsc::Sender<Frame>,
}

/// A cloneable handle that closes its session from anywhere.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    control: mpsc::Sender<Control>,
}

impl SessionHandle {
    /// GOAWAY (status OK) after the frames already queued, then close the connection;
    /// returns once the writer is done. Idempotent; returns at once when the session has
    /// ended already.
    pub async fn close(&self) {
        let (done, wait) = oneshot::channel();
        let close = Control::Close {
            status: goaway::OK,
            done: Some(done),
        };
        if self.control.send(close).await.is_ok() {
            let _ = wait.await;
        }
    }
}

impl Session {
    /// Spawns the reader and writer tasks on `io` (on the current tokio runtime).
    pub fn start<IO>(io: IO) -> Session
    where
        IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let id = SESSION_IDS.fetch_add(1, Ordering::Relaxed);
        let (rd, wr) = tokio::io::split(io);
        let (data_tx, data_rx) = mpsc::channel(SESSION_QUEUE);
        let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
        let (incoming_tx, incoming_rx) = mpsc::channel(NEW_STREAM_QUEUE);
        let (stop_tx, stop_rx) = watch::channel(());
        let shared = Arc::new(Shared::default());
        let writer = Writer {
            session: id,
            io: wr,
            control: control_rx,
            data: data_rx,
            shared: shared.clone(),
            headers: HeaderEncoder::new(),
            out: BytesMut::with_capacity(64 * 1024),
            _stop: stop_tx,
        };
        tokio::spawn(writer.run());
        let reader = Reader {
            session: id,
            shared,
            control: control_tx.clone(),
            data: data_tx.downgrade(),
            incoming: incoming_tx,
            headers: HeaderDecoder::default(),
            last_id: 0,
            session_unacked: 0,
        };
        tokio::spawn(reader.run(rd, stop_rx));
        debug!(session = id, "spdy: session started");
        Session {
            id,
            incoming: incoming_rx,
            handle: SessionHandle {
                control: control_tx,
            },
            _data: data_tx,
        }
    }

    /// The id of this session in the logs.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The next stream the client opened (SYN_STREAM), `None` once the connection ended
    /// (EOF, GOAWAY, protocol error, close).
    pub async fn next_stream(&mut self) -> Option<NewStream> {
        self.incoming.recv().await
    }

    /// See [`SessionHandle::close`].
    pub async fn close(&self) {
        self.handle.close().await
    }

    /// A handle to close the session while another task waits in `next_stream`.
    pub fn handle(&self) -> SessionHandle {
        self.handle.clone()
    }
}

/// A stream the client opened, not yet answered. Dropping it refuses it
/// (RST_STREAM REFUSED_STREAM).
#[derive(Debug)]
pub struct NewStream {
    id: u32,
    headers: Headers,
    fin: bool,
    inbound: Option<Inbound>,
    control: mpsc::Sender<Control>,
    data: mpsc::Sender<Frame>,
    shared: Arc<Shared>,
    answered: bool,
}

impl NewStream {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The first value of header `name` (e.g. "streamtype", "port", "requestid").
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.values(name).next()
    }

    /// All the headers of the SYN_STREAM.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// Whether the client half-closed the stream in its SYN_STREAM (its Inbound ends at
    /// once).
    pub fn fin(&self) -> bool {
        self.fin
    }

    /// Send SYN_REPLY and hand out the stream's two directions. Data the client sent
    /// before is waiting in the Inbound.
    pub async fn accept(mut self) -> (Inbound, Outbound) {
        self.answered = true;
        let _ = self.control.send(Control::SynReply(self.id)).await;
        let inbound = match self.inbound.take() {
            Some(inbound) => inbound,
            None => Inbound::new().1,
        };
        (inbound, Outbound::new(self.id, self.data.clone()))
    }

    /// Refuse the stream: RST_STREAM with `status` (see [`frame::status`]; 0, which the
    /// wire does not allow, becomes CANCEL).
    pub async fn reset(mut self, status: u32) {
        self.answered = true;
        self.shared.streams().remove(&self.id);
        let status = if status == 0 { status::CANCEL } else { status };
        let rst = Control::Rst {
            stream_id: self.id,
            status,
        };
        let _ = self.control.send(rst).await;
    }
}

impl Drop for NewStream {
    fn drop(&mut self) {
        if !self.answered {
            self.shared.streams().remove(&self.id);
            let _ = self.control.try_send(Control::Rst {
                stream_id: self.id,
                status: status::REFUSED_STREAM,
            });
        }
    }
}

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

struct Reader {
    session: u64,
    shared: Arc<Shared>,
    control: mpsc::Sender<Control>,
    /// Weak so that the session ends once its users are gone although the reader lives on.
    data: mpsc::WeakSender<Frame>,
    incoming: mpsc::Sender<NewStream>,
    headers: HeaderDecoder,
    /// Highest stream id the client opened.
    last_id: u32,
    session_unacked: u32,
}

impl Reader {
    async fn run<R: AsyncRead + Unpin>(mut self, rd: R, mut stop: watch::Receiver<()>) {
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

struct Writer<W> {
    session: u64,
    io: W,
    control: mpsc::Receiver<Control>,
    data: mpsc::Receiver<Frame>,
    shared: Arc<Shared>,
    headers: HeaderEncoder,
    out: BytesMut,
    /// Dropped when the writer ends, which stops the reader.
    _stop: watch::Sender<()>,
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
    async fn run(mut self) {
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
