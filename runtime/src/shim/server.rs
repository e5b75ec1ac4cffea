//! The main loop: one `poll` over the signalfd, the listening socket and every client
//! connection; no threads, no async runtime.
//!
//! Each connection has a read buffer cut into lines and a write buffer drained as the
//! socket accepts. A request is answered at once, or deferred (`shutdown`, and later
//! `wait` or `exec`): a connection with a deferred answer reads nothing more until it is
//! answered, so answers stay in request order, while other connections are served.

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::signalfd::SignalFd;
use nix::unistd::Pid;

use super::daemon::remove_if_exists;
use super::log;
use super::pause::{self, Pause};
use super::protocol::{
    encode_error, encode_success, Empty, ErrorCode, ErrorReply, PingReply, Request, StatusReply,
    MAX_LINE, PID_FILE, SOCKET_FILE,
};
use super::reaper::Reaper;
use super::sys::{self, pollfd, POLLIN, POLLOUT};

/// Connections beyond this many are answered with an error and closed.
const MAX_CONNS: usize = 128;
/// Answers queued for a connection beyond which its requests wait.
const MAX_QUEUED: usize = 4 * MAX_LINE;
/// The grace a SIGTERM or SIGINT to the shim gives the pod's processes.
const SIGNAL_GRACE: Duration = Duration::from_secs(5);
/// How long to wait for SIGKILLed processes to be reaped before exiting regardless.
const KILL_WAIT: Duration = Duration::from_secs(2);
/// How long the last answer may take to write before the shim exits regardless.
const LAST_WRITE: Duration = Duration::from_secs(1);

pub struct Server {
    pod_id: String,
    dir: PathBuf,
    pid: i32,
    listener: UnixListener,
    signals: SignalFd,
    conns: Vec<Conn>,
    next_conn: u64,
    reaper: Reaper,
    pause: Option<Pause>,
    stop: Option<Stop>,
}

/// A shutdown in progress.
struct Stop {
    /// When whatever still runs gets SIGKILL.
    deadline: Instant,
    /// Connections waiting for the shutdown's answer.
    reply_to: Vec<u64>,
    /// The pause gets SIGTERM once everything else has gone (its exit SIGKILLs its
    /// namespace, which would cut the others' grace short).
    pause_termed: bool,
    killed_at: Option<Instant>,
}

struct Conn {
    id: u64,
    stream: UnixStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    /// A request's answer is deferred; read nothing more until it is given.
    waiting: bool,
    /// The peer has closed its side (or sent too much): no more reads.
    eof: bool,
    /// Writing failed: drop the connection.
    dead: bool,
}

enum Outcome {
    Now(Vec<u8>),
    Deferred,
}

impl Server {
    pub fn new(pod_id: String, dir: PathBuf, listener: UnixListener, signals: SignalFd) -> Self {
        Server {
            pod_id,
            dir,
            pid: std::process::id() as i32,
            listener,
            signals,
            conns: Vec::new(),
            next_conn: 0,
            reaper: Reaper::default(),
            pause: None,
            stop: None,
        }
    }

    pub fn track(&mut self, id: &str, pid: Pid, exit_file: Option<PathBuf>) {
        self.reaper.track(id, pid, exit_file);
    }

    pub fn set_pause(&mut self, pause: Pause) {
        self.pause = Some(pause);
    }

    /// The pause's pid while it runs.
    pub fn pause_pid(&self) -> Option<i32> {
        self.pause
            .as_ref()
            .filter(|p| self.reaper.is_live(p.pid))
            .map(|p| p.pid.as_raw())
    }

    /// Undo start-up and exit 1: for a shim whose readiness nobody received.
    pub fn abort(mut self) -> ! {
        self.stop = Some(Stop {
            deadline: Instant::now(),
            reply_to: Vec::new(),
            pause_termed: true,
            killed_at: None,
        });
        while !self.drive_stop() {
            std::thread::sleep(Duration::from_millis(5));
            self.reaper.reap();
        }
        self.release();
        std::process::exit(1)
    }

    /// Serve until shut down; exits the process.
    pub fn run(mut self) -> ! {
        loop {
            let timeout = self.poll_timeout();
            let ready = match self.poll(timeout) {
                Ok(ready) => ready,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log(format_args!("poll: {e}"));
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            if ready.signals {
                self.on_signals();
            }
            if ready.listener {
                self.accept();
            }
            for (index, events) in ready.conns.into_iter().enumerate() {
                if events != 0 {
                    self.on_conn(index, events);
                }
            }
            self.conns.retain(|c| !c.finished());
            if self.drive_stop() {
                self.finish();
            }
        }
    }

    fn poll_timeout(&self) -> Option<Duration> {
        let stop = self.stop.as_ref()?;
        let next = match stop.killed_at {
            Some(at) => at + KILL_WAIT,
            None => stop.deadline,
        };
        Some(next.saturating_duration_since(Instant::now()) + Duration::from_millis(1))
    }

    fn poll(&self, timeout: Option<Duration>) -> io::Result<Ready> {
        let mut fds = Vec::with_capacity(2 + self.conns.len());
        fds.push(pollfd(self.signals.as_fd(), POLLIN));
        fds.push(pollfd(self.listener.as_fd(), POLLIN));
        for c in &self.conns {
            let mut events = 0;
            // A peer that sends but does not read gets no more answers queued.
            if !c.waiting && !c.eof && c.wbuf.len() < MAX_QUEUED {
                events |= POLLIN;
            }
            if !c.wbuf.is_empty() {
                events |= POLLOUT;
            }
            let mut fd = pollfd(c.stream.as_fd(), events);
            if events == 0 {
                // Nothing to wait for (and a closed peer would report POLLHUP forever).
                fd.fd = -1;
            }
            fds.push(fd);
        }
        sys::poll(&mut fds, timeout)?;
        Ok(Ready {
            signals: fds[0].revents != 0,
            listener: fds[1].revents != 0,
            conns: fds[2..].iter().map(|f| f.revents).collect(),
        })
    }

    fn on_signals(&mut self) {
        let (mut child, mut term) = (false, false);
        loop {
            match self.signals.read_signal() {
                Ok(Some(info)) => match info.ssi_signo as i32 {
                    libc::SIGCHLD => child = true,
                    libc::SIGTERM | libc::SIGINT => term = true,
                    _ => {}
                },
                Ok(None) => break,
                Err(nix::Error::EINTR) => {}
                Err(e) => {
                    log(format_args!("reading signalfd: {e}"));
                    break;
                }
            }
        }
        if child {
            self.reap();
        }
        if term {
            log(format_args!("SIGTERM: stopping the pod's processes"));
            self.begin_stop(SIGNAL_GRACE, None);
        }
    }

    fn reap(&mut self) {
        let pause_pid = self.pause.as_ref().map(|p| p.pid);
        for ended in self.reaper.reap() {
            if Some(ended.pid) == pause_pid && self.stop.is_none() {
                log(format_args!(
                    "the pause (pid {}) died: {:?}",
                    ended.pid, ended.exit
                ));
            }
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if self.conns.len() >= MAX_CONNS || stream.set_nonblocking(true).is_err() {
                        let busy = ErrorReply::new(ErrorCode::Unavailable, "too many connections");
                        let _ = (&stream).write(&encode_error(&busy));
                        continue;
                    }
                    self.next_conn += 1;
                    self.conns.push(Conn {
                        id: self.next_conn,
                        stream,
                        rbuf: Vec::new(),
                        wbuf: Vec::new(),
                        waiting: false,
                        eof: false,
                        dead: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and the like: leave it for the next round.
                    log(format_args!("accept: {e}"));
                    break;
                }
            }
        }
    }

    fn on_conn(&mut self, index: usize, events: i16) {
        if events & (POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            self.conns[index].fill();
        }
        self.serve_lines(index);
        self.conns[index].flush();
    }

    /// Answer the complete lines buffered on a connection, until one is deferred.
    fn serve_lines(&mut self, index: usize) {
        loop {
            let conn = &mut self.conns[index];
            if conn.waiting || conn.dead {
                return;
            }
            let Some(line) = conn.next_line() else {
                if conn.rbuf.len() > MAX_LINE {
                    let err = ErrorReply::invalid(
                        "request",
                        format!("line longer than {MAX_LINE} bytes"),
                    );
                    conn.wbuf.extend(encode_error(&err));
                    conn.rbuf = Vec::new();
                    conn.eof = true;
                }
                return;
            };
            let id = conn.id;
            match self.dispatch(id, &line) {
                Some(Outcome::Now(answer)) => self.conns[index].wbuf.extend(answer),
                Some(Outcome::Deferred) => self.conns[index].waiting = true,
                None => {}
            }
        }
    }

    /// One request line to its answer; None for a blank line.
    fn dispatch(&mut self, conn: u64, line: &[u8]) -> Option<Outcome> {
        let line = line.trim_ascii();
        if line.is_empty() {
            return None;
        }
        let request: Request = match serde_json::from_slice(line) {
            Ok(request) => request,
            Err(e) => {
                let text = e.to_string();
                let field = if text.contains("variant") || text.contains("`op`") {
                    "op"
                } else {
                    "request"
                };
                return Some(Outcome::Now(encode_error(&ErrorReply::invalid(
                    field, text,
                ))));
            }
        };
        Some(match request {
            Request::Ping => Outcome::Now(encode_success(&PingReply {
                pid: self.pid,
                pause_pid: self.pause_pid(),
            })),
            Request::Status => Outcome::Now(encode_success(&StatusReply {
                pid: self.pid,
                pod_id: self.pod_id.clone(),
                pause_pid: self.pause_pid(),
                stopping: self.stop.is_some(),
                processes: self.reaper.statuses(),
            })),
            Request::Shutdown { grace_ms } => {
                self.begin_stop(Duration::from_millis(grace_ms), Some(conn));
                Outcome::Deferred
            }
        })
    }

    /// SIGTERM every tracked process but the pause (see [`Stop::pause_termed`]).
    fn begin_stop(&mut self, grace: Duration, reply_to: Option<u64>) {
        let deadline = Instant::now() + grace;
        if let Some(stop) = &mut self.stop {
            stop.deadline = stop.deadline.min(deadline);
            stop.reply_to.extend(reply_to);
            return;
        }
        let pause = self.pause.as_ref().map(|p| p.pid);
        for pid in self.reaper.live().filter(|pid| Some(*pid) != pause) {
            let _ = kill(pid, Signal::SIGTERM);
        }
        self.stop = Some(Stop {
            deadline,
            reply_to: reply_to.into_iter().collect(),
            pause_termed: false,
            killed_at: None,
        });
    }

    /// Move a shutdown along; true once nothing tracked runs (or the wait is over).
    fn drive_stop(&mut self) -> bool {
        let Some(stop) = &mut self.stop else {
            return false;
        };
        let now = Instant::now();
        let pause = self.pause.as_ref().map(|p| p.pid);
        if !stop.pause_termed && self.reaper.live().all(|pid| Some(pid) == pause) {
            if let Some(pid) = pause.filter(|pid| self.reaper.is_live(*pid)) {
                let _ = kill(pid, Signal::SIGTERM);
            }
            stop.pause_termed = true;
        }
        if stop.killed_at.is_none() && now >= stop.deadline {
            for pid in self.reaper.live() {
                let _ = kill(pid, Signal::SIGKILL);
            }
            kill_children(self.pid);
            stop.killed_at = Some(now);
        }
        if self.reaper.live().next().is_none() {
            return true;
        }
        match stop.killed_at {
            Some(at) if now >= at + KILL_WAIT => {
                log(format_args!(
                    "processes survived SIGKILL; exiting regardless"
                ));
                true
            }
            _ => false,
        }
    }

    /// Release what the shim holds: the pidns pin, the socket and pid files.
    fn release(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        if let Some(p) = &self.pause {
            if let Err(e) = pause::unpin(&p.pin) {
                errors.push(format!("unmounting {}: {e}", p.pin.display()));
            }
        }
        for name in [SOCKET_FILE, PID_FILE] {
            let path = self.dir.join(name);
            if let Err(e) = remove_if_exists(&path) {
                errors.push(format!("removing {}: {e}", path.display()));
            }
        }
        errors
    }

    /// The end of a shutdown: release, answer whoever asked, exit 0.
    fn finish(&mut self) -> ! {
        kill_children(self.pid);
        let errors = self.release();
        let answer = match errors.is_empty() {
            true => encode_success(&Empty {}),
            false => encode_error(&ErrorReply::new(ErrorCode::Internal, errors.join("; "))),
        };
        let reply_to = self
            .stop
            .as_ref()
            .map(|s| s.reply_to.clone())
            .unwrap_or_default();
        for conn in self.conns.iter_mut().filter(|c| reply_to.contains(&c.id)) {
            conn.wbuf.extend_from_slice(&answer);
            let _ = conn.stream.set_nonblocking(false);
            let _ = conn.stream.set_write_timeout(Some(LAST_WRITE));
            let _ = conn.stream.write_all(&conn.wbuf);
        }
        log(format_args!("pod {} shim exiting", self.pod_id));
        std::process::exit(0)
    }
}

struct Ready {
    signals: bool,
    listener: bool,
    conns: Vec<i16>,
}

impl Conn {
    /// Read what the socket has.
    fn fill(&mut self) {
        let mut buf = [0u8; 4096];
        while !self.eof && self.rbuf.len() <= MAX_LINE {
            match self.stream.read(&mut buf) {
                Ok(0) => self.eof = true,
                Ok(n) => self.rbuf.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.eof = true;
                    self.dead = true;
                }
            }
        }
    }

    /// The next complete line (a last unterminated one once the peer has closed).
    fn next_line(&mut self) -> Option<Vec<u8>> {
        let end = match self.rbuf.iter().position(|b| *b == b'\n') {
            Some(i) => i + 1,
            None if self.eof && !self.rbuf.is_empty() && self.rbuf.len() <= MAX_LINE => {
                self.rbuf.len()
            }
            None => return None,
        };
        let line: Vec<u8> = self.rbuf.drain(..end).collect();
        if self.rbuf.is_empty() && self.rbuf.capacity() > 64 * 1024 {
            self.rbuf = Vec::new();
        }
        Some(line)
    }

    /// Write what the socket takes.
    fn flush(&mut self) {
        while !self.wbuf.is_empty() && !self.dead {
            match self.stream.write(&self.wbuf) {
                Ok(n) => {
                    self.wbuf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => self.dead = true,
            }
        }
        if self.wbuf.is_empty() && self.wbuf.capacity() > 64 * 1024 {
            self.wbuf = Vec::new();
        }
    }

    fn finished(&self) -> bool {
        self.dead || (self.eof && !self.waiting && self.wbuf.is_empty() && self.rbuf.is_empty())
    }
}

/// SIGKILL every child of the shim still listed by the kernel (orphans that reparented
/// to it included); best effort, needs CONFIG_PROC_CHILDREN.
fn kill_children(pid: i32) {
    let Ok(list) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) else {
        return;
    };
    for child in list.split_ascii_whitespace().filter_map(|p| p.parse().ok()) {
        let _ = kill(Pid::from_raw(child), Signal::SIGKILL);
    }
}
