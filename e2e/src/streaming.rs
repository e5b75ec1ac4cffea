//! A streaming client written for the tests, independent of the server's code: SPDY/3.1
//! framing and header compression per the SPDY/3 draft, and Kubernetes' WebSocket channel
//! protocols over tokio-tungstenite. It speaks what kubectl and crictl speak, enough to
//! drive exec, attach and port-forward and to look at every byte the server sends.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// How long a test waits for any one thing from the server.
pub const WAIT: Duration = Duration::from_secs(20);

/// `http://host:port/path` → (host:port, path).
pub fn split_url(url: &str) -> Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("not an http URL: {url}"))?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    Ok((host.to_string(), format!("/{path}")))
}

/// Send an HTTP/1.1 upgrade request; the status code, the response headers (names lower
/// case) and the connection, positioned after the response head.
pub async fn upgrade(
    url: &str,
    method: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, HashMap<String, String>, TcpStream)> {
    let (host, path) = split_url(url)?;
    let mut conn = TcpStream::connect(&host).await?;
    // As Go clients do (kubectl, crictl): small frames go out at once.
    conn.set_nodelay(true)?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    conn.write_all(req.as_bytes()).await?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, conn.read(&mut byte)).await??;
        ensure!(
            n == 1,
            "connection closed in the response head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
        ensure!(head.len() < 64 << 10, "response head too long");
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("bad status line: {text}"))?;
    let mut h = HashMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            h.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    Ok((status, h, conn))
}

// ---------------------------------------------------------------- SPDY/3.1

/// The SPDY/3 header compression dictionary (draft-mbelshe-httpbis-spdy-00, 2.6.10.1):
/// each entry is a 4-byte big-endian length and the string; the tail is a list of common
/// header values run together.
pub fn spdy_dictionary() -> Vec<u8> {
    const WORDS: &[&str] = &[
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
    ];
    let mut d = Vec::new();
    for w in WORDS {
        d.extend_from_slice(&(w.len() as u32).to_be_bytes());
        d.extend_from_slice(w.as_bytes());
    }
    d.extend_from_slice(
        b"100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505\
203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized\
403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable\
Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT\
chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,\
text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
    );
    d
}

pub const SYN_STREAM: u16 = 1;
pub const SYN_REPLY: u16 = 2;
pub const RST_STREAM: u16 = 3;
pub const SETTINGS: u16 = 4;
pub const PING: u16 = 6;
pub const GOAWAY: u16 = 7;
pub const HEADERS: u16 = 8;
pub const WINDOW_UPDATE: u16 = 9;
pub const FLAG_FIN: u8 = 1;

/// One frame as read off the wire, decoded field by field.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Control {
        kind: u16,
        flags: u8,
        payload: Vec<u8>,
    },
    Data {
        stream: u32,
        flags: u8,
        data: Vec<u8>,
    },
}

/// Split one frame off the front of `buf`; None when it is not complete yet.
pub fn parse_frame(buf: &[u8]) -> Result<Option<(Frame, usize)>> {
    if buf.len() < 8 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
    if buf.len() < 8 + len {
        return Ok(None);
    }
    let flags = buf[4];
    let payload = buf[8..8 + len].to_vec();
    let frame = if buf[0] & 0x80 != 0 {
        let version = u16::from_be_bytes([buf[0] & 0x7f, buf[1]]);
        ensure!(version == 3, "SPDY version {version}");
        Frame::Control {
            kind: u16::from_be_bytes([buf[2], buf[3]]),
            flags,
            payload,
        }
    } else {
        Frame::Data {
            stream: u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]),
            flags,
            data: payload,
        }
    };
    Ok(Some((frame, 8 + len)))
}

fn control(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80, 3];
    f.extend_from_slice(&kind.to_be_bytes());
    f.push(flags);
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(payload);
    f
}

fn data_frame(stream: u32, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut f = stream.to_be_bytes().to_vec();
    f.push(flags);
    f.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(data);
    f
}

/// The name/value block, uncompressed.
fn header_block(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut b = (headers.len() as u32).to_be_bytes().to_vec();
    for (k, v) in headers {
        b.extend_from_slice(&(k.len() as u32).to_be_bytes());
        b.extend_from_slice(k.to_ascii_lowercase().as_bytes());
        b.extend_from_slice(&(v.len() as u32).to_be_bytes());
        b.extend_from_slice(v.as_bytes());
    }
    b
}

pub fn parse_header_block(b: &[u8]) -> Result<Vec<(String, String)>> {
    let word = |at: usize| -> Result<u32> {
        let s = b
            .get(at..at + 4)
            .ok_or_else(|| anyhow!("short header block"))?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    };
    let n = word(0)?;
    let mut at = 4;
    let mut out = Vec::new();
    for _ in 0..n {
        let mut pair = Vec::new();
        for _ in 0..2 {
            let len = word(at)? as usize;
            at += 4;
            let s = b
                .get(at..at + len)
                .ok_or_else(|| anyhow!("short header block"))?;
            pair.push(String::from_utf8_lossy(s).to_string());
            at += len;
        }
        out.push((pair[0].clone(), pair[1].clone()));
    }
    Ok(out)
}

/// A control frame as received: its type, its decoded headers (SYN_REPLY, HEADERS), its
/// raw payload.
pub type ControlFrame = (u16, Vec<(String, String)>, Vec<u8>);

/// A SPDY client session: one task reads frames into per-stream queues; the test writes.
pub struct SpdyClient {
    write: Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
    deflate: Compress,
    next_id: u32,
    /// Frames for each stream (data, with FIN as an empty last element) and control frames.
    streams: HashMap<u32, mpsc::UnboundedReceiver<Vec<u8>>>,
    register: mpsc::UnboundedSender<(u32, mpsc::UnboundedSender<Vec<u8>>)>,
    pub control: mpsc::UnboundedReceiver<ControlFrame>,
    /// Every byte the server sent, for tests that decode the raw exchange.
    pub raw: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl SpdyClient {
    /// Upgrade `url` to SPDY/3.1 offering `protocols`: the chosen one and the client.
    pub async fn connect(url: &str, protocols: &[&str]) -> Result<(String, SpdyClient)> {
        let joined = protocols.join(", ");
        let mut headers = vec![("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")];
        if !protocols.is_empty() {
            headers.push(("X-Stream-Protocol-Version", joined.as_str()));
        }
        let (status, h, conn) = upgrade(url, "POST", &headers).await?;
        ensure!(status == 101, "upgrade answered {status}");
        let chosen = h
            .get("x-stream-protocol-version")
            .cloned()
            .unwrap_or_default();
        let (read, write) = conn.into_split();
        Ok((chosen, SpdyClient::on(Box::new(read), Box::new(write))?))
    }

    /// SPDY tunnelled in a WebSocket's binary messages (`SPDY/3.1+portforward.k8s.io`).
    pub fn over_websocket(ws: Ws) -> Result<SpdyClient> {
        let (ours, theirs) = tokio::io::duplex(256 * 1024);
        let (mut sink, mut stream) = ws.split();
        let (mut rd, mut wr) = tokio::io::split(ours);
        tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                match m {
                    Message::Binary(b) if wr.write_all(&b).await.is_err() => break,
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            let _ = wr.shutdown().await;
        });
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            while let Ok(n) = rd.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let m = Message::Binary(Bytes::copy_from_slice(&buf[..n]));
                if sink.send(m).await.is_err() {
                    break;
                }
            }
        });
        let (read, write) = tokio::io::split(theirs);
        SpdyClient::on(Box::new(read), Box::new(write))
    }

    fn on(
        mut read: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
        write: Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
    ) -> Result<SpdyClient> {
        let (register, mut registrations) =
            mpsc::unbounded_channel::<(u32, mpsc::UnboundedSender<Vec<u8>>)>();
        let (control_tx, control) = mpsc::unbounded_channel();
        let raw = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let raw_in = raw.clone();
        tokio::spawn(async move {
            let mut inflate = Decompress::new(true);
            let dict = spdy_dictionary();
            let mut buf = Vec::new();
            let mut chunk = vec![0u8; 64 * 1024];
            let mut routes: HashMap<u32, mpsc::UnboundedSender<Vec<u8>>> = HashMap::new();
            loop {
                let n = match read.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                raw_in.lock().unwrap().extend_from_slice(&chunk[..n]);
                buf.extend_from_slice(&chunk[..n]);
                while let Ok((id, tx)) = registrations.try_recv() {
                    routes.insert(id, tx);
                }
                while let Ok(Some((frame, used))) = parse_frame(&buf) {
                    buf.drain(..used);
                    match frame {
                        Frame::Data {
                            stream,
                            flags,
                            data,
                        } => {
                            while let Ok((id, tx)) = registrations.try_recv() {
                                routes.insert(id, tx);
                            }
                            if let Some(tx) = routes.get(&stream) {
                                if !data.is_empty() {
                                    let _ = tx.send(data);
                                }
                                if flags & FLAG_FIN != 0 {
                                    let _ = tx.send(Vec::new());
                                }
                            }
                        }
                        Frame::Control { kind, payload, .. } => {
                            let headers = match kind {
                                SYN_REPLY | HEADERS if payload.len() >= 4 => {
                                    inflate_block(&mut inflate, &dict, &payload[4..])
                                        .and_then(|b| parse_header_block(&b))
                                        .unwrap_or_default()
                                }
                                _ => Vec::new(),
                            };
                            let _ = control_tx.send((kind, headers, payload));
                        }
                    }
                }
            }
            // The connection ended: every stream ends.
            while let Ok((id, tx)) = registrations.try_recv() {
                routes.insert(id, tx);
            }
            for tx in routes.values() {
                let _ = tx.send(Vec::new());
            }
        });
        let mut deflate = Compress::new(Compression::default(), true);
        deflate.set_dictionary(&spdy_dictionary())?;
        Ok(SpdyClient {
            write,
            deflate,
            next_id: 1,
            streams: HashMap::new(),
            register,
            control,
            raw,
        })
    }

    /// Open a stream with `headers` (SYN_STREAM); waits for its SYN_REPLY.
    pub async fn open(&mut self, headers: &[(&str, &str)]) -> Result<u32> {
        let id = self.next_id;
        self.next_id += 2;
        let (tx, rx) = mpsc::unbounded_channel();
        self.register.send((id, tx))?;
        self.streams.insert(id, rx);
        let block = header_block(headers);
        let mut compressed = Vec::with_capacity(block.len() + 64);
        self.deflate
            .compress_vec(&block, &mut compressed, FlushCompress::Sync)?;
        let mut payload = id.to_be_bytes().to_vec();
        payload.extend_from_slice(&0u32.to_be_bytes());
        payload.extend_from_slice(&[0, 0]);
        payload.extend_from_slice(&compressed);
        self.write
            .write_all(&control(SYN_STREAM, 0, &payload))
            .await?;
        loop {
            let (kind, _, payload) = tokio::time::timeout(WAIT, self.control.recv())
                .await?
                .ok_or_else(|| anyhow!("connection closed before the reply to stream {id}"))?;
            let of = payload
                .get(..4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            match kind {
                SYN_REPLY if of == Some(id) => return Ok(id),
                RST_STREAM if of == Some(id) => bail!("stream {id} refused"),
                _ => continue,
            }
        }
    }

    pub async fn send(&mut self, id: u32, data: &[u8]) -> Result<()> {
        for part in data.chunks(16 * 1024) {
            self.write.write_all(&data_frame(id, 0, part)).await?;
        }
        Ok(())
    }

    /// Half-close stream `id` (an empty DATA frame with FIN).
    pub async fn finish(&mut self, id: u32) -> Result<()> {
        self.write.write_all(&data_frame(id, FLAG_FIN, &[])).await?;
        Ok(())
    }

    pub async fn ping(&mut self, ping_id: u32) -> Result<()> {
        self.write
            .write_all(&control(PING, 0, &ping_id.to_be_bytes()))
            .await?;
        Ok(())
    }

    /// The next chunk on stream `id`; None at its end.
    pub async fn recv(&mut self, id: u32) -> Result<Option<Vec<u8>>> {
        let rx = self
            .streams
            .get_mut(&id)
            .ok_or_else(|| anyhow!("no stream {id}"))?;
        let chunk = tokio::time::timeout(WAIT, rx.recv())
            .await
            .with_context(|| format!("waiting for stream {id}"))?;
        Ok(chunk.filter(|c| !c.is_empty()))
    }

    /// Everything on stream `id` until its end.
    pub async fn read_to_end(&mut self, id: u32) -> Result<Vec<u8>> {
        let mut all = Vec::new();
        while let Some(c) = self.recv(id).await? {
            all.extend_from_slice(&c);
        }
        Ok(all)
    }

    /// Read stream `id` until `want` appears in what arrived; all of it.
    pub async fn read_until(&mut self, id: u32, want: &[u8]) -> Result<Vec<u8>> {
        let mut all = Vec::new();
        while !all.windows(want.len()).any(|w| w == want) {
            let next = self.recv(id).await.with_context(|| {
                format!(
                    "waiting for {:?} after {:?}",
                    String::from_utf8_lossy(want),
                    String::from_utf8_lossy(&all)
                )
            })?;
            match next {
                Some(c) => all.extend_from_slice(&c),
                None => bail!(
                    "stream {id} ended before {:?}: {:?}",
                    String::from_utf8_lossy(want),
                    String::from_utf8_lossy(&all)
                ),
            }
        }
        Ok(all)
    }

    /// Take stream `id`'s queue, to read it on another task.
    pub fn take_stream(&mut self, id: u32) -> Option<mpsc::UnboundedReceiver<Vec<u8>>> {
        self.streams.remove(&id)
    }

    /// Drop the connection without a word (a client that goes away).
    pub fn abort(self) {}
}

fn inflate_block(inflate: &mut Decompress, dict: &[u8], input: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(4096);
    let mut input = input;
    loop {
        let before_in = inflate.total_in();
        let r = inflate.decompress_vec(input, &mut out, FlushDecompress::Sync);
        let used = (inflate.total_in() - before_in) as usize;
        input = &input[used..];
        match r {
            Err(e) if e.needs_dictionary().is_some() => {
                inflate.set_dictionary(dict)?;
            }
            Err(e) => return Err(e.into()),
            Ok(_) if input.is_empty() => return Ok(out),
            Ok(_) => out.reserve(4096),
        }
    }
}

/// The exit of a v4 exec from its error stream: 0 for Success, the ExitCode cause else.
pub fn exit_code_of(status: &[u8]) -> Result<i32> {
    let v: serde_json::Value = serde_json::from_slice(status)
        .with_context(|| format!("status {:?}", String::from_utf8_lossy(status)))?;
    match v["status"].as_str() {
        Some("Success") => Ok(0),
        Some("Failure") if v["reason"] == "NonZeroExitCode" => v["details"]["causes"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["reason"] == "ExitCode"))
            .and_then(|c| c["message"].as_str())
            .and_then(|m| m.parse().ok())
            .ok_or_else(|| anyhow!("no exit code in {v}")),
        _ => bail!("failure status: {v}"),
    }
}

// ---------------------------------------------------------------- WebSocket

pub type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// Open a WebSocket to `url` offering `protocols`: the chosen one and the socket.
pub async fn ws_connect(url: &str, protocols: &[&str]) -> Result<(String, Ws)> {
    let (host, _) = split_url(url)?;
    let ws_url = url.replacen("http://", "ws://", 1);
    let mut req = ws_url.into_client_request()?;
    if !protocols.is_empty() {
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", protocols.join(", ").parse()?);
    }
    let tcp = TcpStream::connect(&host).await?;
    tcp.set_nodelay(true)?;
    let (ws, resp) = tokio_tungstenite::client_async(req, tcp).await?;
    let chosen = resp
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    Ok((chosen, ws))
}

/// Send `data` on `channel` (binary framing).
pub async fn ws_send(ws: &mut Ws, channel: u8, data: &[u8]) -> Result<()> {
    let mut m = vec![channel];
    m.extend_from_slice(data);
    ws.send(Message::Binary(Bytes::from(m))).await?;
    Ok(())
}

/// Read every message until the server's Close frame (client-go reads anything else as an
/// error): the bytes per channel (binary framing). A `[255, n]` close signal would show as
/// channel 255: the server sends none.
pub async fn ws_read_all(ws: &mut Ws) -> Result<HashMap<u8, Vec<u8>>> {
    let mut out: HashMap<u8, Vec<u8>> = HashMap::new();
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await? {
            Some(Ok(Message::Binary(b))) if !b.is_empty() => {
                out.entry(b[0]).or_default().extend_from_slice(&b[1..]);
            }
            Some(Ok(Message::Close(_))) => return Ok(out),
            None => bail!("the connection ended without a Close frame: {out:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

/// Read messages until channel `channel` has received `want`: the bytes per channel so far.
pub async fn ws_read_until(ws: &mut Ws, channel: u8, want: &[u8]) -> Result<HashMap<u8, Vec<u8>>> {
    let mut out: HashMap<u8, Vec<u8>> = HashMap::new();
    loop {
        if out
            .get(&channel)
            .is_some_and(|b| b.windows(want.len()).any(|w| w == want))
        {
            return Ok(out);
        }
        match tokio::time::timeout(WAIT, ws.next()).await? {
            Some(Ok(Message::Binary(b))) if !b.is_empty() => {
                out.entry(b[0]).or_default().extend_from_slice(&b[1..]);
            }
            Some(Ok(Message::Close(_))) | None => {
                bail!("closed before {want:?} on channel {channel}: {out:?}")
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
        }
    }
}
