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
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::debug;

use super::frame::{goaway, status};
use super::headers::{HeaderDecoder, HeaderEncoder, Headers};
use crate::streaming::channel::{Frame, Inbound, Outbound, SESSION_QUEUE};

mod reader;
mod writer;

use reader::Reader;
use writer::Writer;

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
    /// ended already. A peer that stopped reading holds the writer, and so this call, on
    /// TCP: wrap it in a timeout where that matters.
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

    /// Refuse the stream: RST_STREAM with `status` (see [`super::frame::status`]; 0, which the
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
