//! The WebSocket side of the streaming server: Kubernetes' channel protocols, where each
//! message starts with its channel number (stdin 0, stdout 1, stderr 2, error 3, resize
//! 4; for port-forward two channels per port), and the byte tunnel that carries SPDY for
//! `SPDY/3.1+portforward.k8s.io`.
//!
//! - `v5.channel.k8s.io`: binary; a client's `[255, channel]` message closes that channel
//!   (how a v5 client ends stdin). The v4 and older protocols have no close signal: input
//!   ends with the connection. The server sends no close signals (client-go does not expect
//!   them): its streams end with the connection.
//! - `v4.channel.k8s.io`, `channel.k8s.io` (and no subprotocol at all): binary.
//! - `v4.base64.channel.k8s.io`, `base64.channel.k8s.io`: text messages, the channel as an
//!   ASCII digit followed by the payload in standard base64.
//!
//! The server ends a session with a normal Close frame after everything queued was sent:
//! client-go reads that as the end of every stream.

use std::collections::HashMap;

use base64::Engine;
use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::channel::{Frame, Inbound, Outbound, SESSION_QUEUE};

/// The v5 close signal's channel byte.
const CLOSE_SIGNAL: u8 = 255;
/// The largest message accepted from a client (kubectl sends at most 32 KiB of stdin at
/// once; a resize event is tiny).
const MAX_MESSAGE: usize = 1 << 20;
/// Output is cut into messages of at most this many bytes.
const MAX_OUT_MESSAGE: usize = 32 * 1024;

/// How a negotiated channel protocol frames its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channels {
    pub base64: bool,
    /// `[255, channel]` closes a channel (v5).
    pub close_signal: bool,
}

impl Channels {
    /// The framing of a channel subprotocol; None for one that is not.
    pub fn of(protocol: &str) -> Option<Channels> {
        let (base64, close_signal) = match protocol {
            "v5.channel.k8s.io" => (false, true),
            "v4.channel.k8s.io" | "channel.k8s.io" | "" => (false, false),
            "v4.base64.channel.k8s.io" | "base64.channel.k8s.io" => (true, false),
            _ => return None,
        };
        Some(Channels {
            base64,
            close_signal,
        })
    }
}

/// The WebSocket settings for a client's connection: bounded messages.
pub fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

/// A channel session over one WebSocket connection.
pub struct ChannelSession {
    inbound: HashMap<u8, Inbound>,
    tx: mpsc::Sender<Frame>,
    finish: CancellationToken,
    /// Cancelled when the connection ends.
    pub closed: CancellationToken,
}

impl ChannelSession {
    /// Start reading and writing `ws`; the client may write to the channels in `readable`.
    pub fn start<S>(ws: WebSocketStream<S>, framing: Channels, readable: &[u8]) -> ChannelSession
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sink, stream) = ws.split();
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        let closed = CancellationToken::new();
        let finish = CancellationToken::new();
        let mut senders = HashMap::new();
        let mut inbound = HashMap::new();
        for &ch in readable {
            let (s, i) = Inbound::new();
            senders.insert(ch, s);
            inbound.insert(ch, i);
        }
        tokio::spawn(read_channels(stream, framing, senders, closed.clone()));
        tokio::spawn(write_channels(sink, rx, framing, finish.clone(), closed.clone()));
        ChannelSession {
            inbound,
            tx,
            finish,
            closed,
        }
    }

    /// The client's input on `channel` (once).
    pub fn inbound(&mut self, channel: u8) -> Option<Inbound> {
        self.inbound.remove(&channel)
    }

    /// A stream to the client on `channel`.
    pub fn outbound(&self, channel: u8) -> Outbound {
        Outbound::new(u32::from(channel), self.tx.clone())
    }

    /// Send what is queued, then a normal Close frame.
    pub fn finish(self) {
        self.finish.cancel();
    }
}

async fn read_channels<S>(
    mut stream: futures::stream::SplitStream<WebSocketStream<S>>,
    framing: Channels,
    mut senders: HashMap<u8, mpsc::Sender<Bytes>>,
    closed: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    loop {
        let message = tokio::select! {
            m = stream.next() => m,
            () = closed.cancelled() => break,
        };
        let (channel, payload) = match message {
            Some(Ok(Message::Binary(data))) if !data.is_empty() => {
                (data[0], data.slice(1..))
            }
            Some(Ok(Message::Text(text))) if framing.base64 && !text.is_empty() => {
                let text = text.as_str();
                let Some(channel) = text.as_bytes()[0].checked_sub(b'0').filter(|c| *c <= 9)
                else {
                    tracing::debug!("a base64 message without a channel digit");
                    break;
                };
                match base64::engine::general_purpose::STANDARD.decode(&text[1..]) {
                    Ok(bytes) => (channel, Bytes::from(bytes)),
                    Err(e) => {
                        tracing::debug!(error = %e, "a malformed base64 message");
                        break;
                    }
                }
            }
            Some(Ok(Message::Close(_))) | None => break,
            Some(Ok(Message::Binary(_) | Message::Text(_))) => {
                tracing::debug!("a message that is not of the negotiated framing");
                break;
            }
            // Pings are answered by the library; pongs and raw frames mean nothing here.
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "reading the WebSocket");
                break;
            }
        };
        if framing.close_signal && channel == CLOSE_SIGNAL {
            if let Some(ch) = payload.first() {
                senders.remove(ch);
            }
            continue;
        }
        if let Some(sender) = senders.get(&channel) {
            if !payload.is_empty() && sender.send(payload).await.is_err() {
                // The consumer is gone: the rest of this channel is dropped.
                senders.remove(&channel);
            }
        }
    }
    drop(senders);
    closed.cancel();
}

async fn write_channels<S>(
    mut sink: futures::stream::SplitSink<WebSocketStream<S>, Message>,
    mut rx: mpsc::Receiver<Frame>,
    framing: Channels,
    finish: CancellationToken,
    closed: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut finishing = false;
    loop {
        if finishing && rx.is_empty() {
            break;
        }
        let frame = tokio::select! {
            biased;
            f = rx.recv() => f,
            () = finish.cancelled(), if !finishing => { finishing = true; continue; }
            () = closed.cancelled() => break,
        };
        let frame = match frame {
            Some(f) => f,
            None => break,
        };
        let messages: Vec<Message> = match frame {
            Frame::Data(channel, data) => data
                .chunks(MAX_OUT_MESSAGE)
                .map(|part| encode(framing, channel as u8, part))
                .collect(),
            // The close signal is the client's: client-go reads a `[255, n]` from the server
            // as a message for an unknown stream (and logs it as an error), so the server's
            // streams end with the connection, as kubelet's do.
            Frame::Close(_) => Vec::new(),
        };
        for m in messages {
            if sink.feed(m).await.is_err() {
                closed.cancel();
                return;
            }
        }
        if rx.is_empty() && sink.flush().await.is_err() {
            break;
        }
    }
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        })))
        .await;
    let _ = sink.close().await;
    closed.cancel();
}

fn encode(framing: Channels, channel: u8, data: &[u8]) -> Message {
    if framing.base64 {
        let mut text = String::with_capacity(1 + data.len() * 4 / 3 + 4);
        text.push(char::from(b'0' + channel));
        base64::engine::general_purpose::STANDARD.encode_string(data, &mut text);
        Message::Text(text.into())
    } else {
        let mut bytes = BytesMut::with_capacity(1 + data.len());
        bytes.extend_from_slice(&[channel]);
        bytes.extend_from_slice(data);
        Message::Binary(bytes.freeze())
    }
}

/// A WebSocket carrying a byte stream in binary messages (SPDY tunnelled for
/// `SPDY/3.1+portforward.k8s.io`): returns the other end of an in-memory pipe whose bytes
/// are the tunnel's.
pub fn tunnel<S>(ws: WebSocketStream<S>) -> tokio::io::DuplexStream
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (mut sink, mut stream) = ws.split();
    let (mut rd, mut wr) = tokio::io::split(ours);
    tokio::spawn(async move {
        while let Some(m) = stream.next().await {
            match m {
                Ok(Message::Binary(data)) => {
                    if wr.write_all(&data).await.is_err() {
                        break;
                    }
                }
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => continue,
            }
        }
        let _ = wr.shutdown().await;
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; MAX_OUT_MESSAGE];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let m = Message::Binary(Bytes::copy_from_slice(&buf[..n]));
                    if sink.send(m).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            })))
            .await;
        let _ = sink.close().await;
    });
    theirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subprotocols_and_their_framing() {
        assert_eq!(
            Channels::of("v5.channel.k8s.io"),
            Some(Channels {
                base64: false,
                close_signal: true
            })
        );
        assert_eq!(
            Channels::of("v4.base64.channel.k8s.io").map(|c| c.base64),
            Some(true)
        );
        assert_eq!(Channels::of("").map(|c| c.base64), Some(false));
        assert_eq!(Channels::of("portforward.k8s.io"), None);
    }

    #[test]
    fn messages_start_with_their_channel() {
        let binary = Channels::of("v4.channel.k8s.io").unwrap();
        assert_eq!(
            encode(binary, 1, b"hi"),
            Message::Binary(Bytes::from_static(b"\x01hi"))
        );
        let text = Channels::of("base64.channel.k8s.io").unwrap();
        assert_eq!(encode(text, 2, b"hi"), Message::Text("2aGk=".into()));
    }
}
