//! The pause: PID 1 of the pod's own PID namespace, when the pod shares one.
//!
//! ```text
//! shim ──fork──▶ A: setns(user, net, ipc, uts), unshare(CLONE_NEWPID) ──fork──▶ B (PID 1), A exits
//! ```
//!
//! B is a fork of the shim, not an exec, so it costs only the few pages it touches and
//! the page tables it shares; it renames itself `corral-pause`, blocks every signal, and
//! waits for SIGCHLD (reap everything) or SIGTERM/SIGINT (exit 0, and the kernel kills
//! what is left in the namespace). A's exit reparents B to the shim, the subreaper. The
//! namespace is pinned by a bind mount of `/proc/<B>/ns/pid` on `<dir>/pidns`, which
//! [`unpin`] releases.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::prctl;
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use super::args::Args;
use super::daemon::{close_fds_except, write_all};
use super::protocol::PIDNS_FILE;
use super::sys::exit_now;

/// A running pause and the file that pins its PID namespace.
#[derive(Debug)]
pub struct Pause {
    /// Host pid.
    pub pid: Pid,
    pub pin: PathBuf,
}

impl Pause {
    /// Kill the pause, reap it and unpin its namespace: the undo of [`start`], for a
    /// start-up that fails after it.
    pub fn kill(&self) {
        let _ = kill(self.pid, Signal::SIGKILL);
        let _ = waitpid(self.pid, None);
        let _ = unpin(&self.pin);
    }
}

/// Start the pause in the pod's namespaces and pin its PID namespace under `dir`.
pub fn start(dir: &Path, args: &Args) -> Result<Pause, String> {
    let mut joins: Vec<(File, CloneFlags, &str)> = Vec::new();
    // The user namespace first: the others are its, and so is the PID namespace made
    // after joining it, which the containers' /proc mounts need.
    for (path, flag, name) in [
        (&args.userns, CloneFlags::CLONE_NEWUSER, "userns"),
        (&args.netns, CloneFlags::CLONE_NEWNET, "netns"),
        (&args.ipcns, CloneFlags::CLONE_NEWIPC, "ipcns"),
        (&args.utsns, CloneFlags::CLONE_NEWUTS, "utsns"),
    ] {
        if let Some(path) = path {
            let file = File::open(path).map_err(|e| format!("{name} {}: {e}", path.display()))?;
            joins.push((file, flag, name));
        }
    }
    let pin = dir.join(PIDNS_FILE);
    // A pin left by a shim that died: nobody else may own this file.
    unpin(&pin).map_err(|e| format!("stale {}: {e}", pin.display()))?;

    let (report_r, report_w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: the shim is single-threaded, so the child is a complete copy that may
    // allocate and run any code; it never returns into the caller (`starter` diverges).
    let starter_pid = match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop(report_r);
            starter(&joins, report_w)
        }
        ForkResult::Parent { child } => child,
    };
    drop(report_w);
    drop(joins);
    let starter_status = loop {
        match waitpid(starter_pid, None) {
            Err(nix::Error::EINTR) => continue,
            other => break other,
        }
    };
    let mut report = String::new();
    let _ = File::from(report_r).read_to_string(&mut report);
    let pid = match report.trim().split_once(' ') {
        Some(("pid", pid)) => pid
            .parse::<i32>()
            .map(Pid::from_raw)
            .map_err(|_| format!("bad pause report {report:?}"))?,
        Some(("error", why)) => return Err(why.to_string()),
        _ => return Err(format!("the pause starter ended with {starter_status:?}")),
    };
    let pause = Pause { pid, pin };
    if let Err(e) = pin_pidns(pid, &pause.pin) {
        pause.kill();
        return Err(e);
    }
    Ok(pause)
}

/// A: join the pod's namespaces, make the PID namespace, fork its init, report, exit.
fn starter(joins: &[(File, CloneFlags, &str)], report: OwnedFd) -> ! {
    let result = (|| {
        for (file, flag, name) in joins {
            setns(file, *flag).map_err(|e| format!("joining the pod's {name}: {e}"))?;
            if *flag == CloneFlags::CLONE_NEWUSER {
                // Not the host's root inside (unmapped there): the namespace's own.
                super::init::become_userns_root()
                    .map_err(|e| format!("becoming root of the pod's userns: {e}"))?;
            }
        }
        unshare(CloneFlags::CLONE_NEWPID).map_err(|e| format!("unshare(CLONE_NEWPID): {e}"))?;
        // SAFETY: A is single-threaded (a fork of the single-threaded shim); B never
        // returns (`pause_main` diverges).
        match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
            ForkResult::Child => pause_main(),
            ForkResult::Parent { child } => Ok::<Pid, String>(child),
        }
    })();
    let (line, code) = match result {
        Ok(pid) => (format!("pid {pid}\n"), 0),
        Err(e) => (format!("error {e}\n"), 1),
    };
    let _ = write_all(&report, line.as_bytes());
    exit_now(code)
}

/// B: PID 1 of the pod's PID namespace. Reaps, and exits 0 on SIGTERM or SIGINT.
fn pause_main() -> ! {
    let _ = prctl::set_name(c"corral-pause");
    close_fds_except(&[]);
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::all()), None);
    let mut waited = SigSet::empty();
    for sig in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
        waited.add(sig);
    }
    loop {
        match waited.wait() {
            Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) => exit_now(0),
            Ok(Signal::SIGCHLD) => {
                while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                    if status == WaitStatus::StillAlive {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
}

fn pin_pidns(pid: Pid, target: &Path) -> Result<(), String> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(target)
        .map_err(|e| format!("creating {}: {e}", target.display()))?;
    let source = format!("/proc/{pid}/ns/pid");
    mount(
        Some(source.as_str()),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| {
        let _ = fs::remove_file(target);
        format!("bind-mounting {source} on {}: {e}", target.display())
    })
}

/// Unmount every layer of a pinned namespace file and remove it. Idempotent.
pub fn unpin(target: &Path) -> io::Result<()> {
    for _ in 0..8 {
        if !is_nsfs(target) {
            break;
        }
        match umount2(target, MntFlags::MNT_DETACH) {
            Ok(()) => {}
            Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => break,
            Err(e) => return Err(e.into()),
        }
    }
    match fs::remove_file(target) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// True when `path` is (the root of) a mounted namespace file.
pub fn is_nsfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
        .unwrap_or(false)
}
