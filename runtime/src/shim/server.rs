//! The main loop: one `poll` over the signalfd, the listening socket, every client
//! connection and every container's and exec's output; no threads, no async runtime.
//!
//! Each connection has a read buffer cut into lines and a write buffer drained as the
//! socket accepts. A request is answered at once, or deferred (`shutdown`, `wait`,
//! `exec`): a connection with a deferred answer reads nothing more until it is answered,
//! so answers stay in request order, while other connections are served.
//!
//! Each round: output first (one read of at most [`READ_BUF`] bytes per ready fd, into
//! the CRI log or an exec's capture), then exits (a container's output is drained and
//! its OOM flag decided before its exit file is written and its waiters answered), then
//! new connections and requests, then exec timeouts, then the streams of connections
//! that closed (see [`super::stream`]).
//!
//! An answer may carry fds (a streamed exec's, an attach's): they are queued with the
//! answer's offset in the write buffer, and sent with `SCM_RIGHTS` on the sendmsg that
//! starts at that offset (a write never runs past the next such offset), then closed.
//! A connection that owns a stream is polled for its hang-up even while it waits for a
//! deferred answer.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use nix::sys::signal::{kill, Signal};
use nix::sys::signalfd::SignalFd;
use nix::unistd::Pid;

use super::container::Container;
use super::daemon::remove_if_exists;
use super::exec::ExecRun;
use super::log;
use super::pause::{self, Pause};
use super::protocol::{
    encode_error, encode_success, Attach, CreateContainer, CreateReply, Empty, ErrorCode,
    ErrorReply, Exec, PingReply, Request, StatusReply, Streams, MAX_LINE, MAX_STREAMS, PAUSE_ID,
    PID_FILE, SOCKET_FILE,
};
use super::reaper::Reaper;
use super::stream::{self, StreamExec};
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
/// The one read buffer every output shares: the most read from one fd in one round.
pub const READ_BUF: usize = 64 * 1024;
/// The log-formatting buffer is given back once it grew past this.
const SCRATCH_KEEP: usize = 256 * 1024;

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
    /// Containers by creation order, until forgotten.
    containers: Vec<Container>,
    /// Execs until answered.
    execs: Vec<ExecRun>,
    /// Streamed execs until their owner has been told the exit, or has gone.
    streams: Vec<StreamExec>,
    /// Attach sessions: (connection, container id).
    attaches: Vec<(u64, String)>,
    /// Connections waiting for the exit of a process: (connection, process id).
    waiters: Vec<(u64, String)>,
    /// The shared read buffer ([`READ_BUF`]), allocated on the first output.
    buf: Vec<u8>,
    /// Log lines being formatted.
    scratch: Vec<u8>,
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
    /// Bytes written so far: the offset of `wbuf[0]` in the connection's output.
    sent: u64,
    /// Fds to pass, each with the output offset of the answer they belong to.
    fds: VecDeque<(u64, Vec<OwnedFd>)>,
    /// It owns a streamed exec or an attach session (released when it closes).
    streams: bool,
}

enum Outcome {
    Now(Vec<u8>),
    /// An answer with fds to pass along with its first byte.
    WithFds(Vec<u8>, Vec<OwnedFd>),
    Deferred,
}

impl Outcome {
    fn reply<T: Serialize>(result: Result<T, ErrorReply>) -> Outcome {
        Outcome::Now(match result {
            Ok(reply) => encode_success(&reply),
            Err(e) => encode_error(&e),
        })
    }
}

/// Which output a poll entry is.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// (index in `containers`, index in its outputs)
    Container(usize, usize),
    /// (index in `execs`, index in its captures)
    Exec(usize, usize),
}

fn not_found(what: &str, id: &str) -> ErrorReply {
    ErrorReply::new(ErrorCode::NotFound, format!("no {what} {id:?} in this pod"))
}

fn precondition(message: String) -> ErrorReply {
    ErrorReply::new(ErrorCode::FailedPrecondition, message)
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
            containers: Vec::new(),
            execs: Vec::new(),
            streams: Vec::new(),
            attaches: Vec::new(),
            waiters: Vec::new(),
            buf: Vec::new(),
            scratch: Vec::new(),
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
            for (source, events) in ready.outputs {
                if events != 0 {
                    self.on_output(source);
                }
            }
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
            self.on_exec_timers();
            self.pump();
            self.release_closed();
            self.conns.retain(|c| !c.finished());
            if self.scratch.capacity() > SCRATCH_KEEP {
                self.scratch = Vec::new();
            }
            if self.drive_stop() {
                self.finish();
            }
        }
    }

    fn poll_timeout(&self) -> Option<Duration> {
        let stop = self.stop.as_ref().map(|stop| match stop.killed_at {
            Some(at) => at + KILL_WAIT,
            None => stop.deadline,
        });
        let next = self
            .execs
            .iter()
            .filter_map(ExecRun::next_timer)
            .chain(stop)
            .min()?;
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
            // A stream's owner is watched for its hang-up (always reported) even while
            // its `wait` is deferred.
            if events == 0 && (!c.streams || c.eof) {
                // Nothing to wait for (and a closed peer would report POLLHUP forever).
                fd.fd = -1;
            }
            fds.push(fd);
        }
        let mut sources = Vec::new();
        for (ci, c) in self.containers.iter().enumerate() {
            for (oi, fd) in c.open_outputs() {
                fds.push(pollfd(fd, POLLIN));
                sources.push(Source::Container(ci, oi));
            }
        }
        for (ei, e) in self.execs.iter().enumerate() {
            for (oi, fd) in e.open_outputs() {
                fds.push(pollfd(fd, POLLIN));
                sources.push(Source::Exec(ei, oi));
            }
        }
        sys::poll(&mut fds, timeout)?;
        let conns_end = 2 + self.conns.len();
        Ok(Ready {
            signals: fds[0].revents != 0,
            listener: fds[1].revents != 0,
            conns: fds[2..conns_end].iter().map(|f| f.revents).collect(),
            outputs: sources
                .into_iter()
                .zip(fds[conns_end..].iter().map(|f| f.revents))
                .collect(),
        })
    }

    /// One read from a ready output (POLLHUP and POLLERR too: the read tells the end).
    fn on_output(&mut self, source: Source) {
        if self.buf.is_empty() {
            self.buf = vec![0; READ_BUF];
        }
        match source {
            Source::Container(ci, oi) => {
                if let Some(c) = self.containers.get_mut(ci) {
                    c.read(oi, &mut self.buf, &mut self.scratch);
                }
            }
            Source::Exec(ei, oi) => {
                if let Some(e) = self.execs.get_mut(ei) {
                    e.read(oi, &mut self.buf);
                }
            }
        }
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
        if self.buf.is_empty() {
            self.buf = vec![0; READ_BUF];
        }
        let (containers, buf, scratch) = (&mut self.containers, &mut self.buf, &mut self.scratch);
        let ended = self.reaper.reap_with(|tracked, exit| {
            // A container's log is complete and its OOM flag set before its exit file says
            // it ended (whoever reads the file next may act on it at once).
            if let Some(c) = containers
                .iter_mut()
                .find(|c| c.id == tracked.id && c.pid == tracked.pid)
            {
                c.on_exit(exit, buf, scratch);
            }
        });
        for ended in ended {
            let Some(exit) = ended.exit else {
                continue;
            };
            if Some(ended.pid) == pause_pid && self.stop.is_none() {
                log(format_args!("the pause (pid {}) died: {exit:?}", ended.pid));
            }
            let answer = encode_success(&exit);
            let waiting: Vec<u64> = self
                .waiters
                .iter()
                .filter(|(_, id)| *id == ended.id)
                .map(|(conn, _)| *conn)
                .collect();
            self.waiters.retain(|(_, id)| *id != ended.id);
            for conn in &waiting {
                self.answer(*conn, answer.clone());
            }
            let answered = waiting;
            let is_container = self
                .containers
                .iter()
                .any(|c| c.id == ended.id && c.pid == ended.pid);
            if let Some(i) = self
                .execs
                .iter()
                .position(|e| e.id == ended.id && e.pid == ended.pid)
            {
                let mut run = self.execs.remove(i);
                run.drain(&mut self.buf);
                let answer = run.answer(Some(&exit));
                self.answer(run.reply_to, answer);
            }
            // A streamed exec's exit is kept for its owner's `wait`, unless the owner was
            // just told it or has gone.
            if let Some(i) = self
                .streams
                .iter()
                .position(|e| e.id == ended.id && e.pid == ended.pid)
            {
                let owner = self.streams[i].conn;
                let told = answered.contains(&owner);
                let owner_here = self.conns.iter().any(|c| c.id == owner && c.streams);
                if told || !owner_here {
                    self.streams.remove(i);
                } else {
                    self.streams[i].exited = true;
                    continue;
                }
            }
            // Execs (answered, or given up on after a timeout) leave no record.
            if !is_container && ended.id != PAUSE_ID {
                self.reaper.forget(&ended.id, ended.pid);
            }
        }
    }

    /// Give a deferred answer to connection `conn` (gone: nobody to tell).
    fn answer(&mut self, conn: u64, answer: Vec<u8>) {
        if let Some(c) = self.conns.iter_mut().find(|c| c.id == conn) {
            c.wbuf.extend_from_slice(&answer);
            c.waiting = false;
        }
    }

    /// Serve what connections unblocked by deferred answers have buffered, and write.
    fn pump(&mut self) {
        for index in 0..self.conns.len() {
            self.serve_lines(index);
            self.conns[index].flush();
        }
    }

    /// Exec deadlines: kill at the deadline, answer once the kill had its time.
    fn on_exec_timers(&mut self) {
        let now = Instant::now();
        let mut i = 0;
        while i < self.execs.len() {
            if !self.execs[i].on_timer(now) {
                i += 1;
                continue;
            }
            let mut run = self.execs.remove(i);
            log(format_args!(
                "exec {} in {} (pid {}) not reaped {:?} after its SIGKILL; answering",
                run.id,
                run.container_id,
                run.pid,
                super::exec::KILL_WAIT
            ));
            if self.buf.is_empty() {
                self.buf = vec![0; READ_BUF];
            }
            run.drain(&mut self.buf);
            let answer = run.answer(None);
            self.answer(run.reply_to, answer);
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
                        sent: 0,
                        fds: VecDeque::new(),
                        streams: false,
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
                Some(Outcome::WithFds(answer, fds)) => {
                    let conn = &mut self.conns[index];
                    let at = conn.sent + conn.wbuf.len() as u64;
                    if !fds.is_empty() {
                        conn.fds.push_back((at, fds));
                    }
                    conn.wbuf.extend(answer);
                    conn.streams = true;
                }
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
            Request::Status => Outcome::Now(encode_success(&self.status())),
            Request::Shutdown { grace_ms } => {
                self.begin_stop(Duration::from_millis(grace_ms), Some(conn));
                Outcome::Deferred
            }
            Request::CreateContainer(req) => Outcome::reply(self.create_container(&req)),
            Request::StartContainer { id } => Outcome::reply(
                self.container(&id)
                    .and_then(|c| c.start())
                    .map(|()| Empty {}),
            ),
            Request::Kill { id, signal } => Outcome::reply(self.kill(&id, signal)),
            Request::Wait { id } => match self.reaper.exit_of(&id) {
                None => Outcome::Now(encode_error(&not_found("process", &id))),
                Some(Some(exit)) => {
                    let answer = encode_success(exit);
                    self.told_exit(conn, &id);
                    Outcome::Now(answer)
                }
                Some(None) => {
                    self.waiters.push((conn, id));
                    Outcome::Deferred
                }
            },
            Request::Exec(req) if req.stream.is_some() => {
                let streams = req.stream.unwrap_or_default();
                match self.stream_exec(&req, streams, conn) {
                    Ok((answer, fds)) => Outcome::WithFds(answer, fds),
                    Err(e) => Outcome::Now(encode_error(&e)),
                }
            }
            Request::Exec(req) => match self.exec(&req, conn) {
                Ok(()) => Outcome::Deferred,
                Err(e) => Outcome::Now(encode_error(&e)),
            },
            Request::ReopenLog { id } => Outcome::reply(
                self.container(&id)
                    .and_then(|c| c.reopen_log())
                    .map(|()| Empty {}),
            ),
            Request::Forget { id } => Outcome::reply(self.forget(&id).map(|()| Empty {})),
            Request::Attach(req) => match self.attach(&req, conn) {
                Ok((answer, fds)) => Outcome::WithFds(answer, fds),
                Err(e) => Outcome::Now(encode_error(&e)),
            },
            Request::CloseStdin { id } => Outcome::reply(self.container(&id).map(|c| {
                c.close_stdin();
                Empty {}
            })),
        })
    }

    /// Start a streamed exec owned by connection `conn`: its answer and corrald's fds.
    fn stream_exec(
        &mut self,
        req: &Exec,
        streams: Streams,
        conn: u64,
    ) -> Result<(Vec<u8>, Vec<OwnedFd>), ErrorReply> {
        self.refuse_when_stopping()?;
        if self.streams.len() >= MAX_STREAMS {
            return Err(precondition(format!(
                "{MAX_STREAMS} streamed execs already run in this pod"
            )));
        }
        if self.reaper.has_id(&req.id) || self.execs.iter().any(|e| e.id == req.id) {
            return Err(ErrorReply::new(
                ErrorCode::AlreadyExists,
                format!("exec id {:?} is in use in this pod", req.id),
            ));
        }
        let container = self
            .containers
            .iter()
            .find(|c| c.id == req.container_id)
            .ok_or_else(|| not_found("container", &req.container_id))?;
        if !container.running() {
            return Err(precondition(format!(
                "container {} is not running",
                req.container_id
            )));
        }
        let started = stream::exec(req, streams, container)?;
        let pid = Pid::from_raw(started.reply.pid);
        // Tracked before the loop reaps again, so that its exit cannot be missed; one
        // that cannot run owes nobody an exit and leaves no record once reaped.
        self.reaper.track(&req.id, pid, None);
        if started.reply.exit_code.is_none() {
            self.streams.push(StreamExec {
                id: req.id.clone(),
                pid,
                conn,
                exited: false,
            });
        }
        Ok((encode_success(&started.reply), started.fds))
    }

    fn attach(&mut self, req: &Attach, conn: u64) -> Result<(Vec<u8>, Vec<OwnedFd>), ErrorReply> {
        self.refuse_when_stopping()?;
        if self.attaches.len() >= MAX_STREAMS {
            return Err(precondition(format!(
                "{MAX_STREAMS} attach sessions already open in this pod"
            )));
        }
        let (reply, fds) = self.container(&req.id)?.attach(conn, req.streams)?;
        self.attaches.push((conn, req.id.clone()));
        Ok((encode_success(&reply), fds))
    }

    /// Connection `conn` was answered the exit of `id`: a streamed exec it owns is done.
    fn told_exit(&mut self, conn: u64, id: &str) {
        if let Some(i) = self
            .streams
            .iter()
            .position(|e| e.id == id && e.conn == conn && e.exited)
        {
            let done = self.streams.remove(i);
            self.reaper.forget(&done.id, done.pid);
        }
    }

    /// Release the streams of connections that have closed: SIGKILL the process tree of
    /// each streamed exec still running (its record goes once it is reaped), forget those
    /// that ended, remove the attachers.
    fn release_closed(&mut self) {
        for index in 0..self.conns.len() {
            let conn = &mut self.conns[index];
            if !conn.streams || !(conn.eof || conn.dead) {
                continue;
            }
            conn.streams = false;
            // Nobody is left to answer: a deferred `wait` of its own is dropped.
            conn.waiting = false;
            let id = conn.id;
            self.waiters.retain(|(c, _)| *c != id);
            let mut i = 0;
            while i < self.streams.len() {
                let run = &self.streams[i];
                if run.conn != id {
                    i += 1;
                    continue;
                }
                if run.exited {
                    let done = self.streams.remove(i);
                    self.reaper.forget(&done.id, done.pid);
                } else {
                    log(format_args!(
                        "exec {} (pid {}): its connection closed; killing it",
                        run.id, run.pid
                    ));
                    super::exec::kill_tree(run.pid);
                    i += 1;
                }
            }
            let attached: Vec<String> = self
                .attaches
                .iter()
                .filter(|(c, _)| *c == id)
                .map(|(_, container)| container.clone())
                .collect();
            self.attaches.retain(|(c, _)| *c != id);
            for container in attached {
                if let Some(c) = self.containers.iter_mut().find(|c| c.id == container) {
                    c.detach(id);
                }
            }
        }
    }

    fn status(&self) -> StatusReply {
        let mut processes = self.reaper.statuses();
        for p in &mut processes {
            if let Some(c) = self
                .containers
                .iter()
                .find(|c| c.id == p.id && c.pid.as_raw() == p.pid)
            {
                p.started = c.started;
            }
        }
        StatusReply {
            pid: self.pid,
            pod_id: self.pod_id.clone(),
            pause_pid: self.pause_pid(),
            stopping: self.stop.is_some(),
            processes,
        }
    }

    fn container(&mut self, id: &str) -> Result<&mut Container, ErrorReply> {
        self.containers
            .iter_mut()
            .find(|c| c.id == id)
            .ok_or_else(|| not_found("container", id))
    }

    fn refuse_when_stopping(&self) -> Result<(), ErrorReply> {
        match self.stop {
            Some(_) => Err(precondition("the pod's shim is stopping".into())),
            None => Ok(()),
        }
    }

    fn create_container(&mut self, req: &CreateContainer) -> Result<CreateReply, ErrorReply> {
        self.refuse_when_stopping()?;
        if self.reaper.has_id(&req.id) || self.containers.iter().any(|c| c.id == req.id) {
            return Err(ErrorReply::new(
                ErrorCode::AlreadyExists,
                format!("container {:?} already exists in this pod", req.id),
            ));
        }
        let container = Container::create(req)?;
        // Tracked before the loop reaps again, so that its exit cannot be missed.
        self.reaper
            .track(&container.id, container.pid, Some(req.exit_file.clone()));
        let pid = container.pid.as_raw();
        self.containers.push(container);
        Ok(CreateReply { pid })
    }

    fn kill(&mut self, id: &str, signal: i32) -> Result<Empty, ErrorReply> {
        let signal = match signal {
            0 => None,
            n => Some(
                Signal::try_from(n).map_err(|e| ErrorReply::invalid("signal", e.to_string()))?,
            ),
        };
        if let Some(run) = self.execs.iter().find(|e| e.id == id) {
            return match kill(run.pid, signal) {
                Ok(()) | Err(nix::Error::ESRCH) => Ok(Empty {}),
                Err(e) => Err(ErrorReply::new(ErrorCode::Internal, format!("kill: {e}"))),
            };
        }
        self.container(id)?.kill(signal)?;
        Ok(Empty {})
    }

    fn exec(&mut self, req: &Exec, conn: u64) -> Result<(), ErrorReply> {
        self.refuse_when_stopping()?;
        if self.reaper.has_id(&req.id) || self.execs.iter().any(|e| e.id == req.id) {
            return Err(ErrorReply::new(
                ErrorCode::AlreadyExists,
                format!("exec id {:?} is in use in this pod", req.id),
            ));
        }
        let container = self
            .containers
            .iter()
            .find(|c| c.id == req.container_id)
            .ok_or_else(|| not_found("container", &req.container_id))?;
        if !container.running() {
            return Err(precondition(format!(
                "container {} is not running",
                req.container_id
            )));
        }
        let run = ExecRun::spawn(req, container, conn)?;
        self.reaper.track(&run.id, run.pid, None);
        self.execs.push(run);
        Ok(())
    }

    fn forget(&mut self, id: &str) -> Result<(), ErrorReply> {
        let Some(index) = self.containers.iter().position(|c| c.id == id) else {
            return Ok(());
        };
        if self.containers[index].exit.is_none() {
            return Err(precondition(format!("container {id} has not exited")));
        }
        let mut container = self.containers.remove(index);
        container.close(&mut self.scratch);
        self.reaper.forget(id, container.pid);
        Ok(())
    }

    /// SIGTERM every tracked process but the pause (see [`Stop::pause_termed`]).
    fn begin_stop(&mut self, grace: Duration, reply_to: Option<u64>) {
        let deadline = Instant::now() + grace;
        if let Some(stop) = &mut self.stop {
            stop.deadline = stop.deadline.min(deadline);
            stop.reply_to.extend(reply_to);
            return;
        }
        // Inits still waiting for their start have every signal but SIGKILL blocked.
        for c in &mut self.containers {
            c.abort();
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
        // Answers already due (waits for the exits the stop caused) go out as far as the
        // sockets take them now; the shutdown's own answer is waited for, briefly.
        for conn in &mut self.conns {
            conn.flush();
        }
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
    outputs: Vec<(Source, i16)>,
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

    /// Write what the socket takes; fds go on the write that starts at their answer.
    fn flush(&mut self) {
        while !self.wbuf.is_empty() && !self.dead {
            let offset = |at: u64| usize::try_from(at - self.sent).unwrap_or(usize::MAX);
            let (end, pass) = match self.fds.front() {
                Some((at, _)) if *at == self.sent => {
                    let end = self
                        .fds
                        .get(1)
                        .map_or(self.wbuf.len(), |(at, _)| offset(*at));
                    (end, true)
                }
                Some((at, _)) => (offset(*at), false),
                None => (self.wbuf.len(), false),
            };
            let chunk = &self.wbuf[..end.min(self.wbuf.len())];
            let written = match (pass, self.fds.front()) {
                (true, Some((_, fds))) => {
                    sys::send_with_fds(self.stream.as_fd(), chunk, &sys::borrow_all(fds))
                }
                _ => self.stream.write(chunk),
            };
            match written {
                Ok(n) => {
                    if pass {
                        // Sent with the answer's first byte: the shim's copies close here.
                        self.fds.pop_front();
                    }
                    self.wbuf.drain(..n);
                    self.sent += n as u64;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(stream: UnixStream) -> Conn {
        stream.set_nonblocking(true).unwrap();
        Conn {
            id: 1,
            stream,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            waiting: false,
            eof: false,
            dead: false,
            sent: 0,
            fds: VecDeque::new(),
            streams: false,
        }
    }

    #[test]
    fn fds_go_with_the_first_byte_of_their_answer() {
        let (ours, peer) = UnixStream::pair().unwrap();
        let mut conn = conn(ours);
        let (r, w) = nix::unistd::pipe().unwrap();
        conn.wbuf.extend(b"{\"first\":1}\n");
        let at = conn.sent + conn.wbuf.len() as u64;
        conn.fds.push_back((at, vec![r]));
        conn.wbuf.extend(b"{\"second\":2}\n");
        conn.wbuf.extend(b"{\"third\":3}\n");
        conn.flush();
        assert!(conn.wbuf.is_empty() && conn.fds.is_empty() && !conn.dead);
        assert_eq!(conn.sent, 37);

        // Read exactly the first answer: no fd may come with it.
        let mut fds = Vec::new();
        let mut buf = [0u8; 12];
        let n = sys::recv_with_fds(peer.as_fd(), &mut buf, &mut fds).unwrap();
        assert_eq!(&buf[..n], b"{\"first\":1}\n");
        assert!(fds.is_empty());
        let mut buf = [0u8; 64];
        let n = sys::recv_with_fds(peer.as_fd(), &mut buf, &mut fds).unwrap();
        assert!(buf[..n].starts_with(b"{\"second\":2}\n"), "{:?}", &buf[..n]);
        assert_eq!(fds.len(), 1);
        // The fd passed is the pipe's read end.
        nix::unistd::write(&w, b"through").unwrap();
        let mut got = [0u8; 16];
        let n = nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&fds[0]), &mut got).unwrap();
        assert_eq!(&got[..n], b"through");
    }

    #[test]
    fn two_answers_with_fds_are_sent_apart() {
        let (ours, peer) = UnixStream::pair().unwrap();
        let mut conn = conn(ours);
        for line in [&b"{\"a\":1}\n"[..], b"{\"b\":2}\n"] {
            let (r, _w) = nix::unistd::pipe().unwrap();
            let at = conn.sent + conn.wbuf.len() as u64;
            conn.fds.push_back((at, vec![r]));
            conn.wbuf.extend(line);
        }
        conn.flush();
        assert!(conn.wbuf.is_empty() && conn.fds.is_empty());
        let mut buf = [0u8; 64];
        let mut fds = Vec::new();
        let n = sys::recv_with_fds(peer.as_fd(), &mut buf, &mut fds).unwrap();
        assert_eq!(&buf[..n], b"{\"a\":1}\n");
        assert_eq!(fds.len(), 1);
        let n = sys::recv_with_fds(peer.as_fd(), &mut buf, &mut fds).unwrap();
        assert_eq!(&buf[..n], b"{\"b\":2}\n");
        assert_eq!(fds.len(), 2);
    }
}
