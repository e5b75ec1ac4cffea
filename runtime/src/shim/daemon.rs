//! Start-up: the shim forks away from whoever spawned it before anything else, becomes a
//! session leader and the pod's subreaper, sheds inherited fds, and reports readiness.
//!
//! ```text
//! corrald ──spawn──▶ corral-shim (P0) ──fork──▶ shim (C1): setsid, subreaper, pause, socket
//!                       │   ◀──status pipe── "ready" or the error, one JSON line
//!                       └─ relays that line to the ready fd, exits 0 (ready) or 1
//! ```
//!
//! P0 is the only process the spawner has to wait for; the shim itself is reparented to
//! the nearest subreaper (or init) and never dies with the spawner.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::prctl;
use nix::sys::signal::{signal, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::stat::{umask, Mode};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, setsid, ForkResult, Pid};

use super::args::{Args, USAGE};
use super::exit_file::write_atomic;
use super::log;
use super::pause;
use super::protocol::{
    decode_answer, encode_error, encode_success, ErrorCode, ErrorReply, PingReply, PAUSE_ID,
    PID_FILE, READY_FD_ENV, SOCKET_FILE,
};
use super::server::Server;
use super::sys;

/// The whole program: returns the exit code of the process that was spawned (P0).
pub fn main() -> i32 {
    let args = match Args::parse(std::env::args_os().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "corral-shim: {e}\n{USAGE}");
            return 2;
        }
    };
    let ready_fd = match ready_fd_from_env() {
        Ok(fd) => fd,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "corral-shim: {e}");
            return 2;
        }
    };
    let (status_r, status_w) = match nix::unistd::pipe2(OFlag::O_CLOEXEC) {
        Ok(pipe) => pipe,
        Err(e) => return fail_early(ready_fd, &format!("pipe: {e}")),
    };
    match fork_into_pod_cgroup(&args) {
        Err(e) => fail_early(ready_fd, &e),
        Ok(Some(child)) => {
            drop(status_w);
            relay(status_r, ready_fd, child)
        }
        Ok(None) => {
            drop(status_r);
            std::process::exit(shim_main(&args, status_w))
        }
    }
}

/// Fork the shim proper, born in the pod's own cgroup when one is given: this process
/// (still single-threaded) joins each v1 hierarchy through `tasks`, and the child is cloned
/// straight into the cgroup2 directory; neither waits on the kernel's global threadgroup
/// lock as a `cgroup.procs` write of another process would. `None` in the child.
fn fork_into_pod_cgroup(args: &Args) -> Result<Option<Pid>, String> {
    let into = super::init::join_cgroups(&args.cgroup_procs).map_err(|e| e.to_string())?;
    let v2_procs = args.cgroup_procs.iter().find(|p| {
        p.parent().is_some_and(|d| {
            nix::sys::statfs::statfs(d)
                .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        })
    });
    match (&into, v2_procs) {
        (Some(dir), Some(procs)) => super::init::fork_into(dir, procs).map_err(|e| e.to_string()),
        // SAFETY: nothing in this process has started a thread (no runtime, no helper), so
        // the child is a complete copy that may allocate and run any code.
        _ => match unsafe { fork() } {
            Err(e) => Err(format!("fork: {e}")),
            Ok(ForkResult::Parent { child }) => Ok(Some(child)),
            Ok(ForkResult::Child) => Ok(None),
        },
    }
}

/// The fd to report readiness on: `$CORRAL_SHIM_READY_FD`, else stdout.
fn ready_fd_from_env() -> Result<RawFd, String> {
    let fd = match std::env::var(READY_FD_ENV) {
        Ok(v) => v
            .parse::<RawFd>()
            .ok()
            .filter(|fd| *fd >= 0)
            .ok_or_else(|| format!("{READY_FD_ENV}={v:?} is not an fd"))?,
        Err(_) => 1,
    };
    fcntl(fd, FcntlArg::F_GETFD).map_err(|e| format!("{READY_FD_ENV}={fd}: {e}"))?;
    Ok(fd)
}

/// Write all of `bytes` to a raw fd that this process does not own.
fn write_raw(fd: RawFd, bytes: &[u8]) -> nix::Result<()> {
    // SAFETY: `fd` was checked open by `ready_fd_from_env`, and nothing in P0 closes it.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    write_all(fd, bytes)
}

pub(super) fn write_all(fd: impl AsFd, mut bytes: &[u8]) -> nix::Result<()> {
    while !bytes.is_empty() {
        match nix::unistd::write(fd.as_fd(), bytes) {
            Ok(0) => return Err(nix::Error::EIO),
            Ok(n) => bytes = &bytes[n..],
            Err(nix::Error::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn fail_early(ready_fd: RawFd, message: &str) -> i32 {
    let _ = write_raw(
        ready_fd,
        &encode_error(&ErrorReply::new(ErrorCode::Internal, message)),
    );
    let _ = writeln!(std::io::stderr(), "corral-shim: {message}");
    1
}

/// P0: wait for the shim's one status line, pass it on to the ready fd, exit 0 on ready.
fn relay(status: OwnedFd, ready_fd: RawFd, child: Pid) -> i32 {
    let mut line = Vec::new();
    let mut file = File::from(status);
    let mut buf = [0u8; 512];
    while !line.contains(&b'\n') {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => line.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if let Some(end) = line.iter().position(|b| *b == b'\n') {
        line.truncate(end + 1);
    }
    if line.is_empty() {
        let why = format!(
            "the shim exited before it was ready ({})",
            child_fate(child)
        );
        line = encode_error(&ErrorReply::new(ErrorCode::Internal, why));
    }
    let _ = write_raw(ready_fd, &line);
    match decode_answer::<PingReply>(&line) {
        Ok(_) => 0,
        Err(e) => {
            let text = match e {
                super::protocol::AnswerError::Refused(e) => e.error,
                super::protocol::AnswerError::Malformed(e) => e,
            };
            let _ = writeln!(std::io::stderr(), "corral-shim: {text}");
            1
        }
    }
}

/// How the shim (P0's child) ended, once its status pipe closed without a word.
fn child_fate(child: Pid) -> String {
    for _ in 0..100 {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return format!("exit code {code}"),
            Ok(WaitStatus::Signaled(_, sig, _)) => return format!("killed by {sig}"),
            Ok(WaitStatus::StillAlive) | Err(nix::Error::EINTR) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Ok(_) => {}
            Err(e) => return format!("wait: {e}"),
        }
    }
    "still running".into()
}

/// C1: become the shim, report, serve. Returns an exit code only on failure.
fn shim_main(args: &Args, status: OwnedFd) -> i32 {
    let server = match start(args, status.as_raw_fd()) {
        Ok(server) => server,
        Err(err) => {
            log(format_args!("start-up failed: {}", err.error));
            let _ = write_all(&status, &encode_error(&err));
            return 1;
        }
    };
    let ready = PingReply {
        pid: std::process::id() as i32,
        pause_pid: server.pause_pid(),
    };
    if let Err(e) = write_all(&status, &encode_success(&ready)) {
        // Nobody is waiting for this shim any more (the spawner gave up): undo everything.
        log(format_args!("reporting readiness: {e}; exiting"));
        server.abort();
    }
    drop(status);
    server.run()
}

fn internal(what: &str, e: impl std::fmt::Display) -> ErrorReply {
    ErrorReply::new(ErrorCode::Internal, format!("{what}: {e}"))
}

/// Everything between the fork and readiness, in order. Undoes what it made on failure.
fn start(args: &Args, status_fd: RawFd) -> Result<Server, ErrorReply> {
    setsid().map_err(|e| internal("setsid", e))?;
    let _ = prctl::set_name(c"corral-shim");
    prctl::set_child_subreaper(true).map_err(|e| internal("PR_SET_CHILD_SUBREAPER", e))?;
    std::env::set_current_dir("/").map_err(|e| internal("chdir /", e))?;
    umask(Mode::from_bits_truncate(0o022));
    redirect_stdio(args.log.as_deref()).map_err(|e| internal("redirecting stdio", e))?;
    close_fds_except(&[status_fd]);
    // SAFETY: SIG_IGN installs no handler code; a write to a closed peer returns EPIPE.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) }.map_err(|e| internal("SIGPIPE", e))?;
    lower_oom_score();

    // Signals arrive through a signalfd only; children inherit this mask and must reset it.
    let mut mask = SigSet::empty();
    for sig in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
        mask.add(sig);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
        .map_err(|e| internal("sigprocmask", e))?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| internal("signalfd", e))?;

    let dir = &args.dir;
    fs::create_dir_all(dir).map_err(|e| internal(&format!("creating {}", dir.display()), e))?;
    let socket = dir.join(SOCKET_FILE);
    if UnixStream::connect(&socket).is_ok() {
        return Err(ErrorReply::new(
            ErrorCode::AlreadyExists,
            format!("a shim already serves {}", socket.display()),
        ));
    }
    remove_if_exists(&socket).map_err(|e| internal("removing a stale socket", e))?;

    let pause = match args.share_pid {
        true => Some(pause::start(dir, args).map_err(|e| internal("starting the pause", e))?),
        false => None,
    };
    let undo = |err: ErrorReply| {
        if let Some(p) = &pause {
            p.kill();
        }
        let _ = fs::remove_file(dir.join(PID_FILE));
        let _ = fs::remove_file(&socket);
        err
    };
    let pid = std::process::id();
    write_atomic(&dir.join(PID_FILE), format!("{pid}\n").as_bytes())
        .map_err(|e| undo(internal("writing shim.pid", e)))?;
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(&socket);
    umask(old);
    let listener =
        bound.map_err(|e| undo(internal(&format!("binding {}", socket.display()), e)))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| undo(internal("socket", e)))?;

    let mut server = Server::new(args.pod_id.clone(), dir.clone(), listener, signals);
    if let Some(p) = pause {
        server.track(PAUSE_ID, p.pid, None);
        server.set_pause(p);
    }
    log(format_args!(
        "serving pod {} on {}",
        args.pod_id,
        socket.display()
    ));
    Ok(server)
}

/// Point 0, 1 and 2 at /dev/null (2 at `log`, appended, when given).
pub(super) fn redirect_stdio(log: Option<&Path>) -> std::io::Result<()> {
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    let err = match log {
        Some(path) => OpenOptions::new().create(true).append(true).open(path)?,
        None => null.try_clone()?,
    };
    for (fd, from) in [(0, &null), (1, &null), (2, &err)] {
        nix::unistd::dup2(from.as_raw_fd(), fd)?;
    }
    Ok(())
}

/// Close every fd above 2 except `keep`: close_range(2) around the kept ones, or a walk
/// of /proc/self/fd on kernels without it.
pub(super) fn close_fds_except(keep: &[RawFd]) {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter_map(|fd| u32::try_from(*fd).ok())
        .collect();
    keep.sort_unstable();
    let mut first = 3u32;
    let mut ranged = true;
    for fd in keep.iter().copied().filter(|fd| *fd >= 3) {
        ranged &= fd == first || sys::close_range(first, fd - 1);
        first = fd + 1;
    }
    if ranged && sys::close_range(first, u32::MAX) {
        return;
    }
    let open: Vec<RawFd> = match fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => (3..1024).collect(),
    };
    for fd in open {
        if fd > 2 && !keep.contains(&(fd as u32)) {
            // The directory's own fd is already closed by now: EBADF, harmless.
            let _ = nix::unistd::close(fd);
        }
    }
}

/// The shim must be the last thing the OOM killer picks; fine if we may not ask for it.
fn lower_oom_score() {
    if let Err(e) = fs::write("/proc/self/oom_score_adj", b"-998") {
        if !matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) {
            log(format_args!("oom_score_adj: {e}"));
        }
    }
}

pub(super) fn remove_if_exists(path: &Path) -> std::io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
