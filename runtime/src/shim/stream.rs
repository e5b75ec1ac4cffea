//! Streamed execs and attach sessions (kubectl/crictl exec -it, attach): the shim makes
//! the pipes or the pty and hands corrald its ends (passed with the answer, see
//! [`super::server`]); the data never flows through the shim, except a container's output,
//! which the shim reads for the CRI log anyway and fans out to each attacher's pipe.
//!
//! ```text
//! exec:   pipes (or a pty) → init::exec → answer {pid, fds} + SCM_RIGHTS → corrald
//! attach: dup(stdin write end | pty master) + a new pipe per output stream → corrald;
//!         Container::read writes every chunk to the log, then to each attacher's pipe
//! ```
//!
//! Each exec and each attacher belongs to the connection that asked for it: when that
//! connection closes, the exec's process tree is SIGKILLed and the attacher removed.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use nix::fcntl::{fcntl, FcntlArg};
use nix::unistd::Pid;

use super::container::{pipe, tty_stdio, Container};
use super::cri_log::Stream;
use super::exec::spawn_in;
use super::init::Stdio;
use super::log;
use super::protocol::{ErrorCode, ErrorReply, Exec, StreamReply, Streams};
use super::pty;

/// What an attacher's pipe is grown to (best effort: F_SETPIPE_SZ may be refused).
const ATTACH_PIPE_SIZE: i32 = 1 << 20;

/// A streamed exec the shim started: its record lives until its owner has been told its
/// exit, or has gone.
#[derive(Debug)]
pub struct StreamExec {
    pub id: String,
    pub pid: Pid,
    /// The connection it belongs to.
    pub conn: u64,
    /// The exit has happened (the reaper holds it until it is answered).
    pub exited: bool,
}

/// A streamed exec started: the answer, corrald's fds (in the answer's `fds` order) and
/// the process's pid.
pub struct Started {
    pub reply: StreamReply,
    pub fds: Vec<OwnedFd>,
}

fn internal(what: &str, e: impl std::fmt::Display) -> ErrorReply {
    ErrorReply::new(ErrorCode::Internal, format!("{what}: {e}"))
}

/// /dev/null for reading and writing, close-on-exec: a stream nobody asked for.
fn dev_null() -> Result<OwnedFd, ErrorReply> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/null")
        .map(OwnedFd::from)
        .map_err(|e| internal("opening /dev/null", e))
}

/// Start `req` in the running `container` with its stdio streamed: pipes for the streams
/// asked for (/dev/null for the others), or one pty whose master goes to corrald.
pub fn exec(req: &Exec, streams: Streams, container: &Container) -> Result<Started, ErrorReply> {
    if req.id.is_empty() {
        return Err(ErrorReply::invalid("id", "empty exec id"));
    }
    if req.process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(ErrorReply::invalid("process.args", "no command to run"));
    }
    let tty = req.process.terminal().unwrap_or(false);
    let mut names = Vec::new();
    let mut fds = Vec::new();
    let stdio = if tty {
        let pair =
            pty::open_for(container.pid.as_raw()).map_err(|e| internal("opening a pty", e))?;
        names.push("pty".to_string());
        fds.push(pair.master);
        tty_stdio(pair.slave)?
    } else {
        // (wanted, the process reads this end): corrald gets the other one.
        let mut ends = Vec::with_capacity(3);
        for (name, wanted, process_reads) in [
            ("stdin", streams.stdin, true),
            ("stdout", streams.stdout, false),
            ("stderr", streams.stderr, false),
        ] {
            if !wanted {
                ends.push(dev_null()?);
                continue;
            }
            let (r, w) = pipe()?;
            let (theirs, ours) = if process_reads { (r, w) } else { (w, r) };
            ends.push(theirs);
            names.push(name.to_string());
            fds.push(ours);
        }
        let [stdin, stdout, stderr]: [OwnedFd; 3] = ends
            .try_into()
            .map_err(|_| internal("stdio", "three ends expected"))?;
        Stdio {
            stdin,
            stdout,
            stderr,
        }
    };
    let spawned = spawn_in(container, &req.process, stdio, tty)?;
    Ok(match spawned.not_executable {
        // Nothing to stream: the process is on its way out with the code. Closing our
        // ends here (its stderr write gets EPIPE) is harmless.
        Some((code, message)) => Started {
            reply: StreamReply {
                pid: spawned.pid.as_raw(),
                fds: Vec::new(),
                exit_code: Some(code),
                message: Some(message),
            },
            fds: Vec::new(),
        },
        None => Started {
            reply: StreamReply {
                pid: spawned.pid.as_raw(),
                fds: names,
                exit_code: None,
                message: None,
            },
            fds,
        },
    })
}

/// One attacher's pipe for one output stream: the shim writes, corrald reads.
#[derive(Debug)]
pub struct Attacher {
    /// The connection it belongs to.
    pub conn: u64,
    pub stream: Stream,
    /// The write end, non-blocking.
    pipe: File,
    /// Bytes dropped because the pipe was full.
    dropped: u64,
}

/// What writing a chunk to an attacher gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fanned {
    Kept,
    /// Its reader has gone (EPIPE) or the pipe failed: remove it.
    Gone,
}

impl Attacher {
    /// A new pipe for `stream`; the read end is corrald's.
    pub fn new(conn: u64, stream: Stream) -> Result<(Attacher, OwnedFd), ErrorReply> {
        let (r, w) = pipe()?;
        pty::set_nonblocking(&w).map_err(|e| internal("attach pipe", e))?;
        // Room for bursts while corrald is slow to read; refused beyond the host's
        // pipe-max-size (or its per-user budget), then the default 64 KiB stays.
        let _ = fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&w.as_fd()),
            FcntlArg::F_SETPIPE_SZ(ATTACH_PIPE_SIZE),
        );
        let attacher = Attacher {
            conn,
            stream,
            pipe: File::from(w),
            dropped: 0,
        };
        Ok((attacher, r))
    }

    /// Write `chunk` without blocking; what does not fit is dropped for this attacher only
    /// (the CRI log never waits on an attacher).
    pub fn write(&mut self, chunk: &[u8], container: &str) -> Fanned {
        let written = loop {
            match self.pipe.write(chunk) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 0,
                Err(e) => {
                    if e.raw_os_error() != Some(libc::EPIPE) {
                        log(format_args!(
                            "container {container}: writing to an attacher: {e}; detaching it"
                        ));
                    }
                    return Fanned::Gone;
                }
            }
        };
        let lost = (chunk.len() - written) as u64;
        if lost > 0 {
            if self.dropped == 0 {
                log(format_args!(
                    "container {container}: an attacher (connection {}) reads too slowly; dropping output for it",
                    self.conn
                ));
            }
            self.dropped += lost;
        }
        Fanned::Kept
    }
}

impl Drop for Attacher {
    fn drop(&mut self) {
        if self.dropped > 0 {
            log(format_args!(
                "attacher (connection {}) detached; {} bytes of {:?} dropped for it",
                self.conn, self.dropped, self.stream
            ));
        }
    }
}
