//! The process table: every process the shim started, and how each one ended.
//!
//! The shim is the pod's subreaper, so orphans anywhere below it land on it too; [`Reaper::reap`]
//! collects every exited child (tracked or not) so none stays a zombie, and records the
//! exits of tracked ones, in the exit file when one was registered. The caller completes
//! each exit first (a container's OOM flag, its log drained): the exit file is the last
//! word, written once and atomically, so whoever reads it sees the finished record.

use std::path::PathBuf;

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::exit_file;
use super::log;
use super::protocol::{ExitStatus, ProcessStatus};
use super::time::now_rfc3339_nano;

/// One process the shim started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    pub id: String,
    pub pid: Pid,
    pub exit_file: Option<PathBuf>,
    pub exit: Option<ExitStatus>,
}

#[derive(Debug, Default)]
pub struct Reaper {
    procs: Vec<Tracked>,
}

impl Reaper {
    /// Track `pid`. Call it before the main loop reaps again, so that no exit is missed.
    pub fn track(&mut self, id: &str, pid: Pid, exit_file: Option<PathBuf>) {
        self.procs.push(Tracked {
            id: id.to_string(),
            pid,
            exit_file,
            exit: None,
        });
    }

    pub fn is_live(&self, pid: Pid) -> bool {
        self.procs.iter().any(|p| p.pid == pid && p.exit.is_none())
    }

    /// Pids of the tracked processes that still run.
    pub fn live(&self) -> impl Iterator<Item = Pid> + '_ {
        self.procs
            .iter()
            .filter(|p| p.exit.is_none())
            .map(|p| p.pid)
    }

    /// Whether any entry, live or exited, has this id.
    pub fn has_id(&self, id: &str) -> bool {
        self.procs.iter().any(|p| p.id == id)
    }

    /// The latest entry with this id: None when there is none; its exit when it ended.
    pub fn exit_of(&self, id: &str) -> Option<Option<&ExitStatus>> {
        self.procs
            .iter()
            .rev()
            .find(|p| p.id == id)
            .map(|p| p.exit.as_ref())
    }

    /// Drop the exited entry for `id` and `pid` (a removed container, an answered exec);
    /// a live one stays.
    pub fn forget(&mut self, id: &str, pid: Pid) {
        self.procs
            .retain(|p| !(p.id == id && p.pid == pid && p.exit.is_some()));
    }

    pub fn statuses(&self) -> Vec<ProcessStatus> {
        self.procs
            .iter()
            .map(|p| ProcessStatus {
                id: p.id.clone(),
                pid: p.pid.as_raw(),
                exit_file: p.exit_file.clone(),
                exit: p.exit.clone(),
                started: true,
            })
            .collect()
    }

    /// Reap every exited child; return the tracked ones that ended now.
    pub fn reap(&mut self) -> Vec<Tracked> {
        self.reap_with(|_, _| {})
    }

    /// [`Reaper::reap`], letting `complete` finish each tracked exit before it is
    /// recorded and its exit file written.
    pub fn reap_with(
        &mut self,
        mut complete: impl FnMut(&Tracked, &mut ExitStatus),
    ) -> Vec<Tracked> {
        let mut ended = Vec::new();
        loop {
            let status = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(nix::Error::ECHILD) => break,
                Err(nix::Error::EINTR) => continue,
                Err(e) => {
                    log(format_args!("waitpid: {e}"));
                    break;
                }
                Ok(status) => status,
            };
            let Some((pid, mut exit)) = exit_status(status) else {
                continue;
            };
            if let Some(p) = self
                .procs
                .iter_mut()
                .find(|p| p.pid == pid && p.exit.is_none())
            {
                complete(p, &mut exit);
                if let Some(path) = &p.exit_file {
                    if let Err(e) = exit_file::write(path, &exit) {
                        log(format_args!("writing exit file {}: {e}", path.display()));
                    }
                }
                p.exit = Some(exit);
                ended.push(p.clone());
            }
        }
        ended
    }
}

/// The exit recorded for a wait status; None for a stop or continue.
pub fn exit_status(status: WaitStatus) -> Option<(Pid, ExitStatus)> {
    let (pid, exit_code, signal) = match status {
        WaitStatus::Exited(pid, code) => (pid, code, None),
        WaitStatus::Signaled(pid, sig, _) => (pid, 128 + sig as i32, Some(sig as i32)),
        _ => return None,
    };
    Some((
        pid,
        ExitStatus {
            pid: pid.as_raw(),
            exit_code,
            signal,
            finished_at: now_rfc3339_nano(),
            oom_killed: false,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;

    #[test]
    fn wait_statuses_become_exits() {
        let pid = Pid::from_raw(7);
        let (p, e) = exit_status(WaitStatus::Exited(pid, 3)).unwrap();
        assert_eq!((p, e.exit_code, e.signal), (pid, 3, None));
        let (_, e) = exit_status(WaitStatus::Signaled(pid, Signal::SIGKILL, false)).unwrap();
        assert_eq!((e.exit_code, e.signal), (137, Some(9)));
        assert!(e.finished_at.ends_with('Z'));
        assert!(exit_status(WaitStatus::Stopped(pid, Signal::SIGSTOP)).is_none());
        assert!(exit_status(WaitStatus::StillAlive).is_none());
    }
}
