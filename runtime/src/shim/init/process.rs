//! The process side of an init or an exec: signals, stdio, rlimits, working dir, user,
//! capabilities, no_new_privs, the executable's look-up and execve.
//!
//! [`Plan::new`] checks and converts the spec in the shim, before any fork; everything
//! else runs in B, after the fork.

use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg};
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
use nix::sys::stat::{umask, Mode};
use nix::unistd::{chdir, chown, dup2, setgroups, setresgid, setresuid, setsid, Gid, Uid};
use oci_spec::runtime::{PosixRlimitType, Process};

use super::caps;
use super::{InitError, Stdio};
use crate::shim::daemon::write_all;
use crate::shim::sys::exit_now;

/// PATH for the look-up when the process's env has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The spec's process, checked and converted for use after the fork.
#[derive(Debug)]
pub struct Plan {
    pub args: Vec<CString>,
    env: Vec<CString>,
    /// PATH from `env`, for the look-up of `args[0]`.
    path: String,
    cwd: PathBuf,
    uid: Uid,
    gid: Gid,
    groups: Vec<Gid>,
    umask: Mode,
    /// None: the capabilities are left as they are (the spec has none).
    caps: Option<caps::Sets>,
    last_cap: u32,
    no_new_privs: bool,
    rlimits: Vec<(Resource, u64, u64)>,
    pub oom_score_adj: Option<i32>,
    pub tty: bool,
}

impl Plan {
    pub fn new(process: &Process, tty: bool) -> Result<Self, InitError> {
        let args = process.args().as_deref().unwrap_or_default();
        if args.is_empty() || args[0].is_empty() {
            return Err(InitError::invalid("process.args", "no command to run"));
        }
        let args = c_strings(args, "process.args")?;
        let env = process.env().as_deref().unwrap_or_default();
        let path = env
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH)
            .to_string();
        let env = c_strings(env, "process.env")?;
        let cwd = process.cwd().clone();
        if !cwd.is_absolute() {
            return Err(InitError::invalid(
                "process.cwd",
                format!("{}: not an absolute path", cwd.display()),
            ));
        }
        let user = process.user();
        let rlimits = process
            .rlimits()
            .iter()
            .flatten()
            .map(|r| (resource(r.typ()), r.soft(), r.hard()))
            .collect();
        let last_cap = caps::last_cap();
        Ok(Plan {
            args,
            env,
            path,
            cwd,
            uid: Uid::from_raw(user.uid()),
            gid: Gid::from_raw(user.gid()),
            groups: user
                .additional_gids()
                .iter()
                .flatten()
                .map(|g| Gid::from_raw(*g))
                .collect(),
            umask: Mode::from_bits_truncate(user.umask().unwrap_or(0o022) as libc::mode_t),
            caps: process
                .capabilities()
                .as_ref()
                .map(|c| caps::Sets::new(c, last_cap)),
            last_cap,
            no_new_privs: process.no_new_privileges().unwrap_or(false),
            rlimits,
            oom_score_adj: process.oom_score_adj(),
            tty,
        })
    }

    /// Make the working dir if it is missing, each new dir owned by the process's user
    /// (after pivot_root, before the root may turn read-only).
    pub fn ensure_cwd(&self) -> Result<(), InitError> {
        let mut made = PathBuf::from("/");
        for part in self.cwd.components().skip(1) {
            made.push(part);
            match std::fs::symlink_metadata(&made) {
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(InitError::step(format_args!("stat {}", made.display()), e)),
            }
            // A dangling symlink is NotFound too; then create_dir fails, naming it.
            std::fs::create_dir(&made)
                .and_then(|()| {
                    std::fs::set_permissions(&made, std::fs::Permissions::from_mode(0o755))
                })
                .map_err(|e| {
                    InitError::step(
                        format_args!("creating the working dir {}", made.display()),
                        e,
                    )
                })?;
            chown(&made, Some(self.uid), Some(self.gid))
                .map_err(|e| InitError::step(format_args!("chown {}", made.display()), e))?;
        }
        Ok(())
    }

    /// rlimits, then the user: groups, gid, uid with the capabilities kept across the uid
    /// change, then the spec's capability sets, the working dir, no_new_privs.
    pub fn become_user(&self) -> Result<(), InitError> {
        for (resource, soft, hard) in &self.rlimits {
            setrlimit(*resource, *soft, *hard).map_err(|e| {
                InitError::step(format_args!("setrlimit({resource:?}, {soft}, {hard})"), e)
            })?;
        }
        // Root may not enter a dir only its owner can (root_squash NFS): try again as the
        // user.
        let early_cwd = chdir(&self.cwd);
        if let Some(sets) = &self.caps {
            caps::drop_bounding(sets.bounding, self.last_cap)
                .map_err(|e| InitError::step("dropping from the bounding set", e))?;
        }
        nix::sys::prctl::set_keepcaps(true)
            .map_err(|e| InitError::step("prctl(PR_SET_KEEPCAPS)", e))?;
        setgroups(&self.groups)
            .map_err(|e| InitError::step(format_args!("setgroups({:?})", self.groups), e))?;
        setresgid(self.gid, self.gid, self.gid)
            .map_err(|e| InitError::step(format_args!("setgid({})", self.gid), e))?;
        setresuid(self.uid, self.uid, self.uid)
            .map_err(|e| InitError::step(format_args!("setuid({})", self.uid), e))?;
        nix::sys::prctl::set_keepcaps(false)
            .map_err(|e| InitError::step("prctl(PR_SET_KEEPCAPS)", e))?;
        if let Some(sets) = &self.caps {
            // What this process does not hold it cannot grant (a host without
            // CAP_SYS_RESOURCE, say): those are left out rather than failing the container.
            let (_, held, _) = caps::get().map_err(|e| InitError::step("capget", e))?;
            let permitted = sets.permitted & held;
            let inheritable = sets.inheritable & held;
            caps::set(sets.effective & permitted, permitted, inheritable)
                .map_err(|e| InitError::step("capset", e))?;
            caps::set_ambient(sets.ambient & permitted & inheritable, self.last_cap)
                .map_err(|e| InitError::step("raising the ambient capabilities", e))?;
        }
        if early_cwd.is_err() {
            chdir(&self.cwd).map_err(|e| {
                InitError::step(
                    format_args!("chdir to the working dir {}", self.cwd.display()),
                    e,
                )
            })?;
        }
        if self.no_new_privs {
            nix::sys::prctl::set_no_new_privs()
                .map_err(|e| InitError::step("prctl(PR_SET_NO_NEW_PRIVS)", e))?;
        }
        Ok(())
    }

    /// An exec starts at the container's root: the mnt namespace join left it there or at
    /// the shim's working dir.
    pub fn enter_root(&self) -> Result<(), InitError> {
        chdir("/").map_err(|e| InitError::step("chdir /", e))
    }

    /// Whether [`become_user`](Self::become_user) sets no_new_privs (and so when the
    /// seccomp filter may be loaded).
    pub fn no_new_privs(&self) -> bool {
        self.no_new_privs
    }

    pub fn set_umask(&self) {
        umask(self.umask);
    }

    /// `args[0]` as exec.LookPath finds it: a name with a '/' as is, else the first
    /// executable regular file of that name in the dirs of PATH.
    pub fn look_path(&self) -> Result<CString, LookError> {
        let name = self.args[0].as_bytes();
        let shown = String::from_utf8_lossy(name);
        if name.contains(&b'/') {
            return executable(Path::new(OsStr::from_bytes(name)))
                .map(|()| self.args[0].clone())
                .map_err(|(code, why)| LookError {
                    code,
                    message: format!("exec: {shown:?}: {why}"),
                });
        }
        let mut denied = None;
        for dir in self.path.split(':') {
            // An empty entry is the working dir, as in every shell.
            let dir = if dir.is_empty() { "." } else { dir };
            let candidate = Path::new(dir).join(OsStr::from_bytes(name));
            match executable(&candidate) {
                Ok(()) => {
                    return CString::new(candidate.into_os_string().into_vec()).map_err(|_| {
                        LookError {
                            code: 127,
                            message: format!("exec: {shown:?}: bad PATH"),
                        }
                    })
                }
                Err((126, why)) => denied = denied.or(Some(why)),
                Err(_) => {}
            }
        }
        Err(match denied {
            Some(why) => LookError {
                code: 126,
                message: format!("exec: {shown:?}: {why}"),
            },
            None => LookError {
                code: 127,
                message: format!("exec: {shown:?}: executable file not found in $PATH"),
            },
        })
    }

    /// execve with exactly the spec's args and env; returns only on failure.
    pub fn execve(&self, exe: &CStr) -> nix::Error {
        match nix::unistd::execve(exe, &self.args, &self.env) {
            Err(e) => e,
            Ok(never) => match never {},
        }
    }
}

/// Why `args[0]` cannot run, and the exit code a shell gives that: 127 (missing) or 126.
#[derive(Debug)]
pub struct LookError {
    pub code: i32,
    pub message: String,
}

/// Ok when `path` is a regular file this process may execute; else (exit code, reason).
fn executable(path: &Path) -> Result<(), (i32, String)> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err((127, "no such file or directory".to_string()))
        }
        Err(e) => return Err((126, e.to_string())),
    };
    if meta.is_dir() {
        return Err((126, "is a directory".to_string()));
    }
    if !meta.is_file() || meta.mode() & 0o111 == 0 {
        return Err((126, "permission denied".to_string()));
    }
    nix::unistd::access(path, nix::unistd::AccessFlags::X_OK)
        .map_err(|_| (126, "permission denied".to_string()))
}

fn c_strings(strings: &[String], field: &str) -> Result<Vec<CString>, InitError> {
    strings
        .iter()
        .enumerate()
        .map(|(i, s)| {
            CString::new(s.as_bytes())
                .map_err(|_| InitError::invalid(format!("{field}[{i}]"), "contains a NUL byte"))
        })
        .collect()
}

fn resource(typ: PosixRlimitType) -> Resource {
    use PosixRlimitType::*;
    match typ {
        RlimitCpu => Resource::RLIMIT_CPU,
        RlimitFsize => Resource::RLIMIT_FSIZE,
        RlimitData => Resource::RLIMIT_DATA,
        RlimitStack => Resource::RLIMIT_STACK,
        RlimitCore => Resource::RLIMIT_CORE,
        RlimitRss => Resource::RLIMIT_RSS,
        RlimitNproc => Resource::RLIMIT_NPROC,
        RlimitNofile => Resource::RLIMIT_NOFILE,
        RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        RlimitAs => Resource::RLIMIT_AS,
        RlimitLocks => Resource::RLIMIT_LOCKS,
        RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        RlimitNice => Resource::RLIMIT_NICE,
        RlimitRtprio => Resource::RLIMIT_RTPRIO,
        RlimitRttime => Resource::RLIMIT_RTTIME,
    }
}

/// Undo what the shim set for itself: its blocked signals (SIGCHLD, SIGTERM, SIGINT) and
/// every disposition (SIGPIPE is ignored there, and an ignored signal stays ignored across
/// execve).
pub fn reset_signals() {
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    for signal in 1..=libc::SIGRTMAX() {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL installs no handler, so no code of ours can run in a signal
        // context; a number the kernel (or glibc, for its own two) refuses is EINVAL,
        // ignored.
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
        }
    }
}

/// The process's oom_score_adj, 0 by default (the shim's is -998). Lowering it needs
/// CAP_SYS_RESOURCE, which the host may deny; then the value is left as it is.
pub fn set_oom_score_adj(value: Option<i32>) -> Result<(), InitError> {
    let value = value.unwrap_or(0);
    match std::fs::write("/proc/self/oom_score_adj", value.to_string()) {
        Err(e) if !matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) => Err(
            InitError::step(format_args!("setting oom_score_adj to {value}"), e),
        ),
        _ => Ok(()),
    }
}

/// Point 0, 1 and 2 at the process's stdio, start a new session and, for a tty, make
/// stdin the controlling terminal.
pub fn setup_stdio(stdio: Stdio, tty: bool) -> Result<(), InitError> {
    // Copies above 2 first: an original may itself be 0, 1 or 2.
    let high = |fd: &OwnedFd| {
        fcntl(fd.as_raw_fd(), FcntlArg::F_DUPFD_CLOEXEC(3)).map_err(|e| InitError::step("dup", e))
    };
    let copies: [RawFd; 3] = [
        high(&stdio.stdin)?,
        high(&stdio.stdout)?,
        high(&stdio.stderr)?,
    ];
    drop(stdio);
    for (target, copy) in copies.into_iter().enumerate() {
        dup2(copy, target as RawFd)
            .map_err(|e| InitError::step(format_args!("dup2 onto {target}"), e))?;
        let _ = nix::unistd::close(copy);
    }
    setsid().map_err(|e| InitError::step("setsid", e))?;
    if tty {
        // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal a terminal that is
        // another session's), no pointer.
        let rc = unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) };
        if rc != 0 {
            return Err(InitError::step("ioctl(TIOCSCTTY)", nix::Error::last()));
        }
    }
    Ok(())
}

/// A shell's answer to a command it cannot run: the reason on stderr, then exit `code`.
pub fn fail_as_shell(message: &str, code: i32) -> ! {
    let _ = write_all(std::io::stderr(), format!("{message}\n").as_bytes());
    exit_now(code)
}
