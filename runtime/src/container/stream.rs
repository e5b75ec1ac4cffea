//! Streamed exec and attach, for corrald's streaming server (kubectl/crictl exec -it,
//! attach): the pod's shim starts the process (or finds the container) and passes the fds
//! of its stdio here over its socket; the caller does async I/O on them itself, the data
//! never flows through the shim ([`crate::shim::protocol`], "Streaming").
//!
//! ```text
//! exec_stream: StreamFds { stdin, stdout, stderr } (pipes) or { pty } (tty) + ExecSession
//!              ExecSession::wait → ExecExit;  drop(ExecSession) → the shim kills the exec
//! attach:      StreamFds { stdin (a dup of the container's), stdout, stderr } + AttachSession
//!              drop(AttachSession) → detached;  close_stdin for StdinOnce
//! ```
//!
//! The fds are blocking or not as the shim made them (a pty master is non-blocking and
//! shares its open file description with the shim's: keep it non-blocking); close-on-exec.
//! Output pipes reach end of file when the process (exec) or the container (attach) has
//! ended and its output has been passed on.

use std::os::fd::{AsFd, OwnedFd};

use super::Containers;
use crate::error::{Error, Result};
use crate::shim::protocol::{Empty, ExitStatus, Request, Streams};
use crate::shim_client::{Exec, PodShim, StreamConn};

/// Which of the process's stdio to stream, and whether it runs on a terminal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamRequest {
    /// A pty for exec_stream (the container decides for attach): one raw stream, the
    /// master passed as [`StreamFds::pty`].
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

impl StreamRequest {
    fn streams(&self) -> Streams {
        Streams {
            stdin: self.stdin,
            stdout: self.stdout,
            stderr: self.stderr,
        }
    }
}

/// The caller's ends of a stream's stdio; each None when not asked for (or, for attach
/// stdin, when the container has no stdin).
#[derive(Debug, Default)]
pub struct StreamFds {
    /// Write end of the process's stdin pipe (attach, tty: a dup of the pty master).
    pub stdin: Option<OwnedFd>,
    /// Read end of its stdout pipe (attach, tty: all the output).
    pub stdout: Option<OwnedFd>,
    /// Read end of its stderr pipe (never with a tty).
    pub stderr: Option<OwnedFd>,
    /// The pty master (tty exec only): the lead writes stdin to it / reads stdout / resizes it.
    pub pty: Option<OwnedFd>,
}

impl StreamFds {
    /// Sort the fds the shim passed by the names its answer gave them.
    pub(crate) fn from_named(
        names: &[String],
        fds: Vec<OwnedFd>,
    ) -> std::result::Result<StreamFds, String> {
        if names.len() != fds.len() {
            return Err(format!(
                "the answer names {} fds but {} came",
                names.len(),
                fds.len()
            ));
        }
        let mut out = StreamFds::default();
        for (name, fd) in names.iter().zip(fds) {
            let slot = match name.as_str() {
                "stdin" => &mut out.stdin,
                "stdout" => &mut out.stdout,
                "stderr" => &mut out.stderr,
                "pty" => &mut out.pty,
                other => return Err(format!("unknown fd name {other:?}")),
            };
            if slot.replace(fd).is_some() {
                return Err(format!("fd {name:?} passed twice"));
            }
        }
        Ok(out)
    }
}

/// How a streamed exec ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecExit {
    /// The exit code, or 128 + the signal that killed it; 127 for a missing command, 126
    /// for one that cannot be executed.
    pub exit_code: i32,
    /// Why the command could not be executed (126, 127), as a shell says it.
    pub message: Option<String>,
}

/// A streamed exec: owns the shim connection. Dropping it kills the exec (and every
/// process below it) if it still runs: the shim sees the connection close.
#[derive(Debug)]
pub struct ExecSession {
    conn: StreamConn,
    id: String,
    pid: i32,
    exit: Option<ExecExit>,
}

impl ExecSession {
    pub(crate) fn new(conn: StreamConn, id: String, pid: i32, exit: Option<ExecExit>) -> Self {
        ExecSession {
            conn,
            id,
            pid,
            exit,
        }
    }

    /// The exec's host pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The exit (waits without limit): exit code (128+signal for a signal), and a message
    /// when the command could not be executed (code 126/127). Cancel-safe (for
    /// `select!`): a call dropped before its answer may be made again; the first answer
    /// the shim gives is the exit either way.
    pub async fn wait(&mut self) -> Result<ExecExit> {
        if let Some(exit) = &self.exit {
            return Ok(exit.clone());
        }
        let request = Request::Wait {
            id: self.id.clone(),
        };
        let (status, _): (ExitStatus, _) = self.conn.call("wait", &request, None).await?;
        let exit = ExecExit {
            exit_code: status.exit_code,
            message: None,
        };
        self.exit = Some(exit.clone());
        Ok(exit)
    }
}

/// An attach session: owns the shim connection; dropping it detaches (the container runs
/// on).
#[derive(Debug)]
pub struct AttachSession {
    conn: StreamConn,
    id: String,
    tty: bool,
    stdin_once: bool,
}

impl AttachSession {
    pub(crate) fn new(conn: StreamConn, id: String, tty: bool, stdin_once: bool) -> Self {
        AttachSession {
            conn,
            id,
            tty,
            stdin_once,
        }
    }

    /// The container has a terminal: its output is one raw stream (`stdout`), and
    /// `stdin` is a dup of the pty master (resize it with [`resize_pty`]).
    pub fn tty(&self) -> bool {
        self.tty
    }

    /// The container's stdin is to be closed once this attach's stdin ends
    /// ([`AttachSession::close_stdin`], and drop [`StreamFds::stdin`]).
    pub fn stdin_once(&self) -> bool {
        self.stdin_once
    }

    /// Close the shim's write end of the container's stdin: once the caller's dup is
    /// closed too, the container reads end of file. Later attaches get no stdin.
    pub async fn close_stdin(&mut self) -> Result<()> {
        let request = Request::CloseStdin {
            id: self.id.clone(),
        };
        let limit = std::time::Duration::from_secs(5);
        let (_, _): (Empty, _) = self.conn.call("close_stdin", &request, Some(limit)).await?;
        Ok(())
    }
}

/// TIOCSWINSZ on a pty master (columns, rows); 0s ignored (a client that does not know).
pub fn resize_pty(pty: &impl AsFd, width: u16, height: u16) -> std::io::Result<()> {
    if width == 0 || height == 0 {
        return Ok(());
    }
    crate::shim::sys::set_winsize(pty.as_fd(), width, height)
}

impl Containers {
    /// Start `cmd` in running container `id` with its stdio streamed (NotFound unknown id,
    /// FailedPrecondition not running, InvalidArgument no command or no stream). A command
    /// that cannot be executed is a session whose [`ExecSession::wait`] gives 126/127 and a
    /// message at once, with no fds.
    pub async fn exec_stream(
        &self,
        id: &str,
        cmd: &[String],
        req: StreamRequest,
    ) -> Result<(StreamFds, ExecSession)> {
        if cmd.is_empty() || cmd[0].is_empty() {
            return Err(Error::invalid("cmd", "empty command"));
        }
        if !(req.stdin || req.stdout || req.stderr) {
            return Err(Error::invalid(
                "stdout",
                "one of stdin, stdout and stderr must be streamed",
            ));
        }
        let record = self.running(id)?;
        let process = super::exec::exec_process(&record, cmd, req.tty).await?;
        let exec = Exec {
            id: format!("exec-{}", hex::encode(rand::random::<[u8; 8]>())),
            container_id: record.id.clone(),
            process,
            timeout_ms: 0,
            max_output: 0,
            stream: Some(req.streams()),
        };
        let (fds, session) = PodShim::new(&record.pod_dir).exec_stream(exec).await?;
        tracing::debug!(pod = %record.pod_id, container = %record.id, pid = session.pid(), "streamed exec started");
        Ok((fds, session))
    }

    /// Attach to running container `id` (NotFound unknown id, FailedPrecondition not
    /// running). `req.tty` is ignored: the container decides, and
    /// [`AttachSession::tty`] says (one raw output stream); so for stdin_once.
    pub async fn attach(&self, id: &str, req: StreamRequest) -> Result<(StreamFds, AttachSession)> {
        let record = self.running(id)?;
        let (fds, session) = PodShim::new(&record.pod_dir)
            .attach(&record.id, req.streams())
            .await?;
        tracing::debug!(container = %record.id, tty = session.tty(), "attached");
        Ok((fds, session))
    }
}
