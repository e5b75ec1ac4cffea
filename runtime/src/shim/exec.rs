//! ExecSync: a process run inside a running container, its output captured in memory.
//!
//! stdout and stderr are pipes (or, for `process.terminal`, one pty whose output is all
//! stdout) read by the server's poll loop into buffers capped at `max_output` each;
//! output beyond the cap is read and dropped, so the process never blocks on a full pipe.
//! The answer is given when the process exits (after what its pipes hold now has been
//! read) or, with a timeout, once the timeout has killed it and every descendant.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use base64::Engine;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::container::{dev_null, init_error, pipe, read_some, tty_stdio, Container, ReadResult};
use super::cri_log::Stream;
use super::init::{self, ExecOptions, Stdio};
use super::protocol::{
    encode_success, ErrorCode, ErrorReply, Exec, ExecReply, ExitStatus, MAX_EXEC_OUTPUT,
};
use super::pty;

/// How long a timed-out exec may take to be reaped after its SIGKILL before the answer
/// goes out regardless (a process stuck in the kernel).
pub const KILL_WAIT: Duration = Duration::from_secs(1);
/// Reads per stream when draining at the exit (see `container::DRAIN_READS`).
const DRAIN_READS: usize = 32;

pub struct ExecRun {
    pub id: String,
    pub container_id: String,
    pub pid: Pid,
    /// The connection waiting for the answer.
    pub reply_to: u64,
    captures: Vec<Capture>,
    deadline: Option<Instant>,
    /// When the timeout killed it.
    killed_at: Option<Instant>,
}

/// One captured stream.
struct Capture {
    /// None once it reached its end.
    file: Option<File>,
    pty: bool,
    stream: Stream,
    data: Vec<u8>,
    cap: usize,
}

impl ExecRun {
    /// Start `req` in `container` (which must be running). Blocks the shim until the
    /// process has exec'd (or failed to).
    pub fn spawn(req: &Exec, container: &Container, reply_to: u64) -> Result<ExecRun, ErrorReply> {
        if req.id.is_empty() {
            return Err(ErrorReply::invalid("id", "empty exec id"));
        }
        if req.process.args().as_ref().is_none_or(|a| a.is_empty()) {
            return Err(ErrorReply::invalid("process.args", "no command to run"));
        }
        // 0 (unset) means kubelet's cap; more than it would not fit an answer line.
        let cap = match req.max_output {
            0 => MAX_EXEC_OUTPUT,
            n => n.min(MAX_EXEC_OUTPUT),
        };
        let tty = req.process.terminal().unwrap_or(false);
        let internal = |what: &str, e: std::io::Error| {
            ErrorReply::new(ErrorCode::Internal, format!("{what}: {e}"))
        };
        let capture = |fd: std::os::fd::OwnedFd, stream, pty| -> Result<Capture, ErrorReply> {
            pty::set_nonblocking(&fd).map_err(|e| internal("output", e))?;
            Ok(Capture {
                file: Some(File::from(fd)),
                pty,
                stream,
                data: Vec::new(),
                cap,
            })
        };
        let (stdio, captures) = if tty {
            let pair =
                pty::open_for(container.pid.as_raw()).map_err(|e| internal("opening a pty", e))?;
            let master = capture(pair.master, Stream::Stdout, true)?;
            (tty_stdio(pair.slave)?, vec![master])
        } else {
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            let stdio = Stdio {
                stdin: dev_null()?,
                stdout: out_w,
                stderr: err_w,
            };
            let captures = vec![
                capture(out_r, Stream::Stdout, false)?,
                capture(err_r, Stream::Stderr, false)?,
            ];
            (stdio, captures)
        };
        // A command that cannot run writes why to its stderr, captured like any output.
        let pid = spawn_in(container, &req.process, stdio, tty)?.pid;
        Ok(ExecRun {
            id: req.id.clone(),
            container_id: req.container_id.clone(),
            pid,
            reply_to,
            captures,
            deadline: (req.timeout_ms > 0)
                .then(|| Instant::now() + Duration::from_millis(req.timeout_ms)),
            killed_at: None,
        })
    }

    /// The fds to poll, with their index for [`ExecRun::read`].
    pub fn open_outputs(&self) -> impl Iterator<Item = (usize, BorrowedFd<'_>)> {
        self.captures
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.file.as_ref().map(|f| (i, f.as_fd())))
    }

    /// One read of capture `index`, through the shared `buf`.
    pub fn read(&mut self, index: usize, buf: &mut [u8]) -> ReadResult {
        let Some(capture) = self.captures.get_mut(index) else {
            return ReadResult::End;
        };
        let Some(file) = &mut capture.file else {
            return ReadResult::End;
        };
        let result = read_some(file, capture.pty, buf);
        match result {
            ReadResult::Data(n) => {
                let room = capture.cap.saturating_sub(capture.data.len());
                capture.data.extend_from_slice(&buf[..n.min(room)]);
            }
            ReadResult::End => capture.file = None,
            ReadResult::Again => {}
        }
        result
    }

    /// Read what the pipes hold now; descendants that keep them open are not waited for.
    pub fn drain(&mut self, buf: &mut [u8]) {
        for index in 0..self.captures.len() {
            for _ in 0..DRAIN_READS {
                if !matches!(self.read(index, buf), ReadResult::Data(_)) {
                    break;
                }
            }
        }
    }

    /// When the loop must look at this exec again: its deadline, or the end of the wait
    /// after the kill.
    pub fn next_timer(&self) -> Option<Instant> {
        match self.killed_at {
            Some(at) => Some(at + KILL_WAIT),
            None => self.deadline,
        }
    }

    pub fn timed_out(&self) -> bool {
        self.killed_at.is_some()
    }

    /// At the deadline: SIGKILL the process and its descendants. True when the answer
    /// should go out now without waiting any longer for the exit.
    pub fn on_timer(&mut self, now: Instant) -> bool {
        match self.killed_at {
            None if self.deadline.is_some_and(|d| now >= d) => {
                kill_tree(self.pid);
                self.killed_at = Some(now);
                false
            }
            Some(at) => now >= at + KILL_WAIT,
            None => false,
        }
    }

    /// The answer line; `exit` None when the process could not be reaped in time.
    pub fn answer(&mut self, exit: Option<&ExitStatus>) -> Vec<u8> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut output = |stream| {
            self.captures
                .iter_mut()
                .filter(|c| c.stream == stream)
                .map(|c| b64.encode(std::mem::take(&mut c.data)))
                .next()
                .unwrap_or_default()
        };
        let (stdout, stderr) = (output(Stream::Stdout), output(Stream::Stderr));
        encode_success(&ExecReply {
            exit_code: exit.map_or(-1, |e| e.exit_code),
            stdout,
            stderr,
            timed_out: self.timed_out(),
        })
    }
}

/// Start `process` in the running `container` with `stdio` (init::exec, so with the
/// container's namespaces, cgroup, user, capabilities, no_new_privs and seccomp).
pub fn spawn_in(
    container: &Container,
    process: &oci_spec::runtime::Process,
    stdio: Stdio,
    tty: bool,
) -> Result<init::Spawned, ErrorReply> {
    init::exec(ExecOptions {
        container_pid: container.pid,
        spec: &container.spec,
        process,
        stdio,
        tty,
        cgroup_procs: &container.cgroup_procs,
    })
    .map_err(|e| {
        // The init may exit between the running check and the opening of its
        // namespaces, before the reaper has seen it: that is a container that is not
        // running, as kubelet expects to be told, not an internal error (found by the
        // CRI fuzz test).
        if alive(container.pid) {
            init_error(e)
        } else {
            ErrorReply::new(
                ErrorCode::FailedPrecondition,
                format!("container {} is not running: {e}", container.id),
            )
        }
    })
}

/// SIGKILL `root` and every process below it (and its process group if it leads one).
/// Each one found is stopped first, and the tree walked again, so that a process forking
/// meanwhile leaves no child behind; what was orphaned before (and reparented away) is not
/// found.
pub fn kill_tree(root: Pid) {
    let mut victims = vec![root];
    let _ = kill(root, Signal::SIGSTOP);
    for _ in 0..8 {
        let table = process_table();
        let mut grew = false;
        let mut at = 0;
        while at < victims.len() {
            let parent = victims[at].as_raw();
            for (pid, ppid, _) in &table {
                let pid = Pid::from_raw(*pid);
                if *ppid == parent && !victims.contains(&pid) {
                    let _ = kill(pid, Signal::SIGSTOP);
                    victims.push(pid);
                    grew = true;
                }
            }
            at += 1;
        }
        if !grew {
            break;
        }
    }
    let leads_group = process_table()
        .iter()
        .any(|(pid, _, pgrp)| *pid == root.as_raw() && *pgrp == root.as_raw());
    if leads_group {
        let _ = kill(Pid::from_raw(-root.as_raw()), Signal::SIGKILL);
    }
    for pid in victims {
        let _ = kill(pid, Signal::SIGKILL);
    }
}

/// (pid, ppid, pgrp) of every process in /proc.
fn process_table() -> Vec<(i32, i32, i32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let pid: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The comm field may hold spaces and parentheses: parse after its last `)`.
        let mut rest = stat.rsplit_once(')')?.1.split_ascii_whitespace();
        let _state = rest.next()?;
        let ppid = rest.next()?.parse().ok()?;
        let pgrp = rest.next()?.parse().ok()?;
        Some((pid, ppid, pgrp))
    })
    .collect()
}

/// Whether `pid` is a live process: not gone, not a zombie, and not part way through its
/// exit (its namespaces are released before it becomes a zombie, and an exec joins them).
fn alive(pid: Pid) -> bool {
    if std::fs::metadata(format!("/proc/{pid}/ns/mnt")).is_err() {
        return false;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) S ...`: comm may hold anything, the state follows its last `)`.
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].trim_start().chars().next());
    !matches!(state, None | Some('Z' | 'X' | 'x'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn alive_sees_exited_and_zombie_processes() {
        assert!(alive(nix::unistd::getpid()));
        let mut child = Command::new("true").spawn().unwrap();
        let pid = Pid::from_raw(child.id() as i32);
        // Unreaped, it stays a zombie: what the shim sees before its reaper runs.
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(pid) {
            assert!(Instant::now() < deadline, "{pid} never exited");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            std::fs::metadata(format!("/proc/{pid}")).is_ok(),
            "reaped too early"
        );
        child.wait().unwrap();
        assert!(!alive(pid));
    }

    #[test]
    fn kill_tree_takes_the_grandchildren() {
        // sh → sh → sleep, the inner ones in the background of the outer.
        let mut child = Command::new("sh")
            .args(["-c", "sh -c 'sleep 100 & sleep 100; :' & sleep 100; :"])
            .spawn()
            .unwrap();
        let root = Pid::from_raw(child.id() as i32);
        let below = |table: &[(i32, i32, i32)]| {
            let mut found = vec![root.as_raw()];
            let mut at = 0;
            while at < found.len() {
                let parent = found[at];
                found.extend(table.iter().filter(|p| p.1 == parent).map(|p| p.0));
                at += 1;
            }
            found
        };
        let until = Instant::now() + Duration::from_secs(5);
        let tree = loop {
            let tree = below(&process_table());
            if tree.len() >= 5 || Instant::now() > until {
                break tree;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(tree.len() >= 5, "{tree:?}");
        kill_tree(root);
        child.wait().unwrap();
        let until = Instant::now() + Duration::from_secs(5);
        for pid in &tree[1..] {
            // Orphans go to init (or a subreaper), which reaps them; gone or a zombie.
            while Instant::now() < until {
                let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().to_string()));
                match state {
                    None => break,
                    Some(s) if s.starts_with('Z') || s.starts_with('X') => break,
                    Some(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            assert!(Instant::now() < until, "pid {pid} survived");
        }
    }
}
