//! The streaming server's requests: `/exec/<token>`, `/attach/<token>` and
//! `/portforward/<token>`, each upgraded to SPDY/3.1 or to a WebSocket, then handed to
//! [`remotecommand`](super::remotecommand) or [`portforward`](super::portforward).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::channel::{Inbound, Outbound};
use super::http::{text, Body};
use super::portforward::{self, parse_port};
use super::remotecommand::{self, Remote};
use super::spdy;
use super::status::StatusFormat;
use super::tokens::{Pending, Tokens};
use super::websocket::{self, ChannelSession, Channels};
use super::Backend;

/// The remote-command subprotocols over SPDY, best first.
const SPDY_REMOTECOMMAND: [&str; 4] = [
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
/// The port-forward subprotocol over SPDY (and tunnelled in a WebSocket).
const PORTFORWARD: &str = "portforward.k8s.io";
const WS_TUNNELLED_PORTFORWARD: &str = "SPDY/3.1+portforward.k8s.io";
/// The WebSocket channel subprotocols, best first.
const WS_CHANNELS: [&str; 5] = [
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
];
/// How long a client may take to open the streams it announced (kubelet's default).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the end of a session may take to reach a client.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Port-forward connections half-opened at once (an error stream without its data stream).
const MAX_HALF_OPEN: usize = 1000;
/// Ports of one WebSocket port-forward.
const MAX_WS_PORTS: usize = 64;

const PROTOCOL_HEADER: &str = "x-stream-protocol-version";
const ACCEPTED_HEADER: &str = "x-accepted-stream-protocol-versions";

pub struct State {
    pub tokens: Tokens,
    pub backend: Arc<dyn Backend>,
}

/// Answer one HTTP request of the streaming server.
pub async fn handle(state: Arc<State>, mut req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().trim_start_matches('/');
    let Some((method, token)) = path.split_once('/') else {
        return text(StatusCode::NOT_FOUND, "404 page not found\n");
    };
    let Some(pending) = state.tokens.consume(method, token) else {
        return text(StatusCode::NOT_FOUND, "404 page not found\n");
    };
    let headers = req.headers().clone();
    let query = req.uri().query().unwrap_or("").to_string();
    let upgrade = hyper::upgrade::on(&mut req);
    if has_token(&headers, header::UPGRADE, "websocket") {
        websocket_upgrade(state, pending, &headers, &query, upgrade)
    } else if has_token(&headers, header::UPGRADE, "spdy/3.1") {
        spdy_upgrade(state, pending, &headers, upgrade)
    } else {
        text(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: missing upgrade headers in request: streaming needs an \
             'Upgrade: SPDY/3.1' or 'Upgrade: websocket' request\n",
        )
    }
}

/// Whether the comma-separated header has `token`, case-insensitively.
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Every value of a (possibly repeated, comma-separated) header, in order.
fn values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

/// The first of the client's protocols the server speaks; `Ok(None)` when the client
/// named none, `Err` when none of them is ours.
fn negotiate<'a>(client: &[String], ours: &[&'a str]) -> Result<Option<&'a str>, String> {
    if client.is_empty() {
        return Ok(None);
    }
    for c in client {
        if let Some(p) = ours.iter().find(|p| **p == c.as_str()) {
            return Ok(Some(p));
        }
    }
    Err(format!(
        "unable to upgrade: unable to negotiate protocol: client supports {client:?}, server supports {ours:?}"
    ))
}

fn spdy_upgrade(
    state: Arc<State>,
    pending: Pending,
    headers: &HeaderMap,
    upgrade: hyper::upgrade::OnUpgrade,
) -> Response<Body> {
    let ours: &[&str] = match pending {
        Pending::PortForward(_) => &[PORTFORWARD],
        _ => &SPDY_REMOTECOMMAND,
    };
    let protocol = match negotiate(&values(headers, PROTOCOL_HEADER), ours) {
        Ok(p) => p,
        Err(message) => {
            let mut r = text(StatusCode::FORBIDDEN, message);
            if let Ok(v) = HeaderValue::from_str(&ours.join(", ")) {
                r.headers_mut().insert(ACCEPTED_HEADER, v);
            }
            return r;
        }
    };
    let chosen = protocol.unwrap_or("");
    let version = chosen.to_string();
    tokio::spawn(async move {
        match upgrade.await {
            Ok(io) => {
                let io = TokioIo::new(io);
                match pending {
                    Pending::PortForward(req) => {
                        spdy_portforward(state, req.pod_sandbox_id, io).await
                    }
                    Pending::Exec(req) => {
                        let session = open_spdy_streams(
                            io,
                            &version,
                            req.stdin,
                            req.stdout,
                            req.stderr && !req.tty,
                            req.tty,
                        )
                        .await;
                        if let Some((remote, session)) = session {
                            remotecommand::exec(state.backend.clone(), req, remote).await;
                            session.finish();
                        }
                    }
                    Pending::Attach(req) => {
                        let session = open_spdy_streams(
                            io,
                            &version,
                            req.stdin,
                            req.stdout,
                            req.stderr && !req.tty,
                            req.tty,
                        )
                        .await;
                        if let Some((remote, session)) = session {
                            remotecommand::attach(state.backend.clone(), req, remote).await;
                            session.finish();
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "SPDY upgrade"),
        }
    });
    let mut r = Response::new(Body::default());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    if let Ok(v) = HeaderValue::from_str(chosen) {
        if !chosen.is_empty() {
            h.insert(PROTOCOL_HEADER, v);
        }
    }
    r
}

/// A SPDY session whose setup is over: it keeps refusing streams the client opens late
/// and ends the connection when told or when the client goes.
struct SpdyTail {
    done: CancellationToken,
}

impl SpdyTail {
    fn finish(self) {
        self.done.cancel();
    }
}

/// Wait for the streams a remote-command client of `version` opens for these options.
async fn open_spdy_streams<IO>(
    io: IO,
    version: &str,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
) -> Option<(Remote, SpdyTail)>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut session = spdy::Session::start(io);
    let resize = tty && matches!(version, "v4.channel.k8s.io" | "v3.channel.k8s.io");
    let expected =
        1 + usize::from(stdin) + usize::from(stdout) + usize::from(stderr) + usize::from(resize);
    let format = if version == "v4.channel.k8s.io" {
        StatusFormat::Json
    } else {
        StatusFormat::Text
    };
    let closed = CancellationToken::new();
    let mut remote = Remote {
        stdin: None,
        stdout: None,
        stderr: None,
        resize: None,
        error: None,
        format,
        closed: closed.clone(),
    };
    let deadline = tokio::time::sleep(STREAM_CREATION_TIMEOUT);
    tokio::pin!(deadline);
    let mut received = 0;
    while received < expected {
        let stream = tokio::select! {
            s = session.next_stream() => s?,
            () = &mut deadline => {
                tracing::debug!(received, expected, "timed out waiting for the client to create streams");
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, session.close()).await;
                return None;
            }
        };
        let kind = stream
            .header("streamtype")
            .unwrap_or("")
            .to_ascii_lowercase();
        let (input, output) = match kind.as_str() {
            "error" | "stdin" | "stdout" | "stderr" | "resize" => stream.accept().await,
            other => {
                tracing::debug!(stream_type = other, "an unexpected stream type");
                stream.reset(spdy::frame::status::REFUSED_STREAM).await;
                continue;
            }
        };
        match kind.as_str() {
            "error" => remote.error = Some(output),
            "stdin" => remote.stdin = Some(input),
            "stdout" => remote.stdout = Some(output),
            "stderr" => remote.stderr = Some(output),
            _ => remote.resize = Some(input),
        }
        received += 1;
    }
    let done = CancellationToken::new();
    let tail_done = done.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                s = session.next_stream() => match s {
                    Some(s) => s.reset(spdy::frame::status::REFUSED_STREAM).await,
                    None => break,
                },
                () = tail_done.cancelled() => {
                    // A client that stopped reading would hold the close for ever.
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, session.close()).await;
                    break;
                }
            }
        }
        closed.cancel();
    });
    Some((remote, SpdyTail { done }))
}

/// One half of a port-forward connection as the client opened it.
#[derive(Default)]
struct HalfOpen {
    error: Option<Outbound>,
    data: Option<(u16, Inbound, Outbound)>,
}

async fn spdy_portforward<IO>(state: Arc<State>, pod_id: String, io: IO)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut session = spdy::Session::start(io);
    let mut half_open: HashMap<String, HalfOpen> = HashMap::new();
    while let Some(stream) = session.next_stream().await {
        let kind = stream
            .header("streamtype")
            .unwrap_or("")
            .to_ascii_lowercase();
        let port = stream.header("port").map(parse_port);
        // Old clients omit the request id: kubelet pairs an error stream with the data
        // stream two ids later.
        let request_id = match stream.header("requestid") {
            Some(id) => id.to_string(),
            None if kind == "data" => stream.id().saturating_sub(2).to_string(),
            None => stream.id().to_string(),
        };
        if kind != "error" && kind != "data" {
            stream.reset(spdy::frame::status::REFUSED_STREAM).await;
            continue;
        }
        if !half_open.contains_key(&request_id) && half_open.len() >= MAX_HALF_OPEN {
            tracing::debug!("too many half-open port-forward connections");
            stream.reset(spdy::frame::status::REFUSED_STREAM).await;
            continue;
        }
        let (input, output) = stream.accept().await;
        let entry = half_open.entry(request_id.clone()).or_default();
        if kind == "error" {
            entry.error = Some(output);
        } else {
            match port {
                Some(Some(p)) => entry.data = Some((p, input, output)),
                _ => {
                    // Tell the client on the error stream when it is there, else drop.
                    let mut entry = half_open.remove(&request_id).unwrap_or_default();
                    if let Some(mut e) = entry.error.take() {
                        let _ = e
                            .send(bytes::Bytes::from("invalid port: want 1 to 65535"))
                            .await;
                        e.close().await;
                    }
                    continue;
                }
            }
        }
        if entry.error.is_some() && entry.data.is_some() {
            if let Some(HalfOpen {
                error: Some(error),
                data: Some((port, input, output)),
            }) = half_open.remove(&request_id)
            {
                tokio::spawn(portforward::forward(
                    state.backend.clone(),
                    pod_id.clone(),
                    port,
                    input,
                    output,
                    error,
                ));
            }
        }
    }
}

fn websocket_upgrade(
    state: Arc<State>,
    pending: Pending,
    headers: &HeaderMap,
    query: &str,
    upgrade: hyper::upgrade::OnUpgrade,
) -> Response<Body> {
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| k.as_bytes().to_vec());
    let version_ok = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    let Some(key) = key.filter(|_| version_ok) else {
        return text(
            StatusCode::BAD_REQUEST,
            "a WebSocket upgrade needs Sec-WebSocket-Key and Sec-WebSocket-Version: 13\n",
        );
    };
    let client = values(headers, header::SEC_WEBSOCKET_PROTOCOL.as_str());
    let ours: Vec<&str> = match pending {
        Pending::PortForward(_) => {
            let mut p = vec![WS_TUNNELLED_PORTFORWARD];
            p.extend([
                "v4.channel.k8s.io",
                "v4.base64.channel.k8s.io",
                "channel.k8s.io",
                "base64.channel.k8s.io",
            ]);
            p
        }
        _ => WS_CHANNELS.to_vec(),
    };
    let protocol = match negotiate(&client, &ours) {
        Ok(p) => p,
        Err(message) => return text(StatusCode::FORBIDDEN, message),
    };
    let chosen = protocol.unwrap_or("").to_string();
    // WebSocket port-forward names its ports in the query (`?port=80&port=443`), else
    // the PortForward request's ports.
    let ws_ports = match &pending {
        Pending::PortForward(req) if chosen != WS_TUNNELLED_PORTFORWARD => {
            match ws_ports(query, &req.port) {
                Ok(p) => p,
                Err(message) => return text(StatusCode::BAD_REQUEST, message),
            }
        }
        _ => Vec::new(),
    };
    let accept = derive_accept_key(&key);
    let protocol_name = chosen.clone();
    tokio::spawn(async move {
        let io = match upgrade.await {
            Ok(io) => TokioIo::new(io),
            Err(e) => {
                tracing::debug!(error = %e, "WebSocket upgrade");
                return;
            }
        };
        let ws =
            WebSocketStream::from_raw_socket(io, Role::Server, Some(websocket::config())).await;
        match pending {
            Pending::PortForward(req) if protocol_name == WS_TUNNELLED_PORTFORWARD => {
                spdy_portforward(state, req.pod_sandbox_id, websocket::tunnel(ws)).await;
            }
            Pending::PortForward(req) => {
                ws_portforward(state, req.pod_sandbox_id, ws, &protocol_name, ws_ports).await;
            }
            Pending::Exec(req) => {
                let (remote, session) = ws_remote(
                    ws,
                    &protocol_name,
                    req.stdin,
                    req.stdout,
                    req.stderr && !req.tty,
                );
                remotecommand::exec(state.backend.clone(), req, remote).await;
                session.finish();
            }
            Pending::Attach(req) => {
                let (remote, session) = ws_remote(
                    ws,
                    &protocol_name,
                    req.stdin,
                    req.stdout,
                    req.stderr && !req.tty,
                );
                remotecommand::attach(state.backend.clone(), req, remote).await;
                session.finish();
            }
        }
    });
    let mut r = Response::new(Body::default());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if !chosen.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&chosen) {
            h.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
        }
    }
    r
}

/// The channels of a remote command over a WebSocket.
fn ws_remote<S>(
    ws: WebSocketStream<S>,
    protocol: &str,
    stdin: bool,
    stdout: bool,
    stderr: bool,
) -> (Remote, ChannelSession)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let framing = Channels::of(protocol).unwrap_or(Channels {
        base64: false,
        close_signal: false,
    });
    let mut session = ChannelSession::start(ws, framing, &[0, 4]);
    let format = if protocol.starts_with("v4.") || protocol.starts_with("v5.") {
        StatusFormat::Json
    } else {
        StatusFormat::Text
    };
    let remote = Remote {
        stdin: session.inbound(0).filter(|_| stdin),
        stdout: stdout.then(|| session.outbound(1)),
        stderr: stderr.then(|| session.outbound(2)),
        resize: session.inbound(4),
        error: Some(session.outbound(3)),
        format,
        closed: session.closed.clone(),
    };
    (remote, session)
}

/// The ports of a WebSocket port-forward: the query's `port` values (each may be a
/// comma-separated list), else those of the PortForward request.
fn ws_ports(query: &str, requested: &[i32]) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for pair in query.split('&') {
        let Some(("port", value)) = pair.split_once('=') else {
            continue;
        };
        for p in value.split(',') {
            ports.push(
                parse_port(p)
                    .ok_or_else(|| format!("unable to parse {p:?} as a port: want 1 to 65535"))?,
            );
        }
    }
    if ports.is_empty() {
        for p in requested {
            let port = u16::try_from(*p).ok().filter(|p| *p > 0);
            ports.push(port.ok_or_else(|| format!("port {p} out of range 1 to 65535"))?);
        }
    }
    if ports.is_empty() {
        return Err("query parameter \"port\" is required\n".into());
    }
    if ports.len() > MAX_WS_PORTS {
        return Err(format!(
            "{} ports asked, at most {MAX_WS_PORTS}",
            ports.len()
        ));
    }
    Ok(ports)
}

/// Port-forward in channels: data on `2i`, errors on `2i+1` for the i-th port; the first
/// message of each channel is the port, little-endian.
async fn ws_portforward<S>(
    state: Arc<State>,
    pod_id: String,
    ws: WebSocketStream<S>,
    protocol: &str,
    ports: Vec<u16>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let framing = Channels::of(protocol).unwrap_or(Channels {
        base64: false,
        close_signal: false,
    });
    let readable: Vec<u8> = (0..ports.len()).map(|i| (2 * i) as u8).collect();
    let mut session = ChannelSession::start(ws, framing, &readable);
    let mut forwards = tokio::task::JoinSet::new();
    for (i, port) in ports.into_iter().enumerate() {
        let data_ch = (2 * i) as u8;
        let (Some(input), mut data, mut error) = (
            session.inbound(data_ch),
            session.outbound(data_ch),
            session.outbound(data_ch + 1),
        ) else {
            continue;
        };
        let prefix = bytes::Bytes::copy_from_slice(&port.to_le_bytes());
        if data.send(prefix.clone()).await.is_err() || error.send(prefix).await.is_err() {
            return;
        }
        forwards.spawn(portforward::forward(
            state.backend.clone(),
            pod_id.clone(),
            port,
            input,
            data,
            error,
        ));
    }
    let closed = session.closed.clone();
    tokio::select! {
        _ = async { while forwards.join_next().await.is_some() {} } => {}
        () = closed.cancelled() => {}
    }
    session.finish();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_takes_the_clients_first_known_protocol() {
        let client = vec![
            "v5.channel.k8s.io".to_string(),
            "v4.channel.k8s.io".to_string(),
        ];
        assert_eq!(
            negotiate(&client, &SPDY_REMOTECOMMAND),
            Ok(Some("v4.channel.k8s.io"))
        );
        assert_eq!(negotiate(&[], &SPDY_REMOTECOMMAND), Ok(None));
        assert!(negotiate(&["v9".to_string()], &SPDY_REMOTECOMMAND).is_err());
    }

    #[test]
    fn header_values_are_split_and_trimmed() {
        let mut h = HeaderMap::new();
        h.append(
            PROTOCOL_HEADER,
            HeaderValue::from_static("v4.channel.k8s.io, v3.channel.k8s.io"),
        );
        h.append(PROTOCOL_HEADER, HeaderValue::from_static("channel.k8s.io"));
        assert_eq!(
            values(&h, PROTOCOL_HEADER),
            ["v4.channel.k8s.io", "v3.channel.k8s.io", "channel.k8s.io"]
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        assert!(has_token(&h, header::UPGRADE, "spdy/3.1"));
        assert!(!has_token(&h, header::UPGRADE, "websocket"));
    }

    #[test]
    fn websocket_ports_come_from_the_query_or_the_request() {
        assert_eq!(
            ws_ports("port=80&port=443,8080", &[]),
            Ok(vec![80, 443, 8080])
        );
        assert_eq!(ws_ports("", &[8080]), Ok(vec![8080]));
        assert!(ws_ports("port=0", &[]).is_err());
        assert!(ws_ports("", &[]).is_err());
        assert!(ws_ports("", &[70000]).is_err());
    }
}
