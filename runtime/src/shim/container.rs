//! One container in the shim's table: its init, its stdio, its CRI log, its OOM count.
//!
//! ```text
//! create: config.json → stdio (pipes, or a pty) → log file → oom baseline → init::create
//! start:  Created::start (execve)           kill: kill(2), or abort before start
//! output: the server polls [`Container::outputs`] and calls [`Container::read`]
//! exit:   [`Container::on_exit`] drains the output and sets the OOM flag, then the
//!         reaper writes the exit file
//! attach: [`Container::attach`] hands out a dup of stdin and a pipe per output stream;
//!         [`Container::read`] writes each chunk to the log, then to every attacher
//! ```

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use super::cri_log::{LogFile, Splitter, Stream};
use super::init::{self, CreateOptions, Created, InitError, Stdio};
use super::log;
use super::protocol::{AttachReply, CreateContainer, ErrorCode, ErrorReply, ExitStatus, Streams};
use super::pty;
use super::stream::{Attacher, Fanned};
use super::time::now_rfc3339_nano;

/// How many reads of the shared buffer one drain makes at most per stream: processes
/// that inherited the pipe may keep writing, and the loop must not wait on them.
pub const DRAIN_READS: usize = 32;

pub struct Container {
    pub id: String,
    /// The init's host pid.
    pub pid: Pid,
    /// The bundle's OCI spec, for execs.
    pub spec: Spec,
    /// The container's `cgroup.procs` files, for execs.
    pub cgroup_procs: Vec<PathBuf>,
    /// The init, blocked before execve, until StartContainer (or an abort) takes it.
    created: Option<Created>,
    pub started: bool,
    /// Set when the reaper collected the init (with the OOM flag decided).
    pub exit: Option<ExitStatus>,
    /// The write end of the container's stdin pipe, kept for attach (None for a tty:
    /// the pty master is stdin), until close_stdin.
    stdin: Option<OwnedFd>,
    /// The container was made with stdin (CRI `stdin`) and close_stdin has not closed it.
    stdin_open: bool,
    stdin_once: bool,
    tty: bool,
    /// Pipes to attach sessions, per output stream; closed at the exit.
    attachers: Vec<Attacher>,
    /// stdout and stderr read ends, or the one pty master.
    pub outputs: Vec<Output>,
    /// None: output is read and dropped.
    log: Option<LogFile>,
    oom: Option<OomCounter>,
}

/// One stream the shim reads: a pipe's read end or a pty master, non-blocking.
pub struct Output {
    /// None once it reached its end.
    pub file: Option<File>,
    pub pty: bool,
    stream: Stream,
    splitter: Splitter,
}

/// What one read of an output gave.
pub enum ReadResult {
    Data(usize),
    /// Nothing there now.
    Again,
    /// The writers are gone (or the fd failed): close it.
    End,
}

/// One non-blocking read of `file` into `buf`.
pub fn read_some(file: &mut File, pty: bool, buf: &mut [u8]) -> ReadResult {
    loop {
        return match file.read(buf) {
            Ok(0) => ReadResult::End,
            Ok(n) => ReadResult::Data(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadResult::Again,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // A pty master says EIO once no one holds the slave any more.
            Err(e) if pty && pty::is_hangup(&e) => ReadResult::End,
            Err(e) => {
                log(format_args!("reading a container's output: {e}"));
                ReadResult::End
            }
        };
    }
}

impl Output {
    fn new(fd: OwnedFd, stream: Stream, pty: bool) -> io::Result<Output> {
        pty::set_nonblocking(&fd)?;
        Ok(Output {
            file: Some(File::from(fd)),
            pty,
            stream,
            splitter: Splitter::new(stream),
        })
    }
}

/// Output bytes formatted into log lines per step (see [`Container::read`]).
const FORMAT_PIECE: usize = 1024;
/// Formatted log lines are written once this many bytes are waiting.
const WRITE_AT: usize = 32 * 1024;

/// Write the formatted lines in `scratch` to the log (if there is one), empty it.
fn write_log(log: &mut Option<LogFile>, scratch: &mut Vec<u8>) {
    if let Some(log) = log {
        log.write(scratch);
    }
    scratch.clear();
}

/// The baseline of a cgroup's `oom_kill` count.
struct OomCounter {
    path: PathBuf,
    baseline: u64,
}

/// The `oom_kill N` count of a v2 `memory.events` or a v1 `memory.oom_control`; a
/// readable file without the line (v1 before Linux 4.13) counts 0.
pub fn oom_kills(path: &Path) -> io::Result<u64> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .find_map(|line| {
            let mut words = line.split_ascii_whitespace();
            match (words.next(), words.next()) {
                (Some("oom_kill"), Some(n)) => n.parse().ok(),
                _ => None,
            }
        })
        .unwrap_or(0))
}

/// An [`InitError`] as the answer: the caller's mistakes name their field.
pub fn init_error(e: InitError) -> ErrorReply {
    match e.invalid_argument() {
        Some(field) => ErrorReply::invalid(field, e.to_string()),
        None => ErrorReply::new(ErrorCode::Internal, e.to_string()),
    }
}

fn internal(what: &str, e: impl std::fmt::Display) -> ErrorReply {
    ErrorReply::new(ErrorCode::Internal, format!("{what}: {e}"))
}

/// A log file that cannot be opened: one that would leave the pod's log directory (a
/// symlink on the way, a file where a dir should be) is the request's or the host's fault,
/// `escape` (InvalidArgument naming the log path at create, FailedPrecondition at reopen);
/// anything else is Internal.
fn log_error(
    what: &str,
    path: &std::path::Path,
    e: std::io::Error,
    escape: ErrorCode,
) -> ErrorReply {
    let escaped = e.kind() == std::io::ErrorKind::InvalidInput
        || matches!(
            e.raw_os_error(),
            Some(libc::ELOOP | libc::ENOTDIR | libc::EXDEV)
        );
    if !escaped {
        return internal(&format!("{what} the log {}", path.display()), e);
    }
    // The field in the text too: the shim's error reaches the client as its message.
    let message = format!(
        "config.log_path: {what} the log {}: {e} (it must stay beneath the pod's log directory, through no symlink)",
        path.display()
    );
    match escape {
        ErrorCode::InvalidArgument => ErrorReply::invalid("config.log_path", message),
        code => ErrorReply::new(code, message),
    }
}

/// A pipe, both ends close-on-exec.
pub fn pipe() -> Result<(OwnedFd, OwnedFd), ErrorReply> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| internal("pipe", e))
}

/// /dev/null for reading, close-on-exec: stdin of a process nobody writes to.
pub fn dev_null() -> Result<OwnedFd, ErrorReply> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/null")
        .map(OwnedFd::from)
        .map_err(|e| internal("opening /dev/null", e))
}

/// The same fd three times (a pty slave as stdin, stdout and stderr).
pub fn tty_stdio(slave: OwnedFd) -> Result<Stdio, ErrorReply> {
    let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| internal("dup", e));
    Ok(Stdio {
        stdin: dup(&slave)?,
        stdout: dup(&slave)?,
        stderr: slave,
    })
}

impl Container {
    /// Make the container's init, blocked before execve (blocks the shim up to the
    /// executor's own limit). On failure everything made here is closed again.
    pub fn create(req: &CreateContainer) -> Result<Container, ErrorReply> {
        if req.id.is_empty() {
            return Err(ErrorReply::invalid("id", "empty container id"));
        }
        let config = req.bundle.join("config.json");
        let bytes = std::fs::read(&config)
            .map_err(|e| ErrorReply::invalid("bundle", format!("{}: {e}", config.display())))?;
        let spec: Spec = serde_json::from_slice(&bytes)
            .map_err(|e| ErrorReply::invalid("bundle", format!("{}: {e}", config.display())))?;

        let log_file = match &req.log_path {
            Some(path) => Some(
                LogFile::open(path, req.log_dir.as_deref())
                    .map_err(|e| log_error("opening", path, e, ErrorCode::InvalidArgument))?,
            ),
            None => None,
        };

        let (stdio, outputs, stdin) = if req.tty {
            let pty = pty::open().map_err(|e| internal("opening a pty", e))?;
            let output =
                Output::new(pty.master, Stream::Stdout, true).map_err(|e| internal("pty", e))?;
            (tty_stdio(pty.slave)?, vec![output], None)
        } else {
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            let outputs = vec![
                Output::new(out_r, Stream::Stdout, false).map_err(|e| internal("pipe", e))?,
                Output::new(err_r, Stream::Stderr, false).map_err(|e| internal("pipe", e))?,
            ];
            let (stdin_r, stdin_w) = match req.stdin {
                true => {
                    let (r, w) = pipe()?;
                    (r, Some(w))
                }
                false => (dev_null()?, None),
            };
            let stdio = Stdio {
                stdin: stdin_r,
                stdout: out_w,
                stderr: err_w,
            };
            (stdio, outputs, stdin_w)
        };

        let oom = match &req.oom_file {
            Some(path) => match oom_kills(path) {
                Ok(baseline) => Some(OomCounter {
                    path: path.clone(),
                    baseline,
                }),
                Err(e) => {
                    // The container runs regardless; only the OOM flag is lost.
                    log(format_args!(
                        "container {}: reading {}: {e}; OOM kills will not be reported",
                        req.id,
                        path.display()
                    ));
                    None
                }
            },
            None => None,
        };

        let created = init::create(CreateOptions {
            bundle: &req.bundle,
            rootfs: &req.rootfs,
            stdio,
            tty: req.tty,
            cgroup_procs: &req.cgroup_procs,
        })
        .map_err(init_error)?;
        Ok(Container {
            id: req.id.clone(),
            pid: created.pid,
            spec,
            cgroup_procs: req.cgroup_procs.clone(),
            created: Some(created),
            started: false,
            exit: None,
            stdin,
            stdin_open: req.stdin,
            stdin_once: req.stdin_once,
            tty: req.tty,
            attachers: Vec::new(),
            outputs,
            log: log_file,
            oom,
        })
    }

    pub fn running(&self) -> bool {
        self.started && self.exit.is_none()
    }

    /// Release the init into execve.
    pub fn start(&mut self) -> Result<(), ErrorReply> {
        if self.exit.is_some() {
            return Err(ErrorReply::new(
                ErrorCode::FailedPrecondition,
                format!("container {} has exited", self.id),
            ));
        }
        let Some(created) = self.created.take() else {
            return Err(ErrorReply::new(
                ErrorCode::FailedPrecondition,
                format!("container {} was already started", self.id),
            ));
        };
        created.start().map_err(init_error)?;
        self.started = true;
        Ok(())
    }

    /// Signal the init; one that has exited is success. SIGKILL before start aborts the
    /// waiting init.
    pub fn kill(&mut self, signal: Option<Signal>) -> Result<(), ErrorReply> {
        if self.exit.is_some() {
            return Ok(());
        }
        if signal == Some(Signal::SIGKILL) {
            if let Some(created) = self.created.take() {
                created.abort();
                return Ok(());
            }
        }
        match kill(self.pid, signal) {
            Ok(()) | Err(nix::Error::ESRCH) => Ok(()),
            Err(e) => Err(internal(&format!("kill {}", self.pid), e)),
        }
    }

    /// Kill an init that was never started (the shim is stopping); true if there was one.
    pub fn abort(&mut self) -> bool {
        match self.created.take() {
            Some(created) if self.exit.is_none() => {
                created.abort();
                true
            }
            _ => false,
        }
    }

    /// Point the log at a fresh file at the same path (kubelet rotated it).
    pub fn reopen_log(&mut self) -> Result<(), ErrorReply> {
        if self.exit.is_some() {
            return Err(ErrorReply::new(
                ErrorCode::FailedPrecondition,
                format!("container {} is not running", self.id),
            ));
        }
        match &mut self.log {
            Some(log) => log
                .reopen()
                .map_err(|e| log_error("reopening", log.path(), e, ErrorCode::FailedPrecondition)),
            None => Ok(()),
        }
    }

    /// One read from output `index` into `buf`, written to the log through `scratch`.
    pub fn read(&mut self, index: usize, buf: &mut [u8], scratch: &mut Vec<u8>) -> ReadResult {
        let Some(output) = self.outputs.get_mut(index) else {
            return ReadResult::End;
        };
        let Some(file) = &mut output.file else {
            return ReadResult::End;
        };
        let result = read_some(file, output.pty, buf);
        let timestamp = now_rfc3339_nano();
        match result {
            ReadResult::Data(n) => {
                // Short lines grow ~40 bytes each in the log: format a piece at a time so
                // that `scratch` stays small whatever the read held.
                for piece in buf[..n].chunks(FORMAT_PIECE) {
                    output.splitter.feed(piece, &timestamp, scratch);
                    if scratch.len() >= WRITE_AT {
                        write_log(&mut self.log, scratch);
                    }
                }
                let stream = output.stream;
                let id = &self.id;
                self.attachers
                    .retain_mut(|a| a.stream != stream || a.write(&buf[..n], id) == Fanned::Kept);
            }
            ReadResult::End => {
                output.file = None;
                output.splitter.finish(&timestamp, scratch);
            }
            ReadResult::Again => {}
        }
        write_log(&mut self.log, scratch);
        result
    }

    /// Read what every output holds now (not waiting for writers that outlive the init).
    pub fn drain(&mut self, buf: &mut [u8], scratch: &mut Vec<u8>) {
        for index in 0..self.outputs.len() {
            for _ in 0..DRAIN_READS {
                if !matches!(self.read(index, buf, scratch), ReadResult::Data(_)) {
                    break;
                }
            }
        }
    }

    /// The init was reaped: drain the output into the log, decide the OOM flag, keep the
    /// exit. Runs before the exit file is written.
    pub fn on_exit(&mut self, exit: &mut ExitStatus, buf: &mut [u8], scratch: &mut Vec<u8>) {
        self.drain(buf, scratch);
        if let Some(oom) = &self.oom {
            match oom_kills(&oom.path) {
                Ok(count) => exit.oom_killed |= count > oom.baseline,
                Err(e) => log(format_args!(
                    "container {}: reading {}: {e}",
                    self.id,
                    oom.path.display()
                )),
            }
        }
        // Never started: nothing runs that could be killed later.
        self.created = None;
        self.exit = Some(exit.clone());
        // Attachers read end of file once the output up to the exit is theirs.
        self.attachers.clear();
    }

    /// The end of the container's record: the partial lines still pending go to the log,
    /// every fd is closed (on drop).
    pub fn close(&mut self, scratch: &mut Vec<u8>) {
        let timestamp = now_rfc3339_nano();
        for output in &mut self.outputs {
            output.file = None;
            output.splitter.finish(&timestamp, scratch);
        }
        write_log(&mut self.log, scratch);
        self.stdin = None;
        self.attachers.clear();
    }

    /// Attach connection `conn`: corrald's fds (in the answer's `fds` order) for the
    /// streams asked for. stdin is a dup of the shim's write end (or of the pty master),
    /// absent when the container has none.
    pub fn attach(
        &mut self,
        conn: u64,
        streams: Streams,
    ) -> Result<(AttachReply, Vec<OwnedFd>), ErrorReply> {
        if !self.running() {
            return Err(ErrorReply::new(
                ErrorCode::FailedPrecondition,
                format!("container {} is not running", self.id),
            ));
        }
        let mut names = Vec::new();
        let mut fds = Vec::new();
        if streams.stdin && self.stdin_open {
            let dup = match self.tty {
                true => self
                    .outputs
                    .first()
                    .and_then(|o| o.file.as_ref())
                    .map(|f| f.as_fd().try_clone_to_owned()),
                false => self.stdin.as_ref().map(|fd| fd.try_clone()),
            };
            if let Some(dup) = dup {
                fds.push(dup.map_err(|e| internal("dup", e))?);
                names.push("stdin".to_string());
            }
        }
        let mut new = Vec::new();
        for (name, wanted, stream) in [
            ("stdout", streams.stdout, Stream::Stdout),
            ("stderr", streams.stderr && !self.tty, Stream::Stderr),
        ] {
            if wanted {
                let (attacher, read_end) = Attacher::new(conn, stream)?;
                new.push(attacher);
                fds.push(read_end);
                names.push(name.to_string());
            }
        }
        self.attachers.extend(new);
        let reply = AttachReply {
            fds: names,
            tty: self.tty,
            stdin_once: self.stdin_once,
        };
        Ok((reply, fds))
    }

    /// Remove connection `conn`'s attachers (its reader closes them anyway).
    pub fn detach(&mut self, conn: u64) {
        self.attachers.retain(|a| a.conn != conn);
    }

    /// Close the shim's write end of stdin (StdinOnce); later attaches get no stdin.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
        self.stdin_open = false;
    }

    /// The fds to poll for output, with their index in [`Container::outputs`].
    pub fn open_outputs(&self) -> impl Iterator<Item = (usize, std::os::fd::BorrowedFd<'_>)> {
        self.outputs
            .iter()
            .enumerate()
            .filter_map(|(i, o)| o.file.as_ref().map(|f| (i, f.as_fd())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_kill_counts() {
        let dir = tempfile::tempdir().unwrap();
        let v2 = dir.path().join("memory.events");
        std::fs::write(
            &v2,
            "low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\noom_group_kill 0\n",
        )
        .unwrap();
        assert_eq!(oom_kills(&v2).unwrap(), 2);
        let v1 = dir.path().join("memory.oom_control");
        std::fs::write(&v1, "oom_kill_disable 0\nunder_oom 0\noom_kill 5\n").unwrap();
        assert_eq!(oom_kills(&v1).unwrap(), 5);
        std::fs::write(&v1, "oom_kill_disable 0\nunder_oom 0\n").unwrap();
        assert_eq!(oom_kills(&v1).unwrap(), 0, "old kernels have no count");
        assert!(oom_kills(&dir.path().join("missing")).is_err());
    }
}
