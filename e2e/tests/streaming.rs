//! Exec, attach and port-forward through the streaming server's URLs, spoken as kubectl
//! and crictl speak them (SPDY/3.1 and WebSocket), by the suite's own client
//! (`e2e::streaming`): what a user sees is what is asserted (the output, the exit code on
//! the error stream, `stty size` after a resize, bytes through a forwarded port).

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use e2e::client::{spec, Cri};
use e2e::harness::BusyboxEnv;
use e2e::streaming::{
    exit_code_of, upgrade, ws_connect, ws_read_all, ws_read_until, ws_send, SpdyClient, GOAWAY,
    PING,
};
use futures::StreamExt;

const NETWORK: &str = "bridge = \"crtst0\"\nsubnet = \"10.229.0.0/16\"";
const V4: &str = "v4.channel.k8s.io";

struct Pod {
    id: String,
    config: proto::PodSandboxConfig,
}

async fn run_pod(cri: &mut Cri, name: &str) -> Result<Pod> {
    let config = proto::PodSandboxConfig {
        metadata: Some(proto::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "e2e".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        ..Default::default()
    };
    let id = cri.run_pod(&config).await?;
    Ok(Pod { id, config })
}

async fn start_container(
    cri: &mut Cri,
    pod: &Pod,
    image: &str,
    name: &str,
    command: &[&str],
    tty: bool,
    stdin: bool,
) -> Result<String> {
    let config = proto::ContainerConfig {
        metadata: Some(proto::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(spec(image)),
        command: command.iter().map(|s| s.to_string()).collect(),
        tty,
        stdin,
        log_path: format!("{name}.log"),
        ..Default::default()
    };
    let id = cri.create_container(&pod.id, &pod.config, config).await?;
    cri.start_container(&id).await?;
    Ok(id)
}

/// Stop and remove the pod; both must succeed (every exec, attach and forward is over).
async fn remove_pod(cri: &mut Cri, pod: &Pod) -> Result<()> {
    cri.stop_pod(&pod.id).await.context("StopPodSandbox")?;
    cri.remove_pod(&pod.id).await.context("RemovePodSandbox")?;
    Ok(())
}

async fn exec_url(
    cri: &mut Cri,
    ctr: &str,
    cmd: &[&str],
    tty: bool,
    stdin: bool,
) -> Result<String> {
    Ok(cri
        .runtime
        .exec(proto::ExecRequest {
            container_id: ctr.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            tty,
            stdin,
            stdout: true,
            stderr: !tty,
        })
        .await?
        .into_inner()
        .url)
}

/// The remote-command streams a v4 client opens, error first as client-go does.
struct Streams {
    error: u32,
    stdin: Option<u32>,
    stdout: u32,
    stderr: Option<u32>,
    resize: Option<u32>,
}

async fn open_streams(c: &mut SpdyClient, tty: bool, stdin: bool) -> Result<Streams> {
    let error = c.open(&[("streamType", "error")]).await?;
    c.finish(error).await?;
    let stdin = if stdin {
        Some(c.open(&[("streamType", "stdin")]).await?)
    } else {
        None
    };
    let stdout = c.open(&[("streamType", "stdout")]).await?;
    c.finish(stdout).await?;
    let stderr = if tty {
        None
    } else {
        let s = c.open(&[("streamType", "stderr")]).await?;
        c.finish(s).await?;
        Some(s)
    };
    let resize = if tty {
        Some(c.open(&[("streamType", "resize")]).await?)
    } else {
        None
    };
    Ok(Streams {
        error,
        stdin,
        stdout,
        stderr,
        resize,
    })
}

/// Exec over SPDY: output on stdout and stderr, the exit code on the error stream, both
/// separately; a missing command's 127; an interactive `cat`.
async fn spdy_exec(cri: &mut Cri, ctr: &str) -> Result<()> {
    let url = exec_url(
        cri,
        ctr,
        &["sh", "-c", "echo hello; echo oops >&2; exit 7"],
        false,
        false,
    )
    .await?;
    let (chosen, mut c) =
        SpdyClient::connect(&url, &["v5.channel.k8s.io", V4, "v3.channel.k8s.io"]).await?;
    ensure!(chosen == V4, "negotiated {chosen:?}");
    let s = open_streams(&mut c, false, false).await?;
    c.ping(7).await?;
    let out = c.read_to_end(s.stdout).await?;
    let err = c.read_to_end(s.stderr.unwrap()).await?;
    let status = c.read_to_end(s.error).await?;
    ensure!(
        out == b"hello\n",
        "stdout {:?}",
        String::from_utf8_lossy(&out)
    );
    ensure!(
        err == b"oops\n",
        "stderr {:?}",
        String::from_utf8_lossy(&err)
    );
    ensure!(
        exit_code_of(&status)? == 7,
        "status {}",
        String::from_utf8_lossy(&status)
    );
    // The ping came back with its id, and the session ended with a GOAWAY.
    let mut saw_ping = false;
    let mut saw_goaway = false;
    while let Ok(Some((kind, _, payload))) =
        tokio::time::timeout(Duration::from_millis(500), c.control.recv()).await
    {
        saw_ping |= kind == PING && payload == 7u32.to_be_bytes();
        saw_goaway |= kind == GOAWAY;
    }
    ensure!(saw_ping, "no PING answer");
    ensure!(saw_goaway, "no GOAWAY at the end");

    // The URL was single-use.
    let (status, _, _) = upgrade(
        &url,
        "POST",
        &[("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")],
    )
    .await?;
    ensure!(status == 404, "a replayed token answered {status}");
    let (status, _, _) = upgrade(&url.replace("/exec/", "/exec/00"), "POST", &[]).await?;
    ensure!(status == 404, "an unknown token answered {status}");

    // A command that is not there: 127 on the error stream.
    let url = exec_url(cri, ctr, &["/no/such/command"], false, false).await?;
    let (_, mut c) = SpdyClient::connect(&url, &[V4]).await?;
    let s = open_streams(&mut c, false, false).await?;
    let _ = c.read_to_end(s.stdout).await?;
    let status = c.read_to_end(s.error).await?;
    ensure!(
        exit_code_of(&status)? == 127,
        "status {}",
        String::from_utf8_lossy(&status)
    );

    // Interactive: what goes in comes out, and the end of stdin ends `cat`.
    let url = exec_url(cri, ctr, &["cat"], false, true).await?;
    let (_, mut c) = SpdyClient::connect(&url, &[V4]).await?;
    let s = open_streams(&mut c, false, true).await?;
    let stdin = s.stdin.unwrap();
    c.send(stdin, b"ping 1\n").await?;
    c.read_until(s.stdout, b"ping 1\n").await?;
    c.send(stdin, b"ping 2\n").await?;
    c.read_until(s.stdout, b"ping 2\n").await?;
    c.finish(stdin).await?;
    let rest = c.read_to_end(s.stdout).await?;
    ensure!(
        rest.is_empty(),
        "more output: {:?}",
        String::from_utf8_lossy(&rest)
    );
    let status = c.read_to_end(s.error).await?;
    ensure!(
        exit_code_of(&status)? == 0,
        "status {}",
        String::from_utf8_lossy(&status)
    );
    Ok(())
}

/// A tty exec: one raw stream, a resize applied (`stty size`), the shell's exit code.
async fn spdy_exec_tty(cri: &mut Cri, ctr: &str) -> Result<()> {
    let url = exec_url(cri, ctr, &["sh"], true, true).await?;
    let (_, mut c) = SpdyClient::connect(&url, &[V4]).await?;
    let s = open_streams(&mut c, true, true).await?;
    c.send(s.resize.unwrap(), br#"{"Width":100,"Height":30}"#)
        .await?;
    // Give the resize a moment to land before the shell asks.
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.send(s.stdin.unwrap(), b"stty size; exit 3\n").await?;
    let out = c.read_to_end(s.stdout).await?;
    let text = String::from_utf8_lossy(&out);
    ensure!(text.contains("30 100"), "tty output {text:?}");
    let status = c.read_to_end(s.error).await?;
    ensure!(
        exit_code_of(&status)? == 3,
        "status {}",
        String::from_utf8_lossy(&status)
    );
    // Resize twice more, split across frames, then ask again.
    let url = exec_url(cri, ctr, &["sh"], true, true).await?;
    let (_, mut c) = SpdyClient::connect(&url, &[V4]).await?;
    let s = open_streams(&mut c, true, true).await?;
    let r = s.resize.unwrap();
    c.send(r, br#"{"Width":90,"Hei"#).await?;
    c.send(r, br#"ght":20}{"Width":132,"Height":43}"#).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.send(s.stdin.unwrap(), b"stty size; exit\n").await?;
    let out = c.read_to_end(s.stdout).await?;
    let text = String::from_utf8_lossy(&out);
    ensure!(text.contains("43 132"), "tty output {text:?}");
    Ok(())
}

/// A client that goes away mid-exec takes its process with it.
async fn dropped_client(cri: &mut Cri, ctr: &str) -> Result<()> {
    let url = exec_url(cri, ctr, &["sleep", "1234"], false, false).await?;
    let (_, mut c) = SpdyClient::connect(&url, &[V4]).await?;
    let _s = open_streams(&mut c, false, false).await?;
    let ps = |cri: &mut Cri| {
        let req = proto::ExecSyncRequest {
            container_id: ctr.into(),
            cmd: vec![
                "/bin/busybox".into(),
                "ps".into(),
                "-o".into(),
                "args".into(),
            ],
            timeout: 10,
        };
        let mut rt = cri.runtime.clone();
        async move {
            Ok::<_, anyhow::Error>(
                String::from_utf8_lossy(&rt.exec_sync(req).await?.into_inner().stdout).to_string(),
            )
        }
    };
    // The process starts once the streams are open, a moment after the last reply.
    let started = std::time::Instant::now();
    loop {
        let now = ps(cri).await?;
        if now.contains("sleep 1234") {
            break;
        }
        if started.elapsed() > Duration::from_secs(10) {
            bail!("the exec is not running: {now}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.abort();
    let started = std::time::Instant::now();
    loop {
        let now = ps(cri).await?;
        if !now.contains("sleep 1234") {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(10) {
            bail!("the exec outlived its client: {now}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Exec over WebSocket in each channel protocol.
async fn ws_exec(cri: &mut Cri, ctr: &str) -> Result<()> {
    // v5: stdin ends with the close signal; the exit code in the Status.
    let url = exec_url(
        cri,
        ctr,
        &["sh", "-c", "cat; echo done >&2; exit 5"],
        false,
        true,
    )
    .await?;
    let (chosen, mut ws) = ws_connect(&url, &["v5.channel.k8s.io", V4]).await?;
    ensure!(chosen == "v5.channel.k8s.io", "negotiated {chosen:?}");
    ws_send(&mut ws, 0, b"via websocket\n").await?;
    ws_send(&mut ws, 255, &[0]).await?;
    let got = ws_read_all(&mut ws).await?;
    ensure!(
        !got.contains_key(&255),
        "the server sent a close signal: {got:?}"
    );
    ensure!(
        got.get(&1).map(Vec::as_slice) == Some(&b"via websocket\n"[..]),
        "stdout {got:?}"
    );
    ensure!(
        got.get(&2).map(Vec::as_slice) == Some(&b"done\n"[..]),
        "stderr {got:?}"
    );
    ensure!(
        exit_code_of(got.get(&3).context("no status")?)? == 5,
        "status {got:?}"
    );

    // v4 binary: no close signal; output and status.
    let url = exec_url(cri, ctr, &["echo", "four"], false, false).await?;
    let (chosen, mut ws) = ws_connect(&url, &[V4]).await?;
    ensure!(chosen == V4, "negotiated {chosen:?}");
    let got = ws_read_all(&mut ws).await?;
    ensure!(
        !got.contains_key(&255),
        "the server sent a close signal: {got:?}"
    );
    ensure!(
        got.get(&1).map(Vec::as_slice) == Some(&b"four\n"[..]),
        "stdout {got:?}"
    );
    ensure!(
        exit_code_of(got.get(&3).context("no status")?)? == 0,
        "status {got:?}"
    );

    // base64: text messages, the channel as a digit.
    let url = exec_url(cri, ctr, &["echo", "sixty-four"], false, false).await?;
    let (chosen, mut ws) = ws_connect(&url, &["base64.channel.k8s.io"]).await?;
    ensure!(chosen == "base64.channel.k8s.io", "negotiated {chosen:?}");
    let mut stdout = Vec::new();
    while let Some(m) = tokio::time::timeout(e2e::streaming::WAIT, ws.next()).await? {
        match m {
            Ok(tokio_tungstenite::tungstenite::Message::Text(t)) => {
                use base64::Engine;
                let t = t.as_str();
                if let Some(rest) = t.strip_prefix('1') {
                    stdout.extend(base64::engine::general_purpose::STANDARD.decode(rest)?);
                }
            }
            Ok(tokio_tungstenite::tungstenite::Message::Close(_)) => break,
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
    }
    ensure!(
        stdout == b"sixty-four\n",
        "stdout {:?}",
        String::from_utf8_lossy(&stdout)
    );
    Ok(())
}

/// Attach: a tty container's shell answers through the attach; two attaches to a pipe
/// container both see what one of them made it print.
async fn attach(cri: &mut Cri, pod: &Pod, image: &str) -> Result<()> {
    let tty = start_container(cri, pod, image, "tty", &["sh"], true, true).await?;
    let url = cri
        .runtime
        .attach(proto::AttachRequest {
            container_id: tty.clone(),
            stdin: true,
            tty: true,
            stdout: true,
            stderr: false,
        })
        .await?
        .into_inner()
        .url;
    let (_, mut c) = SpdyClient::connect(&url, &[V4]).await?;
    let s = open_streams(&mut c, true, true).await?;
    c.send(s.resize.unwrap(), br#"{"Width":77,"Height":11}"#)
        .await?;
    // As a person would: wait for the shell's prompt, then type.
    c.send(s.stdin.unwrap(), b"\n").await?;
    c.read_until(s.stdout, b"# ").await?;
    c.send(s.stdin.unwrap(), b"echo attached-$((40+2)); stty size\n")
        .await?;
    let out = c.read_until(s.stdout, b"11 77").await?;
    ensure!(
        String::from_utf8_lossy(&out).contains("attached-42"),
        "attach output {:?}",
        String::from_utf8_lossy(&out)
    );
    drop(c);

    let piped = start_container(
        cri,
        pod,
        image,
        "piped",
        &["sh", "-c", "while read l; do echo \"got $l\"; done"],
        false,
        true,
    )
    .await?;
    let attach_url = |cri: &mut Cri, stdin: bool| {
        let mut rt = cri.runtime.clone();
        let req = proto::AttachRequest {
            container_id: piped.clone(),
            stdin,
            tty: false,
            stdout: true,
            stderr: true,
        };
        async move { Ok::<_, anyhow::Error>(rt.attach(req).await?.into_inner().url) }
    };
    let (_, mut a) = SpdyClient::connect(&attach_url(cri, true).await?, &[V4]).await?;
    let sa = open_streams(&mut a, false, true).await?;
    let (_, mut b) = ws_connect(&attach_url(cri, false).await?, &["v5.channel.k8s.io"]).await?;
    // Let the second attach register before the line goes in.
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.send(sa.stdin.unwrap(), b"x\n").await?;
    a.read_until(sa.stdout, b"got x\n").await?;
    let mut seen = Vec::new();
    while !seen.windows(6).any(|w| w == b"got x\n") {
        match tokio::time::timeout(e2e::streaming::WAIT, b.next()).await? {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Binary(m)))
                if m.first() == Some(&1) =>
            {
                seen.extend_from_slice(&m[1..]);
            }
            Some(Ok(_)) => {}
            other => bail!(
                "the second attach ended: {other:?}, saw {:?}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
    // The CRI log has it too.
    let status = cri
        .runtime
        .container_status(proto::ContainerStatusRequest {
            container_id: piped.clone(),
            verbose: false,
        })
        .await?
        .into_inner()
        .status
        .context("no status")?;
    let log = std::fs::read_to_string(&status.log_path).unwrap_or_default();
    ensure!(log.contains("stdout F got x"), "log {log:?}");
    Ok(())
}

fn pf_url(
    cri: &mut Cri,
    pod: &Pod,
    ports: &[i32],
) -> impl std::future::Future<Output = Result<String>> {
    let mut rt = cri.runtime.clone();
    let req = proto::PortForwardRequest {
        pod_sandbox_id: pod.id.clone(),
        port: ports.to_vec(),
    };
    async move { Ok(rt.port_forward(req).await?.into_inner().url) }
}

/// One forwarded connection over `c`: send `data`, half-close, read the echo.
async fn forward_once(
    c: &mut SpdyClient,
    request: u32,
    port: u16,
    data: &[u8],
) -> Result<(u32, u32)> {
    let rid = request.to_string();
    let p = port.to_string();
    let error = c
        .open(&[("streamType", "error"), ("port", &p), ("requestID", &rid)])
        .await?;
    c.finish(error).await?;
    let stream = c
        .open(&[("streamType", "data"), ("port", &p), ("requestID", &rid)])
        .await?;
    c.send(stream, data).await?;
    c.finish(stream).await?;
    Ok((error, stream))
}

/// Port-forward into the pod's own network namespace: 10 MB each way intact, two
/// connections at once, two ports, over SPDY and over SPDY tunnelled in a WebSocket.
async fn port_forward(cri: &mut Cri, pod: &Pod, image: &str) -> Result<()> {
    start_container(
        cri,
        pod,
        image,
        "echo",
        &[
            "/bin/busybox",
            "nc",
            "-ll",
            "-p",
            "9000",
            "-e",
            "/bin/busybox",
            "cat",
        ],
        false,
        false,
    )
    .await?;
    start_container(
        cri,
        pod,
        image,
        "hello",
        &[
            "/bin/busybox",
            "nc",
            "-ll",
            "-p",
            "9001",
            "-e",
            "/bin/busybox",
            "echo",
            "hello from 9001",
        ],
        false,
        false,
    )
    .await?;
    // The listeners are inside the pod's namespace only: not on the host's loopback.
    tokio::time::sleep(Duration::from_millis(500)).await;
    ensure!(
        std::net::TcpStream::connect(("127.0.0.1", 9001)).is_err(),
        "port 9001 answers on the host: the test can't tell the namespaces apart"
    );
    let big: Vec<u8> = (0..10_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let url = pf_url(cri, pod, &[9000]).await?;
    let (chosen, mut c) = SpdyClient::connect(&url, &["portforward.k8s.io"]).await?;
    ensure!(chosen == "portforward.k8s.io", "negotiated {chosen:?}");
    let started = std::time::Instant::now();
    let (e1, d1) = forward_once(&mut c, 0, 9000, &big).await?;
    let (e2, d2) = forward_once(&mut c, 1, 9001, b"").await?;
    let (e3, d3) = forward_once(&mut c, 2, 9000, &big[..1_000_000]).await?;
    let echoed = c.read_to_end(d1).await?;
    let secs = started.elapsed().as_secs_f64();
    ensure!(
        echoed.len() == big.len(),
        "echoed {} of {} bytes",
        echoed.len(),
        big.len()
    );
    ensure!(echoed == big, "the echo differs");
    eprintln!(
        "port-forward: 10 MB each way in {secs:.2} s ({:.0} MB/s)",
        20.0 / secs
    );
    ensure!(
        c.read_to_end(d2).await? == b"hello from 9001\n",
        "port 9001"
    );
    ensure!(
        c.read_to_end(d3).await? == big[..1_000_000],
        "the second connection to 9000"
    );
    for e in [e1, e2, e3] {
        let msg = c.read_to_end(e).await?;
        ensure!(
            msg.is_empty(),
            "error stream: {}",
            String::from_utf8_lossy(&msg)
        );
    }
    // A port nobody listens on: the reason on the error stream.
    let (e4, d4) = forward_once(&mut c, 3, 9999, b"x").await?;
    let msg = c.read_to_end(e4).await?;
    ensure!(
        String::from_utf8_lossy(&msg).contains("9999"),
        "error stream: {:?}",
        String::from_utf8_lossy(&msg)
    );
    let _ = c.read_to_end(d4).await?;
    drop(c);

    // SPDY in a WebSocket (what `-websocket-portforward` asks for).
    let url = pf_url(cri, pod, &[9001]).await?;
    let (chosen, ws) = ws_connect(&url, &["SPDY/3.1+portforward.k8s.io"]).await?;
    ensure!(
        chosen == "SPDY/3.1+portforward.k8s.io",
        "negotiated {chosen:?}"
    );
    let mut c = SpdyClient::over_websocket(ws)?;
    let (e, d) = forward_once(&mut c, 0, 9001, b"").await?;
    ensure!(
        c.read_to_end(d).await? == b"hello from 9001\n",
        "port 9001 through the tunnel"
    );
    ensure!(c.read_to_end(e).await?.is_empty(), "error stream");

    // The channel protocol: data on channel 0 and errors on 1, each starting with the port.
    let url = pf_url(cri, pod, &[9001]).await?;
    let (chosen, mut ws) = ws_connect(&url, &[V4]).await?;
    ensure!(chosen == V4, "negotiated {chosen:?}");
    let got = ws_read_until(&mut ws, 0, b"hello from 9001\n").await?;
    let data = got.get(&0).context("no data channel")?;
    ensure!(data.starts_with(&9001u16.to_le_bytes()), "data {data:?}");
    ensure!(
        &data[2..] == b"hello from 9001\n",
        "data {:?}",
        String::from_utf8_lossy(data)
    );
    ensure!(
        got.get(&1).map(Vec::as_slice) == Some(&9001u16.to_le_bytes()[..]),
        "error channel {got:?}"
    );
    Ok(())
}

#[tokio::test]
async fn exec_attach_and_port_forward_through_the_streaming_server() -> Result<()> {
    let test = "exec_attach_and_port_forward_through_the_streaming_server";
    let Some(BusyboxEnv {
        daemon,
        mut cri,
        image,
        ..
    }) = BusyboxEnv::start(test, NETWORK).await?
    else {
        return Ok(());
    };
    let pod = run_pod(&mut cri, "streaming").await?;
    let result = async {
        let ctr = start_container(
            &mut cri,
            &pod,
            &image,
            "main",
            &["sleep", "3600"],
            false,
            false,
        )
        .await?;
        spdy_exec(&mut cri, &ctr).await.context("SPDY exec")?;
        spdy_exec_tty(&mut cri, &ctr)
            .await
            .context("SPDY tty exec")?;
        dropped_client(&mut cri, &ctr)
            .await
            .context("dropped client")?;
        ws_exec(&mut cri, &ctr).await.context("WebSocket exec")?;
        attach(&mut cri, &pod, &image).await.context("attach")?;
        port_forward(&mut cri, &pod, &image)
            .await
            .context("port-forward")?;
        // Bad requests are refused at the CRI call.
        let e = cri
            .runtime
            .exec(proto::ExecRequest {
                container_id: "no-such-container".into(),
                cmd: vec!["true".into()],
                stdout: true,
                ..Default::default()
            })
            .await
            .err()
            .context("exec in an unknown container")?;
        ensure!(e.code() == tonic::Code::NotFound, "{e:?}");
        let e = cri
            .runtime
            .exec(proto::ExecRequest {
                container_id: ctr.clone(),
                cmd: vec!["true".into()],
                tty: true,
                stderr: true,
                ..Default::default()
            })
            .await
            .err()
            .context("tty with stderr")?;
        ensure!(
            e.code() == tonic::Code::InvalidArgument && e.message().contains("stderr"),
            "{e:?}"
        );
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if result.is_err() {
        eprintln!("{}", daemon.log_tail(60));
    }
    let removed = remove_pod(&mut cri, &pod).await;
    result?;
    removed
}
