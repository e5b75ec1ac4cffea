use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::time::timeout;

use super::{hex, noise, GO_CLIENT_CAPTURE};
use crate::streaming::channel::{Inbound, Outbound, STREAM_QUEUE};
use crate::streaming::spdy::frame::{goaway, status, Decoder, Frame, FLAG_FIN};
use crate::streaming::spdy::headers::{HeaderDecoder, HeaderEncoder, Headers};
use crate::streaming::spdy::session::{NewStream, Session, MAX_DATA_FRAME, MAX_STREAMS};

const WAIT: Duration = Duration::from_secs(10);

/// The sending half of a test client: frames, with its own header compression.
struct ClientTx<W> {
    io: W,
    headers: HeaderEncoder,
}

impl<W: AsyncWrite + Unpin> ClientTx<W> {
    async fn send(&mut self, frame: Frame) {
        let mut out = BytesMut::new();
        frame.encode(&mut out).expect("test frame encodes");
        self.io.write_all(&out).await.expect("client write");
    }

    async fn syn(&mut self, stream_id: u32, pairs: &[(&str, &str)], flags: u8) {
        let mut h = Headers::new();
        for (n, v) in pairs {
            h.insert(n, v);
        }
        let header_block = self.headers.encode(&h).expect("encodes");
        self.send(Frame::SynStream {
            stream_id,
            flags,
            associated_to: 0,
            priority: 0,
            slot: 0,
            header_block,
        })
        .await;
    }

    async fn data(&mut self, stream_id: u32, data: &[u8], fin: bool) {
        let flags = if fin { FLAG_FIN } else { 0 };
        let data = Bytes::copy_from_slice(data);
        self.send(Frame::Data {
            stream_id,
            flags,
            data,
        })
        .await;
    }
}

/// The receiving half: frames out of the server's bytes, header blocks decoded.
struct ClientRx<R> {
    io: R,
    buf: BytesMut,
    headers: HeaderDecoder,
    /// WINDOW_UPDATE deltas seen, per stream id (0: the session).
    windows: std::collections::HashMap<u32, u64>,
}

impl<R: AsyncRead + Unpin> ClientRx<R> {
    /// The next frame, `None` at EOF. WINDOW_UPDATEs are counted, not returned.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            match Decoder::default()
                .decode(&mut self.buf)
                .expect("server frames decode")
            {
                Some(Frame::WindowUpdate { stream_id, delta }) => {
                    *self.windows.entry(stream_id).or_default() += u64::from(delta);
                }
                Some(frame) => return Some(frame),
                None => {
                    let n = timeout(WAIT, self.io.read_buf(&mut self.buf))
                        .await
                        .expect("server answers in time")
                        .expect("client read");
                    if n == 0 {
                        assert!(self.buf.is_empty(), "EOF inside a frame");
                        return None;
                    }
                }
            }
        }
    }

    async fn expect(&mut self) -> Frame {
        self.next().await.expect("a frame before EOF")
    }

    /// A SYN_REPLY for `id`, with its (empty) header block decoded.
    async fn expect_reply(&mut self, id: u32) {
        match self.expect().await {
            Frame::SynReply {
                stream_id,
                flags: 0,
                header_block,
            } => {
                assert_eq!(stream_id, id);
                let h = self.headers.decode(&header_block).expect("reply headers");
                assert!(h.is_empty());
            }
            other => panic!("wanted SYN_REPLY {id}, got {other:?}"),
        }
    }

    /// Data of stream `id` up to its FIN; other frames are an error.
    async fn read_stream(&mut self, id: u32) -> Vec<u8> {
        let mut got = Vec::new();
        loop {
            match self.expect().await {
                Frame::Data {
                    stream_id,
                    flags,
                    data,
                } if stream_id == id => {
                    assert!(data.len() <= MAX_DATA_FRAME);
                    got.extend_from_slice(&data);
                    if flags & FLAG_FIN != 0 {
                        return got;
                    }
                }
                other => panic!("wanted data on {id}, got {other:?}"),
            }
        }
    }
}

type Client = (
    ClientTx<tokio::io::WriteHalf<DuplexStream>>,
    ClientRx<tokio::io::ReadHalf<DuplexStream>>,
);

fn start() -> (Session, Client) {
    let (server, client) = tokio::io::duplex(64 * 1024);
    let session = Session::start(server);
    let (rd, wr) = tokio::io::split(client);
    let tx = ClientTx {
        io: wr,
        headers: HeaderEncoder::new(),
    };
    let rx = ClientRx {
        io: rd,
        buf: BytesMut::new(),
        headers: HeaderDecoder::default(),
        windows: Default::default(),
    };
    (session, (tx, rx))
}

async fn next(session: &mut Session) -> NewStream {
    timeout(WAIT, session.next_stream())
        .await
        .expect("a stream in time")
        .expect("a stream before the end")
}

async fn recv(inbound: &mut Inbound) -> Option<Bytes> {
    timeout(WAIT, inbound.recv())
        .await
        .expect("inbound in time")
}

async fn accept(
    session: &mut Session,
    rx: &mut ClientRx<impl AsyncRead + Unpin>,
    id: u32,
) -> (Inbound, Outbound) {
    let stream = next(session).await;
    assert_eq!(stream.id(), id);
    let pair = stream.accept().await;
    rx.expect_reply(id).await;
    pair
}

#[tokio::test]
async fn a_stream_opens_exchanges_and_finishes() {
    let (mut session, (mut tx, mut rx)) = start();
    tx.syn(1, &[("streamType", "stdin"), ("requestid", "7")], 0)
        .await;
    let stream = next(&mut session).await;
    assert_eq!(stream.id(), 1);
    assert_eq!(stream.header("streamtype"), Some("stdin"));
    assert_eq!(stream.header("StreamType"), Some("stdin"));
    assert_eq!(stream.header("requestid"), Some("7"));
    assert_eq!(stream.header("port"), None);
    assert!(!stream.fin());
    let (mut inbound, mut outbound) = stream.accept().await;
    rx.expect_reply(1).await;

    tx.data(1, b"abc", false).await;
    tx.data(1, b"def", true).await;
    assert_eq!(recv(&mut inbound).await.as_deref(), Some(&b"abc"[..]));
    assert_eq!(recv(&mut inbound).await.as_deref(), Some(&b"def"[..]));
    assert_eq!(recv(&mut inbound).await, None, "FIN ends the inbound");

    outbound
        .send(Bytes::from_static(b"xyz"))
        .await
        .expect("send");
    outbound.close().await;
    assert_eq!(rx.read_stream(1).await, b"xyz");
}

#[tokio::test]
async fn syn_with_fin_has_an_ended_inbound() {
    let (mut session, (mut tx, mut rx)) = start();
    tx.syn(1, &[("streamtype", "error")], FLAG_FIN).await;
    let stream = next(&mut session).await;
    assert!(stream.fin());
    let (mut inbound, mut outbound) = stream.accept().await;
    rx.expect_reply(1).await;
    assert_eq!(recv(&mut inbound).await, None);
    outbound
        .send(Bytes::from_static(b"status"))
        .await
        .expect("send");
    drop(outbound);
    assert_eq!(rx.read_stream(1).await, b"status");
}

#[tokio::test]
async fn pings_are_answered_with_their_id() {
    let (_session, (mut tx, mut rx)) = start();
    tx.send(Frame::Ping { id: 1 }).await;
    assert_eq!(rx.expect().await, Frame::Ping { id: 1 });
    // An even id would answer a ping of the server's: not echoed.
    tx.send(Frame::Ping { id: 2 }).await;
    tx.send(Frame::Settings {
        flags: 0,
        entries: vec![],
    })
    .await;
    tx.send(Frame::WindowUpdate {
        stream_id: 0,
        delta: 1000,
    })
    .await;
    tx.send(Frame::Ping { id: 0x7fff_ffff }).await;
    assert_eq!(rx.expect().await, Frame::Ping { id: 0x7fff_ffff });
}

#[tokio::test]
async fn bad_stream_ids_are_reset_and_the_session_goes_on() {
    let (mut session, (mut tx, mut rx)) = start();
    tx.syn(2, &[("streamtype", "even")], 0).await;
    assert_eq!(
        rx.expect().await,
        Frame::RstStream {
            stream_id: 2,
            status: status::PROTOCOL_ERROR
        }
    );
    tx.syn(5, &[("streamtype", "five")], 0).await;
    let five = next(&mut session).await;
    assert_eq!(five.header("streamtype"), Some("five"));
    tx.syn(3, &[("streamtype", "three")], 0).await;
    assert_eq!(
        rx.expect().await,
        Frame::RstStream {
            stream_id: 3,
            status: status::PROTOCOL_ERROR
        }
    );
    tx.syn(5, &[("streamtype", "again")], 0).await;
    assert_eq!(
        rx.expect().await,
        Frame::RstStream {
            stream_id: 5,
            status: status::PROTOCOL_ERROR
        }
    );
    // Data for a stream never opened.
    tx.data(9, b"who", false).await;
    assert_eq!(
        rx.expect().await,
        Frame::RstStream {
            stream_id: 9,
            status: status::INVALID_STREAM
        }
    );
    // The header state survived the refused SYN_STREAMs: a later one decodes.
    tx.syn(7, &[("streamtype", "seven")], 0).await;
    let seven = next(&mut session).await;
    assert_eq!((seven.id(), seven.header("streamtype")), (7, Some("seven")));
    drop(five);
    assert_eq!(
        rx.expect().await,
        Frame::RstStream {
            stream_id: 5,
            status: status::REFUSED_STREAM
        },
        "a NewStream dropped unanswered is refused"
    );
    seven.reset(status::INTERNAL_ERROR).await;
    assert_eq!(
        rx.expect().await,
        Frame::RstStream {
            stream_id: 7,
            status: status::INTERNAL_ERROR
        }
    );
}

#[tokio::test]
async fn client_reset_ends_the_inbound_and_drops_outbound_data() {
    let (mut session, (mut tx, mut rx)) = start();
    tx.syn(1, &[], 0).await;
    let (mut inbound, mut outbound) = accept(&mut session, &mut rx, 1).await;
    tx.send(Frame::RstStream {
        stream_id: 1,
        status: status::CANCEL,
    })
    .await;
    assert_eq!(recv(&mut inbound).await, None);
    outbound
        .send(Bytes::from_static(b"late"))
        .await
        .expect("queued");
    outbound.close().await;
    // Nothing for stream 1 comes before the answer to a later ping.
    tx.send(Frame::Ping { id: 3 }).await;
    assert_eq!(rx.expect().await, Frame::Ping { id: 3 });
}

#[tokio::test]
async fn goaway_and_eof_end_the_session() {
    let (mut session, (mut tx, mut rx)) = start();
    tx.syn(1, &[], 0).await;
    let (mut inbound, _outbound) = accept(&mut session, &mut rx, 1).await;
    tx.send(Frame::GoAway {
        last_good_stream_id: 0,
        status: goaway::OK,
    })
    .await;
    assert!(timeout(WAIT, session.next_stream())
        .await
        .expect("in time")
        .is_none());
    assert_eq!(recv(&mut inbound).await, None);

    let (mut session, (mut tx, _rx)) = start();
    tx.io.shutdown().await.expect("shutdown");
    assert!(timeout(WAIT, session.next_stream())
        .await
        .expect("in time")
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_writes_what_is_queued_then_goaway_then_eof() {
    let (mut session, (mut tx, mut rx)) = start();
    tx.syn(1, &[], 0).await;
    tx.syn(3, &[], 0).await;
    let (_in1, mut out1) = accept(&mut session, &mut rx, 1).await;
    let (_in3, _out3) = accept(&mut session, &mut rx, 3).await;
    out1.send(Bytes::from_static(b"last words"))
        .await
        .expect("send");
    session.close().await;
    session.close().await;
    assert_eq!(
        rx.expect().await,
        Frame::Data {
            stream_id: 1,
            flags: 0,
            data: Bytes::from_static(b"last words")
        }
    );
    assert_eq!(
        rx.expect().await,
        Frame::GoAway {
            last_good_stream_id: 3,
            status: goaway::OK
        }
    );
    assert_eq!(rx.next().await, None);
    assert!(out1.send(Bytes::from_static(b"after")).await.is_err());
    assert!(timeout(WAIT, session.next_stream())
        .await
        .expect("in time")
        .is_none());
}

#[tokio::test]
async fn dropping_everything_says_goaway() {
    let (mut session, (mut tx, mut rx)) = start();
    tx.syn(1, &[], 0).await;
    let (inbound, outbound) = accept(&mut session, &mut rx, 1).await;
    drop(session);
    drop(inbound);
    drop(outbound);
    assert_eq!(
        rx.read_stream(1).await,
        b"",
        "the dropped outbound sends FIN"
    );
    assert_eq!(
        rx.expect().await,
        Frame::GoAway {
            last_good_stream_id: 1,
            status: goaway::OK
        }
    );
    assert_eq!(rx.next().await, None);
}

#[tokio::test]
async fn a_protocol_error_says_goaway_protocol_error() {
    let (mut session, (mut tx, mut rx)) = start();
    tx.io
        .write_all(&hex("8002 0006 00 000004 00000001"))
        .await
        .expect("write");
    assert_eq!(
        rx.expect().await,
        Frame::GoAway {
            last_good_stream_id: 0,
            status: goaway::PROTOCOL_ERROR
        }
    );
    assert_eq!(rx.next().await, None);
    assert!(timeout(WAIT, session.next_stream())
        .await
        .expect("in time")
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_megabytes_each_way_on_one_stream() {
    const TOTAL: usize = 10 * 1024 * 1024;
    let (mut session, (mut tx, mut rx)) = start();
    tx.syn(1, &[("streamtype", "data")], 0).await;
    let (mut inbound, mut outbound) = accept(&mut session, &mut rx, 1).await;
    let upload = noise(42, TOTAL);
    let download = noise(43, TOTAL);

    // The server: counts what comes in, and sends its own 10 MB in uneven chunks at once.
    let server = tokio::spawn({
        let download = download.clone();
        async move {
            let sender = tokio::spawn(async move {
                for chunk in download.chunks(100_000) {
                    outbound
                        .send(Bytes::copy_from_slice(chunk))
                        .await
                        .expect("send");
                }
                outbound.close().await;
            });
            let mut got = Vec::with_capacity(TOTAL);
            while let Some(chunk) = inbound.recv().await {
                got.extend_from_slice(&chunk);
            }
            sender.await.expect("sender");
            got
        }
    });
    let client_sender = tokio::spawn(async move {
        for chunk in upload.chunks(48 * 1024) {
            tx.data(1, chunk, false).await;
        }
        tx.data(1, b"", true).await;
        (tx, upload)
    });
    let downloaded = timeout(Duration::from_secs(60), rx.read_stream(1))
        .await
        .expect("in time");
    let (mut tx, upload) = client_sender.await.expect("client sender");
    let uploaded = timeout(Duration::from_secs(60), server)
        .await
        .expect("in time")
        .expect("server");
    // The reader has taken in everything; its WINDOW_UPDATEs precede this ping's answer.
    tx.send(Frame::Ping { id: 1 }).await;
    assert_eq!(rx.expect().await, Frame::Ping { id: 1 });
    assert!(downloaded == download, "download intact");
    assert!(uploaded == upload, "upload intact");
    // The window was returned for (nearly) all of it, per stream and per session.
    for id in [0, 1] {
        let returned = rx.windows.get(&id).copied().unwrap_or(0);
        assert!(
            returned > (TOTAL - 64 * 1024) as u64 && returned <= TOTAL as u64,
            "stream {id}: {returned}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_streams_interleave() {
    let (mut session, (mut tx, mut rx)) = start();
    tx.syn(1, &[("streamtype", "stdout")], 0).await;
    tx.syn(3, &[("streamtype", "stderr")], 0).await;
    let (mut in1, mut out1) = accept(&mut session, &mut rx, 1).await;
    let (mut in3, mut out3) = accept(&mut session, &mut rx, 3).await;
    for i in 0..20u8 {
        tx.data(1, &[b'a', i], false).await;
        tx.data(3, &[b'b', i], false).await;
    }
    tx.data(1, b"", true).await;
    tx.data(3, b"", true).await;
    // Read side by side: a stream whose queue is full holds the session's reader (the
    // back-pressure channel.rs describes), so one stream read after the other would stall.
    async fn drain(inbound: &mut Inbound) -> Vec<u8> {
        let mut got = Vec::new();
        while let Some(chunk) = recv(inbound).await {
            got.extend_from_slice(&chunk);
        }
        got
    }
    let (got1, got3) = tokio::join!(drain(&mut in1), drain(&mut in3));
    assert_eq!(got1, (0..20u8).flat_map(|i| [b'a', i]).collect::<Vec<_>>());
    assert_eq!(got3, (0..20u8).flat_map(|i| [b'b', i]).collect::<Vec<_>>());
    for i in 0..20u8 {
        out1.send(Bytes::from(vec![b'A', i])).await.expect("send");
        out3.send(Bytes::from(vec![b'B', i])).await.expect("send");
    }
    out1.close().await;
    out3.close().await;
    let mut got = std::collections::HashMap::<u32, Vec<u8>>::new();
    let mut fins = 0;
    let mut switches = 0;
    let mut last = 0;
    while fins < 2 {
        match rx.expect().await {
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                switches += usize::from(stream_id != last);
                last = stream_id;
                got.entry(stream_id).or_default().extend_from_slice(&data);
                fins += usize::from(flags & FLAG_FIN != 0);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        got[&1],
        (0..20u8).flat_map(|i| [b'A', i]).collect::<Vec<_>>()
    );
    assert_eq!(
        got[&3],
        (0..20u8).flat_map(|i| [b'B', i]).collect::<Vec<_>>()
    );
    assert!(switches > 2, "the streams' frames interleave on the wire");
}

#[tokio::test]
async fn a_dropped_inbound_discards_without_blocking_the_session() {
    let (mut session, (mut tx, mut rx)) = start();
    tx.syn(1, &[], 0).await;
    tx.syn(3, &[], 0).await;
    let (in1, _out1) = accept(&mut session, &mut rx, 1).await;
    let (mut in3, _out3) = accept(&mut session, &mut rx, 3).await;
    drop(in1);
    for _ in 0..STREAM_QUEUE * 4 {
        tx.data(1, &[0; 1000], false).await;
    }
    tx.data(3, b"still here", false).await;
    tx.send(Frame::Ping { id: 5 }).await;
    assert_eq!(recv(&mut in3).await.as_deref(), Some(&b"still here"[..]));
    assert_eq!(rx.expect().await, Frame::Ping { id: 5 });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_beyond_the_limit_are_refused() {
    let (mut session, (mut tx, mut rx)) = start();
    let opener = tokio::spawn(async move {
        for i in 0..=MAX_STREAMS as u32 {
            tx.syn(2 * i + 1, &[("streamtype", "data")], 0).await;
        }
        tx
    });
    let mut held = Vec::new();
    for _ in 0..MAX_STREAMS {
        held.push(next(&mut session).await);
    }
    let _tx = opener.await.expect("opener");
    let over = 2 * MAX_STREAMS as u32 + 1;
    assert_eq!(
        rx.expect().await,
        Frame::RstStream {
            stream_id: over,
            status: status::REFUSED_STREAM
        }
    );
    assert_eq!(held.len(), MAX_STREAMS);
}

/// The real Go client's bytes, through a session.
#[tokio::test]
async fn the_go_client_capture_drives_a_session() {
    let (mut session, (mut tx, mut rx)) = start();
    tx.io
        .write_all(&hex(GO_CLIENT_CAPTURE))
        .await
        .expect("write");
    let error = next(&mut session).await;
    assert_eq!((error.id(), error.header("streamtype")), (1, Some("error")));
    let (mut error_in, _error_out) = error.accept().await;
    let data = next(&mut session).await;
    assert_eq!((data.id(), data.header("streamtype")), (3, Some("data")));
    assert_eq!(
        data.headers().values("x-multi").collect::<Vec<_>>(),
        ["a", "b"]
    );
    let (mut data_in, _data_out) = data.accept().await;
    assert_eq!(
        recv(&mut data_in).await.as_deref(),
        Some(&b"hello from go"[..])
    );
    assert_eq!(recv(&mut data_in).await, None);
    assert_eq!(recv(&mut error_in).await.as_deref(), Some(&b"oops"[..]));
    // Its GOAWAY ends the session's inbound side.
    assert_eq!(recv(&mut error_in).await, None);
    assert!(timeout(WAIT, session.next_stream())
        .await
        .expect("in time")
        .is_none());
    rx.expect_reply(1).await;
    rx.expect_reply(3).await;
}
