//! Exec and attach once the client's streams are open, whatever the wire: the client's
//! stdin goes into the descriptor the shim handed over, the container's output comes out
//! of the others, resize events go to the pty, and the error stream gets the outcome.
//!
//! The session ends with the process (exec) or the container's output (attach), or
//! earlier when the client goes away: then the exec's session is dropped, which makes
//! the shim kill the exec'd process, and an attach just detaches.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use runtime::container::{ExecExit, StreamFds, StreamRequest};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::channel::{Inbound, Outbound};
use super::fdio::{copy_in, copy_out, Fd};
use super::status::{Outcome, StatusFormat};
use super::Backend;

/// How long an exec's output may still flow after its process exited (a background
/// child that inherited the pipes holds them open for ever).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(10);
/// The longest resize event accepted; more unparsed bytes end the resize stream.
const MAX_RESIZE_EVENT: usize = 4096;

/// The client's side of an exec or attach, however it was negotiated.
pub struct Remote {
    pub stdin: Option<Inbound>,
    pub stdout: Option<Outbound>,
    pub stderr: Option<Outbound>,
    pub resize: Option<Inbound>,
    pub error: Option<Outbound>,
    pub format: StatusFormat,
    /// Cancelled when the client's connection ends.
    pub closed: CancellationToken,
}

impl Remote {
    async fn finish(mut self, outcome: Outcome) {
        for out in [self.stdout.as_mut(), self.stderr.as_mut()]
            .into_iter()
            .flatten()
        {
            out.close().await;
        }
        if let Some(mut error) = self.error.take() {
            let bytes = outcome.encode(self.format);
            if !bytes.is_empty() {
                let _ = error.send(bytes.into()).await;
            }
            error.close().await;
        }
    }
}

/// The copies between the client and the process's descriptors.
struct Pumps {
    /// Output copies (stdout, stderr): the exec or attach is over when they end.
    outputs: JoinSet<()>,
    /// Input and resize: they end with the client or the process.
    inputs: JoinSet<()>,
    /// The stdin descriptor when the caller copies the input itself.
    stdin: Option<Arc<Fd>>,
}

impl Pumps {
    /// Start copying. Output comes from the stdout/stderr descriptors, or from the pty
    /// when there is no stdout pipe (an exec's tty); input goes to the stdin descriptor, or
    /// the pty; resize events go to the pty, or for a tty attach to its stdin, which is a
    /// dup of the container's pty master. With `take_stdin` false the caller keeps the
    /// client's stdin (attach's StdinOnce must see its end).
    fn start(
        mut fds: StreamFds,
        remote: &mut Remote,
        tty: bool,
        take_stdin: bool,
    ) -> std::io::Result<Pumps> {
        let mut outputs = JoinSet::new();
        let mut inputs = JoinSet::new();
        // One Fd per descriptor; the pty is shared by output, input and resize.
        let own = |fd: Option<std::os::fd::OwnedFd>, pty: bool| {
            fd.map(|fd| Fd::new(fd, pty).map(Arc::new)).transpose()
        };
        let pty = own(fds.pty.take(), true)?;
        let stdout = own(fds.stdout.take(), false)?.or_else(|| pty.clone());
        if let (Some(fd), Some(out)) = (stdout, remote.stdout.take()) {
            outputs.spawn(copy_out(fd, out));
        }
        if let (Some(fd), Some(out)) = (own(fds.stderr.take(), false)?, remote.stderr.take()) {
            outputs.spawn(copy_out(fd, out));
        }
        let stdin = own(fds.stdin.take(), tty)?.or_else(|| pty.clone());
        let resize_to = pty.clone().or_else(|| stdin.clone().filter(|_| tty));
        if let (Some(p), Some(resize)) = (resize_to, remote.resize.take()) {
            inputs.spawn(resize_events(resize, p));
        }
        let mut kept = None;
        if let Some(fd) = stdin {
            if take_stdin {
                if let Some(input) = remote.stdin.take() {
                    inputs.spawn(copy_in(input, fd));
                }
            } else {
                kept = Some(fd);
            }
        }
        Ok(Pumps {
            outputs,
            inputs,
            stdin: kept,
        })
    }

    /// Wait for every output to reach its end.
    async fn outputs_done(&mut self) {
        while self.outputs.join_next().await.is_some() {}
    }
}

/// Terminal sizes as the client sends them: JSON objects one after another
/// (`{"Width":80,"Height":24}`), in chunks that need not match the objects.
async fn resize_events(mut input: Inbound, pty: Arc<Fd>) {
    #[derive(serde::Deserialize)]
    struct Size {
        #[serde(rename = "Width")]
        width: u16,
        #[serde(rename = "Height")]
        height: u16,
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = input.recv().await {
        buf.extend_from_slice(&chunk);
        let mut events = serde_json::Deserializer::from_slice(&buf).into_iter::<Size>();
        let mut used = 0;
        let mut broken = false;
        while let Some(event) = events.next() {
            match event {
                Ok(size) => {
                    if let Err(e) =
                        runtime::container::resize_pty(&pty.as_fd(), size.width, size.height)
                    {
                        tracing::debug!(error = %e, "resizing the terminal");
                    }
                }
                Err(e) if e.is_eof() => break,
                Err(e) => {
                    tracing::debug!(error = %e, "a malformed resize event ends the resize stream");
                    broken = true;
                    break;
                }
            }
            used = events.byte_offset();
        }
        if broken {
            return;
        }
        buf.advance(used);
        if buf.len() > MAX_RESIZE_EVENT {
            tracing::debug!("an over-long resize event ends the resize stream");
            return;
        }
    }
}

/// Run `req`'s command and stream it to `remote`.
pub async fn exec(backend: Arc<dyn Backend>, req: proto::ExecRequest, mut remote: Remote) {
    let span = tracing::debug_span!("exec_stream", container = %req.container_id);
    let _e = span.enter();
    let want = StreamRequest {
        tty: req.tty,
        stdin: req.stdin && remote.stdin.is_some(),
        stdout: req.stdout && remote.stdout.is_some(),
        stderr: req.stderr && !req.tty && remote.stderr.is_some(),
    };
    let started = backend.exec(&req.container_id, &req.cmd, want).await;
    let (fds, mut session) = match started {
        Ok(s) => s,
        Err(e) => {
            let outcome = Outcome::Internal(format!("error executing command in container: {e}"));
            return remote.finish(outcome).await;
        }
    };
    let mut pumps = match Pumps::start(fds, &mut remote, req.tty, true) {
        Ok(p) => p,
        Err(e) => {
            let outcome = Outcome::Internal(format!("error streaming the exec: {e}"));
            return remote.finish(outcome).await;
        }
    };
    let closed = remote.closed.clone();
    let exit = tokio::select! {
        exit = session.wait() => exit,
        () = closed.cancelled() => {
            // Dropping the session makes the shim kill the process and its children.
            tracing::debug!("the client went away; the exec is killed");
            return;
        }
    };
    let drained = tokio::time::timeout(DRAIN_AFTER_EXIT, pumps.outputs_done());
    tokio::select! {
        _ = drained => {}
        () = closed.cancelled() => return,
    }
    pumps.inputs.abort_all();
    let outcome = match exit {
        Ok(ExecExit { exit_code: 0, .. }) => Outcome::Success,
        Ok(ExecExit { exit_code, message }) => Outcome::ExitCode {
            code: exit_code,
            message: message.unwrap_or_else(|| format!("exit status {exit_code}")),
        },
        Err(e) => Outcome::Internal(format!("error executing command in container: {e}")),
    };
    tracing::debug!(?outcome, "exec finished");
    remote.finish(outcome).await
}

/// Attach `remote` to the running container of `req`.
pub async fn attach(backend: Arc<dyn Backend>, req: proto::AttachRequest, mut remote: Remote) {
    let span = tracing::debug_span!("attach", container = %req.container_id);
    let _e = span.enter();
    let want = StreamRequest {
        tty: req.tty,
        stdin: req.stdin && remote.stdin.is_some(),
        stdout: req.stdout && remote.stdout.is_some(),
        stderr: req.stderr && remote.stderr.is_some(),
    };
    let (fds, mut session) = match backend.attach(&req.container_id, want).await {
        Ok(s) => s,
        Err(e) => {
            let outcome = Outcome::Internal(format!("error attaching to container: {e}"));
            return remote.finish(outcome).await;
        }
    };
    // StdinOnce needs to see the client's end of input: its copy runs here, not as a pump.
    let tty = session.tty();
    let mut pumps = match Pumps::start(fds, &mut remote, tty, false) {
        Ok(p) => p,
        Err(e) => {
            let outcome = Outcome::Internal(format!("error streaming the attach: {e}"));
            return remote.finish(outcome).await;
        }
    };
    let closed = remote.closed.clone();
    let has_output = !pumps.outputs.is_empty();
    let mut stdin_fd = pumps.stdin.take();
    let mut stdin = remote.stdin.take().filter(|_| stdin_fd.is_some());
    loop {
        tokio::select! {
            () = closed.cancelled() => return,
            () = pumps.outputs_done(), if has_output => break,
            chunk = async { stdin.as_mut()?.recv().await }, if stdin.is_some() => match chunk {
                Some(chunk) => {
                    if let Some(fd) = &stdin_fd {
                        if fd.write_all(&chunk).await.is_err() {
                            stdin_fd = None;
                        }
                    }
                }
                None => {
                    stdin = None;
                    stdin_fd = None;
                    // A tty's stdin is the pty, which the output shares: it stays.
                    if session.stdin_once() && !tty {
                        if let Err(e) = session.close_stdin().await {
                            tracing::debug!(error = %e, "closing the container's stdin");
                        }
                    }
                    if !has_output {
                        break;
                    }
                }
            },
            else => break,
        }
    }
    pumps.inputs.abort_all();
    remote.finish(Outcome::Success).await
}
