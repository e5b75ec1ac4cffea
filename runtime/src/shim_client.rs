//! corrald's side of `corral-shim`: start a pod's shim, reattach to it after a restart,
//! ask it things, and stop it. Async (tokio); the shim itself is not ([`crate::shim`]).
//!
//! Releasing a pod's shim has exactly one path, [`ShimHandle::shutdown`], and it is
//! idempotent: a shim already gone is success, and whatever a dead shim left behind (its
//! pause, the pinned PID namespace, the socket and pid files) is released here instead.

use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Interest};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::Mutex;

use crate::container::{AttachSession, ExecExit, ExecSession, StreamFds};
use crate::error::ErrorKind;
use crate::shim::args::Args;
use crate::shim::pause;
use crate::shim::protocol::{
    decode_answer, AnswerError, AttachReply, CreateReply, Empty, ErrorCode, ExecReply, PingReply,
    Request, StatusReply, StreamReply, MAX_ANSWER, MAX_LINE, PAUSE_COMM, PIDNS_FILE, PID_FILE,
    READY_FD_ENV, SHIM_COMM, SOCKET_FILE,
};
use crate::shim::sys;

pub use crate::shim::protocol::{
    Attach, CreateContainer, Exec, ExitStatus, ProcessStatus, RootfsMount, Streams,
};

/// How long a new shim may take to report ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an ordinary request may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// What a shutdown may take beyond its grace period (the shim waits up to 2 s after SIGKILL).
const SHUTDOWN_SLACK: Duration = Duration::from_secs(5);
/// How long an exiting shim may take to disappear.
const EXIT_WAIT: Duration = Duration::from_secs(2);

/// Environment variable naming the shim binary, over the default search.
pub const SHIM_BINARY_ENV: &str = "CORRAL_SHIM";

/// What a pod's shim is started with: exactly its command line.
pub use crate::shim::args::Args as ShimSpec;

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("starting {}: {source}", binary.display())]
    Spawn {
        binary: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("shim for pod {pod_id} failed to start: {message}")]
    Start {
        pod_id: String,
        code: ErrorCode,
        message: String,
    },
    #[error("shim for pod {pod_id} not ready after {after:?}")]
    NotReady { pod_id: String, after: Duration },
    #[error("no shim runs in {}", dir.display())]
    NotRunning { dir: PathBuf },
    #[error("shim in {}: {op}: {source}", dir.display())]
    Io {
        dir: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("shim in {}: {op} timed out after {after:?}", dir.display())]
    Timeout {
        dir: PathBuf,
        op: &'static str,
        after: Duration,
    },
    #[error("shim in {}: bad answer to {op}: {message}", dir.display())]
    Protocol {
        dir: PathBuf,
        op: &'static str,
        message: String,
    },
    #[error("shim in {}: {op}: {message}", dir.display())]
    Refused {
        dir: PathBuf,
        op: &'static str,
        code: ErrorCode,
        field: Option<String>,
        message: String,
    },
}

impl ShimError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ShimError::Spawn { .. } | ShimError::Protocol { .. } => ErrorKind::Internal,
            ShimError::Start { code, .. } => code_kind(*code, None),
            ShimError::Refused { code, field, .. } => code_kind(*code, field.as_deref()),
            ShimError::NotReady { .. }
            | ShimError::NotRunning { .. }
            | ShimError::Io { .. }
            | ShimError::Timeout { .. } => ErrorKind::Unavailable,
        }
    }
}

fn code_kind(code: ErrorCode, field: Option<&str>) -> ErrorKind {
    match code {
        ErrorCode::InvalidArgument => ErrorKind::InvalidArgument {
            field: field.unwrap_or_default().to_string(),
        },
        ErrorCode::NotFound => ErrorKind::NotFound,
        ErrorCode::AlreadyExists => ErrorKind::AlreadyExists,
        ErrorCode::FailedPrecondition => ErrorKind::FailedPrecondition,
        ErrorCode::Unavailable => ErrorKind::Unavailable,
        ErrorCode::Internal => ErrorKind::Internal,
    }
}

pub type Result<T, E = ShimError> = std::result::Result<T, E>;

/// The shim binary: `$CORRAL_SHIM`, else `corral-shim` beside the current executable, else
/// beside its directory (`target/debug` for a test in `target/debug/deps`), else `PATH`.
pub fn shim_binary() -> PathBuf {
    if let Some(path) = std::env::var_os(SHIM_BINARY_ENV).filter(|p| !p.is_empty()) {
        return path.into();
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        for dir in [Some(dir.as_path()), dir.parent()].into_iter().flatten() {
            let candidate = dir.join(SHIM_COMM);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from(SHIM_COMM)
}

/// Start a pod's shim and wait (up to [`READY_TIMEOUT`]) until it serves.
pub async fn spawn(spec: &ShimSpec) -> Result<ShimHandle> {
    let dir =
        std::path::absolute(&spec.dir).map_err(io_err(&spec.dir, "resolving the state dir"))?;
    let args = Args {
        dir: dir.clone(),
        ..spec.clone()
    };
    let binary = shim_binary();
    // The ready pipe is the spawned process's stdout, set up by std without a window in
    // which another thread's child could inherit it; the shim points its own stdout at
    // /dev/null once it has forked away.
    let mut child = tokio::process::Command::new(&binary)
        .args(args.to_args())
        .env(READY_FD_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ShimError::Spawn {
            binary: binary.clone(),
            source,
        })?;
    let Some(stdout) = child.stdout.take() else {
        let _ = child.start_kill();
        return Err(ShimError::Start {
            pod_id: spec.pod_id.clone(),
            code: ErrorCode::Internal,
            message: "no pipe to read the shim's ready report from".into(),
        });
    };
    let mut line = Vec::new();
    let mut reader = BufReader::new(stdout).take(MAX_LINE as u64);
    let read = tokio::time::timeout(READY_TIMEOUT, reader.read_until(b'\n', &mut line)).await;
    if read.is_err() {
        let _ = child.start_kill();
        let _ = child.wait().await;
        let _ = release_blocking(&dir, None).await;
        return Err(ShimError::NotReady {
            pod_id: spec.pod_id.clone(),
            after: READY_TIMEOUT,
        });
    }
    // The spawned process exits right after relaying the report.
    let exited = tokio::time::timeout(CALL_TIMEOUT, child.wait()).await;
    match decode_answer::<PingReply>(&line) {
        Ok(ready) => {
            tracing::debug!(pod = %spec.pod_id, pid = ready.pid, pause = ?ready.pause_pid, "shim ready");
            Ok(ShimHandle::new(dir, ready.pid, ready.pause_pid))
        }
        Err(AnswerError::Refused(e)) => Err(ShimError::Start {
            pod_id: spec.pod_id.clone(),
            code: e.kind,
            message: e.error,
        }),
        Err(AnswerError::Malformed(m)) => Err(ShimError::Start {
            pod_id: spec.pod_id.clone(),
            code: ErrorCode::Internal,
            message: match exited {
                Ok(Ok(status)) if line.is_empty() => {
                    format!("{} {status} without a report", binary.display())
                }
                _ => format!(
                    "bad readiness report {:?}: {m}",
                    String::from_utf8_lossy(&line)
                ),
            },
        }),
    }
}

/// Reattach to the shim serving `dir` (after a corrald restart): read `shim.pid`, connect
/// to `shim.sock`, and check with a ping that the two agree.
pub async fn connect(dir: &Path) -> Result<ShimHandle> {
    let dir = std::path::absolute(dir).map_err(io_err(dir, "resolving the state dir"))?;
    let pid = read_pid_file(&dir).ok_or_else(|| ShimError::NotRunning { dir: dir.clone() })?;
    let mut handle = ShimHandle::new(dir, pid, None);
    let ping = handle.ping().await?;
    if ping.pid != pid {
        return Err(ShimError::Protocol {
            dir: handle.dir.clone(),
            op: "ping",
            message: format!("{PID_FILE} says {pid} but pid {} answers", ping.pid),
        });
    }
    handle.pause_pid = ping.pause_pid;
    Ok(handle)
}

/// Release what a dead shim left in `dir` (its pause, the pinned PID namespace, the
/// socket and pid files) when there is no handle to shut down. Idempotent; does nothing
/// while a shim still serves `dir`.
pub async fn release(dir: &Path) -> Result<()> {
    let dir = std::path::absolute(dir).map_err(io_err(dir, "resolving the state dir"))?;
    release_blocking(&dir, None).await
}

/// True when `<dir>/shim.pid` names a live `corral-shim` serving `dir`.
pub fn is_alive(dir: &Path) -> bool {
    read_pid_file(dir).is_some_and(|pid| is_shim_process(pid, dir))
}

/// Container operations on the shim serving a pod's `dir`. Each call opens its own
/// connection, so a deferred answer (wait, exec) never holds up another call, and nothing
/// needs reattaching after a corrald restart.
#[derive(Debug, Clone)]
pub struct PodShim {
    dir: PathBuf,
}

/// How long a create may take: the shim gives the container's setup 10 s.
const CREATE_TIMEOUT: Duration = Duration::from_secs(15);

impl PodShim {
    pub fn new(dir: &Path) -> PodShim {
        PodShim {
            dir: dir.to_path_buf(),
        }
    }

    /// Make a container's init, blocked before `execve`; its host pid.
    pub async fn create_container(&self, req: CreateContainer) -> Result<i32> {
        let reply: CreateReply = self
            .call(&Request::CreateContainer(req), CREATE_TIMEOUT)
            .await?;
        Ok(reply.pid)
    }

    pub async fn start_container(&self, id: &str) -> Result<()> {
        let req = Request::StartContainer { id: id.to_string() };
        self.call::<Empty>(&req, CALL_TIMEOUT).await.map(|_| ())
    }

    /// Signal a container's init; one that has exited is success.
    pub async fn kill(&self, id: &str, signal: i32) -> Result<()> {
        let req = Request::Kill {
            id: id.to_string(),
            signal,
        };
        self.call::<Empty>(&req, CALL_TIMEOUT).await.map(|_| ())
    }

    /// The exit of a container, waiting up to `limit` for it (then `Timeout`).
    pub async fn wait(&self, id: &str, limit: Duration) -> Result<ExitStatus> {
        self.call(&Request::Wait { id: id.to_string() }, limit)
            .await
    }

    /// Run a process in a running container and collect its output. `limit` bounds the
    /// whole call; the shim's own timeout is in `exec.timeout_ms`.
    pub async fn exec(&self, exec: Exec, limit: Duration) -> Result<ExecReply> {
        self.call(&Request::Exec(exec), limit).await
    }

    pub async fn reopen_log(&self, id: &str) -> Result<()> {
        let req = Request::ReopenLog { id: id.to_string() };
        self.call::<Empty>(&req, CALL_TIMEOUT).await.map(|_| ())
    }

    /// Drop an exited container from the shim's table; idempotent.
    pub async fn forget(&self, id: &str) -> Result<()> {
        let req = Request::Forget { id: id.to_string() };
        self.call::<Empty>(&req, CALL_TIMEOUT).await.map(|_| ())
    }

    /// The shim's process table.
    pub async fn status(&self) -> Result<StatusReply> {
        self.call(&Request::Status, CALL_TIMEOUT).await
    }

    /// Start `exec` (whose `stream` says which stdio to stream) with its stdio passed
    /// here: the fds, and the session that owns the exec (dropping it kills the exec). A
    /// command that cannot be executed is a session whose exit is already known (126/127
    /// with the reason) and no fds.
    pub async fn exec_stream(&self, mut exec: Exec) -> Result<(StreamFds, ExecSession)> {
        const OP: &str = "exec";
        exec.stream.get_or_insert_with(Streams::default);
        let id = exec.id.clone();
        let mut conn = StreamConn::open(&self.dir).await?;
        let (reply, fds): (StreamReply, _) = conn
            .call(OP, &Request::Exec(exec), Some(CREATE_TIMEOUT))
            .await?;
        let fds =
            StreamFds::from_named(&reply.fds, fds).map_err(|message| ShimError::Protocol {
                dir: self.dir.clone(),
                op: OP,
                message,
            })?;
        let exit = reply.exit_code.map(|exit_code| ExecExit {
            exit_code,
            message: reply.message.clone(),
        });
        Ok((fds, ExecSession::new(conn, id, reply.pid, exit)))
    }

    /// Attach to the running container `id`: the fds and the session (dropping it
    /// detaches).
    pub async fn attach(&self, id: &str, streams: Streams) -> Result<(StreamFds, AttachSession)> {
        const OP: &str = "attach";
        let mut conn = StreamConn::open(&self.dir).await?;
        let request = Request::Attach(Attach {
            id: id.to_string(),
            streams,
        });
        let (reply, fds): (AttachReply, _) = conn.call(OP, &request, Some(CALL_TIMEOUT)).await?;
        let fds =
            StreamFds::from_named(&reply.fds, fds).map_err(|message| ShimError::Protocol {
                dir: self.dir.clone(),
                op: OP,
                message,
            })?;
        let session = AttachSession::new(conn, id.to_string(), reply.tty, reply.stdin_once);
        Ok((fds, session))
    }

    async fn call<T: DeserializeOwned>(&self, request: &Request, limit: Duration) -> Result<T> {
        let op = request.op();
        let mut line = serde_json::to_vec(request).map_err(|e| ShimError::Protocol {
            dir: self.dir.clone(),
            op,
            message: e.to_string(),
        })?;
        line.push(b'\n');
        let exchange = async {
            let mut conn = Conn::open(&self.dir).await?;
            conn.round_trip_max(&line, MAX_ANSWER)
                .await
                .map_err(io_err(&self.dir, op))
        };
        let answer =
            tokio::time::timeout(limit, exchange)
                .await
                .map_err(|_| ShimError::Timeout {
                    dir: self.dir.clone(),
                    op,
                    after: limit,
                })??;
        decode(&self.dir, op, &answer)
    }
}

fn decode<T: DeserializeOwned>(dir: &Path, op: &'static str, answer: &[u8]) -> Result<T> {
    decode_answer(answer).map_err(|e| match e {
        AnswerError::Refused(e) => ShimError::Refused {
            dir: dir.to_path_buf(),
            op,
            code: e.kind,
            field: e.field,
            message: e.error,
        },
        AnswerError::Malformed(message) => ShimError::Protocol {
            dir: dir.to_path_buf(),
            op,
            message,
        },
    })
}

/// A pod's running shim.
#[derive(Debug)]
pub struct ShimHandle {
    dir: PathBuf,
    pid: i32,
    pause_pid: Option<i32>,
    /// One connection, reused by every call, reopened after a failure.
    conn: Mutex<Option<Conn>>,
}

#[derive(Debug)]
struct Conn {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl ShimHandle {
    fn new(dir: PathBuf, pid: i32, pause_pid: Option<i32>) -> Self {
        ShimHandle {
            dir,
            pid,
            pause_pid,
            conn: Mutex::new(None),
        }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The pause's host pid, when the pod shares its PID namespace.
    pub fn pause_pid(&self) -> Option<i32> {
        self.pause_pid
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub async fn ping(&self) -> Result<PingReply> {
        self.call(&Request::Ping, CALL_TIMEOUT).await
    }

    /// The shim's process table: every process it started and how each ended.
    pub async fn status(&self) -> Result<StatusReply> {
        self.call(&Request::Status, CALL_TIMEOUT).await
    }

    /// Stop the pod's processes (SIGTERM, SIGKILL after `grace`), unpin the PID namespace
    /// and end the shim. Idempotent: a shim already gone is success, and what it left
    /// behind is released here. A shim that does not answer in time is killed.
    pub async fn shutdown(&self, grace: Duration) -> Result<()> {
        let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        let answer = self
            .call::<Empty>(&Request::Shutdown { grace_ms }, grace + SHUTDOWN_SLACK)
            .await;
        *self.conn.lock().await = None;
        match &answer {
            Ok(_) | Err(ShimError::NotRunning { .. }) => {}
            Err(ShimError::Refused { message, .. }) => {
                tracing::debug!(dir = %self.dir.display(), error = %message, "the shim could not release everything; retrying");
            }
            Err(e) if is_shim_process(self.pid, &self.dir) => {
                tracing::warn!(dir = %self.dir.display(), pid = self.pid, error = %e, "shim did not shut down; killing it");
                let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
            }
            Err(_) => {}
        }
        wait_gone(self.pid, &self.dir).await;
        release_blocking(&self.dir, self.pause_pid).await
    }

    /// Send one request and decode its answer, within `limit`.
    async fn call<T: DeserializeOwned>(&self, request: &Request, limit: Duration) -> Result<T> {
        let op = request.op();
        let mut line = serde_json::to_vec(request).map_err(|e| ShimError::Protocol {
            dir: self.dir.clone(),
            op,
            message: e.to_string(),
        })?;
        line.push(b'\n');
        let mut conn = self.conn.lock().await;
        let answer = match tokio::time::timeout(limit, self.exchange(&mut conn, op, &line)).await {
            Ok(answer) => answer,
            Err(_) => {
                // The answer may still come; this connection can no longer be trusted.
                *conn = None;
                return Err(ShimError::Timeout {
                    dir: self.dir.clone(),
                    op,
                    after: limit,
                });
            }
        }?;
        decode(&self.dir, op, &answer)
    }

    /// Write `line`, read one answer line. A kept connection that turns out to be broken
    /// is replaced once (every current op is idempotent).
    async fn exchange(
        &self,
        slot: &mut Option<Conn>,
        op: &'static str,
        line: &[u8],
    ) -> Result<Vec<u8>> {
        for attempt in 0..2 {
            let reused = slot.is_some();
            let conn = match slot {
                Some(conn) => conn,
                None => slot.insert(Conn::open(&self.dir).await?),
            };
            match conn.round_trip(line).await {
                Ok(answer) => return Ok(answer),
                Err(source) => {
                    *slot = None;
                    if !(reused && attempt == 0) {
                        return Err(ShimError::Io {
                            dir: self.dir.clone(),
                            op,
                            source,
                        });
                    }
                }
            }
        }
        unreachable!("the second attempt always returns")
    }
}

impl Conn {
    async fn open(dir: &Path) -> Result<Conn> {
        let path = dir.join(SOCKET_FILE);
        match UnixStream::connect(&path).await {
            Ok(stream) => {
                let (reader, writer) = stream.into_split();
                Ok(Conn {
                    reader: BufReader::new(reader),
                    writer,
                })
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) =>
            {
                Err(ShimError::NotRunning {
                    dir: dir.to_path_buf(),
                })
            }
            Err(source) => Err(ShimError::Io {
                dir: dir.to_path_buf(),
                op: "connect",
                source,
            }),
        }
    }

    async fn round_trip(&mut self, line: &[u8]) -> io::Result<Vec<u8>> {
        self.round_trip_max(line, MAX_LINE).await
    }

    async fn round_trip_max(&mut self, line: &[u8], max: usize) -> io::Result<Vec<u8>> {
        self.writer.write_all(line).await?;
        let mut answer = Vec::new();
        (&mut self.reader)
            .take(max as u64 + 1)
            .read_until(b'\n', &mut answer)
            .await?;
        if answer.last() != Some(&b'\n') {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the shim closed the connection without a whole answer",
            ));
        }
        Ok(answer)
    }
}

/// A connection that owns a stream (a streamed exec, an attach session): the shim ends
/// the stream when it closes. Answers may carry fds (`SCM_RIGHTS`); one request at a
/// time, so whatever fds arrive while an answer is read belong to it.
#[derive(Debug)]
pub(crate) struct StreamConn {
    dir: PathBuf,
    stream: UnixStream,
    /// Bytes read beyond the last answer line (none, with one request at a time).
    buf: Vec<u8>,
}

impl StreamConn {
    async fn open(dir: &Path) -> Result<StreamConn> {
        let conn = Conn::open(dir).await?;
        let stream = conn
            .reader
            .into_inner()
            .reunite(conn.writer)
            .map_err(|e| ShimError::Io {
                dir: dir.to_path_buf(),
                op: "connect",
                source: io::Error::other(e.to_string()),
            })?;
        Ok(StreamConn {
            dir: dir.to_path_buf(),
            stream,
            buf: Vec::new(),
        })
    }

    /// Send `request`, decode its answer and take its fds; `limit` None waits forever.
    pub(crate) async fn call<T: DeserializeOwned>(
        &mut self,
        op: &'static str,
        request: &Request,
        limit: Option<Duration>,
    ) -> Result<(T, Vec<OwnedFd>)> {
        let mut line = serde_json::to_vec(request).map_err(|e| ShimError::Protocol {
            dir: self.dir.clone(),
            op,
            message: e.to_string(),
        })?;
        line.push(b'\n');
        let exchange = async {
            self.stream.write_all(&line).await?;
            self.read_answer().await
        };
        let (answer, fds) = match limit {
            None => exchange.await,
            Some(limit) => {
                tokio::time::timeout(limit, exchange)
                    .await
                    .map_err(|_| ShimError::Timeout {
                        dir: self.dir.clone(),
                        op,
                        after: limit,
                    })?
            }
        }
        .map_err(io_err(&self.dir, op))?;
        Ok((decode(&self.dir, op, &answer)?, fds))
    }

    async fn read_answer(&mut self) -> io::Result<(Vec<u8>, Vec<OwnedFd>)> {
        let mut fds = Vec::new();
        let mut chunk = vec![0u8; 4096];
        loop {
            if let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
                let line = self.buf.drain(..=end).collect();
                return Ok((line, fds));
            }
            if self.buf.len() > MAX_LINE {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("answer longer than {MAX_LINE} bytes"),
                ));
            }
            let stream = &self.stream;
            let n = stream
                .async_io(Interest::READABLE, || {
                    sys::recv_with_fds(stream.as_fd(), &mut chunk, &mut fds)
                })
                .await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the shim closed the connection without a whole answer",
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn io_err(dir: &Path, op: &'static str) -> impl FnOnce(io::Error) -> ShimError {
    let dir = dir.to_path_buf();
    move |source| ShimError::Io { dir, op, source }
}

fn read_pid_file(dir: &Path) -> Option<i32> {
    fs::read_to_string(dir.join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|pid| *pid > 0)
}

/// `/proc/<pid>/comm` without its newline.
fn comm(pid: i32) -> Option<String> {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(comm.trim_end().to_string())
}

/// The process state letter from `/proc/<pid>/stat`; None when there is no such process.
fn state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Running (not a zombie) at all.
fn is_running(pid: i32) -> bool {
    state(pid).is_some_and(|s| s != 'Z' && s != 'X')
}

/// `pid` is a live corral-shim started with `--dir dir`.
fn is_shim_process(pid: i32, dir: &Path) -> bool {
    if !is_running(pid) || comm(pid).as_deref() != Some(SHIM_COMM) {
        return false;
    }
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let mut args = cmdline.split(|b| *b == 0);
    let want = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    while let Some(arg) = args.next() {
        if arg == b"--dir" {
            let Some(value) = args.next() else {
                return false;
            };
            let value = Path::new(std::ffi::OsStr::from_bytes(value));
            return value == dir || fs::canonicalize(value).is_ok_and(|v| v == want);
        }
    }
    false
}

/// Wait (bounded) until the shim `pid` no longer runs: it exits right after answering a
/// shutdown; its parent, not us, reaps it.
async fn wait_gone(pid: i32, dir: &Path) {
    let until = Instant::now() + EXIT_WAIT;
    while is_shim_process(pid, dir) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Release what a gone shim left in `dir`: its pause, the pidns pin, the socket and pid
/// files. Does nothing to a shim that still serves `dir`.
async fn release_blocking(dir: &Path, pause_pid: Option<i32>) -> Result<()> {
    let dir_owned = dir.to_path_buf();
    tokio::task::spawn_blocking(move || release_leftovers(&dir_owned, pause_pid))
        .await
        .map_err(|e| ShimError::Io {
            dir: dir.to_path_buf(),
            op: "release",
            source: io::Error::other(e),
        })?
}

fn release_leftovers(dir: &Path, pause_pid: Option<i32>) -> Result<()> {
    if is_alive(dir) {
        return Ok(());
    }
    let pin = dir.join(PIDNS_FILE);
    if let Some(pause) = find_pause(&pin, pause_pid) {
        tracing::warn!(dir = %dir.display(), pid = pause, "killing a pause its shim left behind");
        let _ = kill(Pid::from_raw(pause), Signal::SIGKILL);
    }
    pause::unpin(&pin).map_err(io_err(dir, "unpinning the PID namespace"))?;
    for name in [SOCKET_FILE, PID_FILE] {
        match fs::remove_file(dir.join(name)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_err(dir, "removing the shim's files")(e));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The running pause whose PID namespace `pin` pins: `hint` if it is that, else a scan
/// of /proc. None when the pin is gone or no such process runs.
fn find_pause(pin: &Path, hint: Option<i32>) -> Option<i32> {
    if !pause::is_nsfs(pin) {
        return None;
    }
    let ns = fs::metadata(pin).ok()?;
    let is_pause = |pid: i32| {
        is_running(pid)
            && comm(pid).as_deref() == Some(PAUSE_COMM)
            && fs::metadata(format!("/proc/{pid}/ns/pid"))
                .is_ok_and(|m| m.ino() == ns.ino() && m.dev() == ns.dev())
    };
    if let Some(pid) = hint.filter(|pid| is_pause(*pid)) {
        return Some(pid);
    }
    fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| is_pause(*pid))
}
