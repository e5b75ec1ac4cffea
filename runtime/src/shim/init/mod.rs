//! The container executor: each container's init and each exec's process, made by
//! `corral-shim` (DESIGN.md, Containers). No runc: the shim forks, and its children do the
//! namespace joins, the mounts and the credential changes themselves.
//!
//! ```text
//! shim ──fork──▶ A: cgroup.procs, setns/unshare ──clone(CLONE_PARENT)──▶ B; A exits
//!   ◀── "pid <B>" ──── A   (report pipe)
//!   ◀── "ready" ────── B   (sync pipe)    after mounts, pivot_root, user, capabilities
//!   ─── one byte ────▶ B   (start pipe)   then B ──execve──▶ the user's process
//! ```
//!
//! A PID namespace change (unshare, or setns into the pod's) applies only to the children
//! of the process that makes it, hence A. `CLONE_PARENT` makes B a child of the shim at
//! once: the shim reaps B like any child, and reaps A by pid before this module returns.
//! B sets up the container ([`rootfs`], [`process`]) and reports one line on the sync
//! pipe: `ready`, or the step that failed. On the start byte it execs; the sync pipe is
//! close-on-exec, so its end of file tells the shim that execve succeeded, and an `error`
//! line that it did not (B then exits 127). A start pipe closed without a byte (an abort,
//! a dropped [`Created`], or the shim died) makes B exit 1.
//!
//! An exec is the same with the container's namespaces (from `/proc/<init>/ns`) and no
//! start pipe: B execs as soon as it is set up.
//!
//! The shim is single-threaded, so A and B are complete copies of it that may allocate;
//! both end with `_exit` and never return into the shim's code, even when they panic.

mod apparmor;
mod caps;
mod idmap;
mod process;
mod rootfs;
mod seccomp;
mod syscalls;

use std::fmt::Display;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::daemon::{close_fds_except, write_all};
use super::sys::{self, exit_now};
use crate::shim::protocol::RootfsMount;

/// How long [`create`], [`Created::start`] and [`exec`] wait for the children.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The three stdio fds the process gets (for a tty: the pty slave three times).
pub struct Stdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

impl Stdio {
    fn raw(&self) -> [RawFd; 3] {
        [
            self.stdin.as_raw_fd(),
            self.stdout.as_raw_fd(),
            self.stderr.as_raw_fd(),
        ]
    }
}

/// What [`create`] needs.
pub struct CreateOptions<'a> {
    /// Holds `config.json` (the OCI runtime spec) and the (empty or missing) dir `rootfs`.
    pub bundle: &'a Path,
    /// The overlay mounted on `<bundle>/rootfs` inside the container's mount namespace.
    pub rootfs: &'a RootfsMount,
    pub stdio: Stdio,
    /// Make stdin the controlling terminal (after setsid).
    pub tty: bool,
    /// `cgroup.procs` files the init joins before any container setup.
    pub cgroup_procs: &'a [PathBuf],
}

/// A container init blocked right before execve.
#[derive(Debug)]
pub struct Created {
    /// The init's host pid; a child of the caller.
    pub pid: Pid,
    /// B's reports: `ready` came already; then end of file or an `error` line.
    sync: OwnedFd,
    /// One byte releases B into execve; closing it without one makes B exit 1.
    start: OwnedFd,
}

/// Why a create, start or exec failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InitError {
    /// The spec asks for something impossible; `field` names it (`process.args`,
    /// `mounts[2].source`).
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    /// A step failed; the message names the step, the path and the errno.
    #[error("{0}")]
    Failed(String),
}

impl InitError {
    /// The spec field at fault, when the caller's input caused the error.
    pub fn invalid_argument(&self) -> Option<&str> {
        match self {
            InitError::InvalidArgument { field, .. } => Some(field),
            InitError::Failed(_) => None,
        }
    }

    fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        InitError::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }

    /// `<what>: <why>`, e.g. "mounting proc on /proc: EPERM: Operation not permitted".
    fn step(what: impl Display, why: impl Display) -> Self {
        InitError::Failed(format!("{what}: {why}"))
    }

    /// One line for the pipes between the shim and its children.
    fn encode(&self) -> Vec<u8> {
        let line = match self {
            InitError::InvalidArgument { field, message } => format!("invalid {field} {message}"),
            InitError::Failed(message) => format!("error {message}"),
        };
        let mut line = line.replace('\n', " ").into_bytes();
        line.push(b'\n');
        line
    }

    /// The reverse of [`encode`](Self::encode); None for a line that is not an error.
    fn decode(line: &str) -> Option<Self> {
        let (kind, rest) = line.trim_end().split_once(' ')?;
        match kind {
            "error" => Some(InitError::Failed(rest.to_string())),
            "invalid" => {
                let (field, message) = rest.split_once(' ').unwrap_or((rest, ""));
                Some(InitError::invalid(field, message))
            }
            _ => None,
        }
    }
}

/// Make a container's init, blocked before execve; blocks up to 10 s. On failure nothing
/// is left behind: the children are killed and reaped, and every mount they made was in
/// their own mount namespace.
pub fn create(opts: CreateOptions<'_>) -> Result<Created, InitError> {
    let deadline = Instant::now() + TIMEOUT;
    let config = opts.bundle.join("config.json");
    let spec = Spec::load(&config)
        .map_err(|e| InitError::step(format_args!("reading {}", config.display()), e))?;
    let Some(process) = spec.process() else {
        return Err(InitError::invalid("process", "the spec has no process"));
    };
    let confinement = Confinement::new(&spec, process)?;
    let process = process::Plan::new(process, opts.tty)?;
    let mut rootfs = rootfs::Plan::new(&spec, opts.bundle, opts.rootfs, opts.tty)?;
    let mut namespaces = Namespaces::for_create(&spec)?;
    // Made here, by the host's root: the init cannot once it is in the user namespace.
    rootfs.prepare_idmapped()?;
    namespaces.chdir = rootfs.enter_first().map(Path::to_path_buf);

    let (sync_r, sync_w) = pipe()?;
    let (start_r, start_w) = pipe()?;
    let stdio = opts.stdio;
    let mut keep = stdio.raw().to_vec();
    keep.extend([sync_w.as_raw_fd(), start_r.as_raw_fd()]);
    keep.extend(rootfs.keep_fds());
    let pid = spawn(&namespaces, opts.cgroup_procs, &keep, deadline, move || {
        init_main(&rootfs, &process, &confinement, stdio, sync_w, start_r)
    })?;
    let created = Created {
        pid,
        sync: sync_r,
        start: start_w,
    };
    match read_line(&created.sync, deadline, "the init's setup") {
        Ok(Some(line)) if line == "ready" => Ok(created),
        outcome => {
            kill_and_reap(pid);
            Err(failure(outcome, pid, "the init"))
        }
    }
}

impl Created {
    /// Release the init into execve. Returns once execve has succeeded (the sync pipe
    /// closed on exec) or with the reason it failed (the init then exits 127; the caller
    /// reaps it, as every other exit). An init that does not answer in 10 s gets SIGKILL.
    pub fn start(self) -> Result<(), InitError> {
        let deadline = Instant::now() + TIMEOUT;
        if let Err(e) = write_all(&self.start, b"s") {
            // EPIPE: the init is gone (killed, or its setup died after "ready").
            return Err(InitError::step(
                format_args!("releasing the init {}", self.pid),
                e,
            ));
        }
        match read_line(&self.sync, deadline, "the init's execve") {
            Ok(None) => Ok(()),
            Ok(Some(line)) => Err(InitError::decode(&line)
                .unwrap_or_else(|| InitError::Failed(format!("the init said {line:?}")))),
            Err(e) => {
                let _ = kill(self.pid, Signal::SIGKILL);
                Err(e)
            }
        }
    }

    /// Kill a created-but-never-started init with SIGKILL. It is not reaped here: it is
    /// the caller's child, and the caller's reaper collects it as any other.
    pub fn abort(self) {
        let _ = kill(self.pid, Signal::SIGKILL);
    }
}

/// What [`exec`] needs.
pub struct ExecOptions<'a> {
    /// The running container init (host pid), whose namespaces the process joins.
    pub container_pid: Pid,
    /// The container's spec.
    pub spec: &'a oci_spec::runtime::Spec,
    /// What to run: args, env, cwd, user, capabilities, no_new_privileges, rlimits.
    pub process: &'a oci_spec::runtime::Process,
    pub stdio: Stdio,
    pub tty: bool,
    pub cgroup_procs: &'a [PathBuf],
}

/// A started exec process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spawned {
    /// Its host pid, a child of the caller.
    pub pid: Pid,
    /// Set when the command is missing (127) or not executable (126): the process is
    /// writing the message to its stderr and exiting with the code.
    pub not_executable: Option<(i32, String)>,
}

/// Start a process inside a running container; returns its host pid (a child of the
/// caller) once it has exec'd. A command that is missing or not executable is not an error
/// here: the process writes why to its stderr and exits 127 or 126, as a shell would, and
/// [`Spawned::not_executable`] says so at once.
pub fn exec(opts: ExecOptions<'_>) -> Result<Spawned, InitError> {
    let deadline = Instant::now() + TIMEOUT;
    let confinement = Confinement::new(opts.spec, opts.process)?;
    let process = process::Plan::new(opts.process, opts.tty)?;
    let namespaces = Namespaces::for_exec(opts.container_pid)?;
    let (sync_r, sync_w) = pipe()?;
    let stdio = opts.stdio;
    let mut keep = stdio.raw().to_vec();
    keep.push(sync_w.as_raw_fd());
    let pid = spawn(&namespaces, opts.cgroup_procs, &keep, deadline, move || {
        exec_main(&process, &confinement, stdio, sync_w)
    })?;
    match read_line(&sync_r, deadline, "the exec's setup") {
        Ok(None) => Ok(Spawned {
            pid,
            not_executable: None,
        }),
        Ok(Some(line)) if line.starts_with(NOT_EXECUTABLE) => Ok(Spawned {
            pid,
            not_executable: Some(decode_not_executable(&line)),
        }),
        outcome => {
            kill_and_reap(pid);
            Err(failure(outcome, pid, "the exec"))
        }
    }
}

/// The error for a child that did not report what was expected.
fn failure(outcome: Result<Option<String>, InitError>, pid: Pid, who: &str) -> InitError {
    match outcome {
        Err(e) => e,
        Ok(None) => InitError::Failed(format!("{who} ({pid}) ended during its setup")),
        Ok(Some(line)) => InitError::decode(&line)
            .unwrap_or_else(|| InitError::Failed(format!("{who} ({pid}) said {line:?}"))),
    }
}

/// The namespaces A enters before it clones B: `joins` in order, then one `unshare`.
struct Namespaces {
    joins: Vec<(File, CloneFlags, String)>,
    unshare: CloneFlags,
    /// A enters this dir before the joins: after its unshare, its working dir is the
    /// same dir in the new mount namespace, which B inherits.
    chdir: Option<PathBuf>,
}

impl Namespaces {
    /// Per `linux.namespaces`: a path is joined, a type without one is new; mnt is always
    /// new (or joined). The user namespace is joined first.
    fn for_create(spec: &Spec) -> Result<Self, InitError> {
        let mut joins = Vec::new();
        let mut unshare = CloneFlags::CLONE_NEWNS;
        let list = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref());
        for (i, ns) in list.into_iter().flatten().enumerate() {
            let flag = clone_flag(ns.typ());
            match ns.path() {
                Some(path) => {
                    let file = File::open(path).map_err(|e| {
                        InitError::invalid(
                            format!("linux.namespaces[{i}].path"),
                            format!("{}: {e}", path.display()),
                        )
                    })?;
                    if flag == CloneFlags::CLONE_NEWNS {
                        unshare.remove(CloneFlags::CLONE_NEWNS);
                    }
                    let what = format!("joining the {} namespace {}", ns.typ(), path.display());
                    if flag == CloneFlags::CLONE_NEWUSER {
                        joins.insert(0, (file, flag, what));
                    } else {
                        joins.push((file, flag, what));
                    }
                }
                // Nobody would write its uid and gid maps.
                None if flag == CloneFlags::CLONE_NEWUSER => {
                    return Err(InitError::invalid(
                        format!("linux.namespaces[{i}]"),
                        "a new user namespace is not supported (only joining one by path)",
                    ))
                }
                None => unshare.insert(flag),
            }
        }
        Ok(Namespaces {
            joins,
            unshare,
            chdir: None,
        })
    }

    /// The namespaces of `pid` that differ from the caller's: user first, pid last.
    fn for_exec(pid: Pid) -> Result<Self, InitError> {
        let mut joins = Vec::new();
        for (name, flag) in [
            ("user", CloneFlags::CLONE_NEWUSER),
            ("ipc", CloneFlags::CLONE_NEWIPC),
            ("uts", CloneFlags::CLONE_NEWUTS),
            ("net", CloneFlags::CLONE_NEWNET),
            ("cgroup", CloneFlags::CLONE_NEWCGROUP),
            ("mnt", CloneFlags::CLONE_NEWNS),
            ("pid", CloneFlags::CLONE_NEWPID),
        ] {
            let path = format!("/proc/{pid}/ns/{name}");
            let file = match File::open(&path) {
                Ok(file) => file,
                // A kernel without that namespace type: nothing to join.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) && name != "mnt" => continue,
                Err(e) => {
                    return Err(InitError::step(
                        format_args!("opening {path} (is the container running?)"),
                        e,
                    ))
                }
            };
            let theirs = file
                .metadata()
                .map_err(|e| InitError::step(format_args!("stat {path}"), e))?;
            let ours = std::fs::metadata(format!("/proc/self/ns/{name}"))
                .map_err(|e| InitError::step(format_args!("stat /proc/self/ns/{name}"), e))?;
            if (theirs.dev(), theirs.ino()) != (ours.dev(), ours.ino()) {
                joins.push((
                    file,
                    flag,
                    format!("joining the container's {name} namespace"),
                ));
            }
        }
        Ok(Namespaces {
            joins,
            unshare: CloneFlags::empty(),
            chdir: None,
        })
    }
}

impl Namespaces {
    /// Whether a user namespace is joined (first, as `for_create`/`for_exec` order them).
    fn joins_user(&self) -> bool {
        self.joins
            .iter()
            .any(|(_, flag, _)| *flag == CloneFlags::CLONE_NEWUSER)
    }
}

/// Root of the user namespace just joined: gid, no supplementary groups, uid 0 there.
/// setns(2) keeps the host's ids, and the host's root is unmapped inside.
pub(in crate::shim) fn become_userns_root() -> nix::Result<()> {
    let root = nix::unistd::Gid::from_raw(0);
    nix::unistd::setgroups(&[])?;
    nix::unistd::setresgid(root, root, root)?;
    let root = nix::unistd::Uid::from_raw(0);
    nix::unistd::setresuid(root, root, root)
}

/// The cgroup2 dir of `procs`, open for clone3's CLONE_INTO_CGROUP.
fn open_cgroup_dir(procs: &Path) -> Result<OwnedFd, InitError> {
    let dir = procs.parent().unwrap_or(Path::new("/"));
    let fd = nix::fcntl::open(
        dir,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| InitError::step(format_args!("opening {}", dir.display()), e))?;
    // SAFETY: `open` just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether this kernel and these filesystems can run a container in a user namespace:
/// idmapped mounts on `layers_dir` (the image snapshots' filesystem) and `state_dir` (the
/// pod files'), a tmpfs (shm) and an overlay over idmapped layers. `userns`: a user
/// namespace with a mapping. Makes and removes a scratch dir in `layers_dir`.
pub fn probe_user_namespaces(
    layers_dir: &Path,
    state_dir: &Path,
    userns: &File,
) -> Result<(), String> {
    let userns = userns
        .try_clone()
        .map(OwnedFd::from)
        .map_err(|e| format!("dup: {e}"))?;
    let scratch = layers_dir.join(format!(".userns-probe-{}", std::process::id()));
    let made = ["lower", "upper", "work"]
        .iter()
        .try_for_each(|d| std::fs::create_dir_all(scratch.join(d)))
        .map_err(|e| format!("creating {}: {e}", scratch.display()));
    let probed = made.and_then(|()| idmap::probe(&scratch, state_dir, &userns));
    let _ = std::fs::remove_dir_all(&scratch);
    probed
}

fn clone_flag(typ: LinuxNamespaceType) -> CloneFlags {
    match typ {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        // nix 0.29 has no CLONE_NEWTIME; the kernel's value.
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(0x80),
    }
}

/// Fork A, which joins the cgroups and namespaces and clones B as the caller's child;
/// returns B's host pid once A has been reaped. `b` runs in B and never returns. `keep`:
/// the fds A and B need (everything else is closed in A).
fn spawn<F: FnOnce() -> std::convert::Infallible>(
    namespaces: &Namespaces,
    cgroup_procs: &[PathBuf],
    keep: &[RawFd],
    deadline: Instant,
    b: F,
) -> Result<Pid, InitError> {
    let (report_r, report_w) = pipe()?;
    let v2 = cgroup_v2_procs(cgroup_procs).next();
    let a = match v2.filter(|_| namespaces.joins_user()) {
        // A joins the user namespace before it clones B, and may then no longer write to
        // the cgroup: it is born in the cgroup2 dir instead (v1 ones it joins itself first).
        Some(procs) => {
            let dir = open_cgroup_dir(procs)?;
            match fork_into(&dir, procs)? {
                None => {
                    drop(report_r);
                    intermediate(namespaces, cgroup_procs, keep, report_w, b)
                }
                Some(child) => child,
            }
        }
        // SAFETY: the shim is single-threaded, so the child is a complete copy that may
        // allocate and run any code; it never returns into the caller (`intermediate`
        // diverges, and catches panics).
        None => match unsafe { fork() } {
            Err(e) => return Err(InitError::step("fork", e)),
            Ok(ForkResult::Child) => {
                drop(report_r);
                intermediate(namespaces, cgroup_procs, keep, report_w, b)
            }
            Ok(ForkResult::Parent { child }) => child,
        },
    };
    drop(report_w);
    // B's ends of the pipes, moved into `b`: closed here so that the caller sees end of
    // file once B is gone.
    drop(b);
    let line = read_line(&report_r, deadline, "the intermediate process");
    if line.is_err() {
        let _ = kill(a, Signal::SIGKILL);
    }
    let status = wait_for(a);
    match line? {
        Some(line) => match line.strip_prefix("pid ").map(str::parse::<i32>) {
            Some(Ok(pid)) => Ok(Pid::from_raw(pid)),
            _ => Err(InitError::decode(&line)
                .unwrap_or_else(|| InitError::Failed(format!("the intermediate said {line:?}")))),
        },
        None => Err(InitError::Failed(format!(
            "the intermediate process ended with {status:?}"
        ))),
    }
}

/// A: cgroups, namespaces, clone B, report B's pid, exit.
fn intermediate<F: FnOnce() -> std::convert::Infallible>(
    namespaces: &Namespaces,
    cgroup_procs: &[PathBuf],
    keep: &[RawFd],
    report: OwnedFd,
    b: F,
) -> ! {
    let mut kept = keep.to_vec();
    kept.push(report.as_raw_fd());
    kept.extend(namespaces.joins.iter().map(|(file, _, _)| file.as_raw_fd()));
    close_fds_except(&kept);
    let result = guard(|| {
        let mut into_cgroup = join_cgroups(cgroup_procs)?;
        if namespaces.joins_user() {
            // A was born in the cgroup2 dir (see `spawn`): once in the user namespace it
            // could not clone B into it (its cgroup.procs is the host root's).
            into_cgroup = None;
        }
        if let Some(dir) = &namespaces.chdir {
            nix::unistd::chdir(dir)
                .map_err(|e| InitError::step(format_args!("chdir {}", dir.display()), e))?;
        }
        for (file, flag, what) in &namespaces.joins {
            setns(file.as_fd(), *flag).map_err(|e| InitError::step(what, e))?;
            if *flag == CloneFlags::CLONE_NEWUSER {
                // The host's root is unmapped inside: files it made would be refused
                // (EOVERFLOW) and it would stay the host's root on the host.
                become_userns_root()
                    .map_err(|e| InitError::step("becoming root of the user namespace", e))?;
            }
        }
        if !namespaces.unshare.is_empty() {
            unshare(namespaces.unshare).map_err(|e| {
                InitError::step(format_args!("unshare({:?})", namespaces.unshare), e)
            })?;
        }
        let cloned = match &into_cgroup {
            Some(dir) => match clone_parent_into(dir) {
                // A kernel without clone3's CLONE_INTO_CGROUP (< 5.7): migrate A instead.
                Err(nix::Error::ENOSYS) | Err(nix::Error::E2BIG) => {
                    join_by_pid(cgroup_v2_procs(cgroup_procs))?;
                    clone_parent()
                }
                other => other,
            },
            None => clone_parent(),
        };
        match cloned.map_err(|e| InitError::step("clone(CLONE_PARENT)", e))? {
            Some(pid) => Ok(pid),
            None => match b() {},
        }
    });
    let (line, code) = match result {
        Ok(pid) => (format!("pid {pid}\n").into_bytes(), 0),
        Err(e) => (e.encode(), 1),
    };
    let _ = write_all(&report, &line);
    exit_now(code)
}

/// A fork whose child is a child of the caller's parent: Some(child) in the caller, None in
/// the child.
/// Put A (and so B) in the container's cgroup without the cost of a process migration:
/// a v1 hierarchy takes the calling thread through `tasks` ("0" = me; the process is
/// single-threaded), which the kernel does without the global threadgroup lock that a
/// `cgroup.procs` write takes (that lock waits for an RCU grace period, 4-15 ms here);
/// the cgroup2 hierarchy is entered by cloning B straight into it (CLONE_INTO_CGROUP),
/// so its directory is returned open.
pub(in crate::shim) fn join_cgroups(
    cgroup_procs: &[PathBuf],
) -> Result<Option<OwnedFd>, InitError> {
    let mut into = None;
    for procs in cgroup_procs {
        let dir = procs.parent().unwrap_or(Path::new("/"));
        let joining = |e| InitError::step(format_args!("joining {}", procs.display()), e);
        let is_v2 = nix::sys::statfs::statfs(dir)
            .map_err(joining)?
            .filesystem_type()
            == nix::sys::statfs::CGROUP2_SUPER_MAGIC;
        if is_v2 {
            let fd = nix::fcntl::open(
                dir,
                OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(joining)?;
            // SAFETY: `open` just returned this fd and nothing else owns it.
            into = Some(unsafe { OwnedFd::from_raw_fd(fd) });
            continue;
        }
        let tasks = dir.join("tasks");
        let fast = std::fs::OpenOptions::new()
            .write(true)
            .open(&tasks)
            .and_then(|mut f| f.write_all(b"0"));
        if fast.is_err() {
            join_by_pid(std::iter::once(procs.as_path()))?;
        }
    }
    Ok(into)
}

/// The cgroup2 `cgroup.procs` files among `cgroup_procs`.
fn cgroup_v2_procs(cgroup_procs: &[PathBuf]) -> impl Iterator<Item = &Path> {
    cgroup_procs.iter().map(PathBuf::as_path).filter(|p| {
        let dir = p.parent().unwrap_or(Path::new("/"));
        nix::sys::statfs::statfs(dir)
            .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
    })
}

/// Move this process into each cgroup by writing its pid to `cgroup.procs` (the slow,
/// always available way).
fn join_by_pid<'a>(files: impl Iterator<Item = &'a Path>) -> Result<(), InitError> {
    let me = std::process::id().to_string();
    for procs in files {
        std::fs::OpenOptions::new()
            .write(true)
            .open(procs)
            .and_then(|mut f| f.write_all(me.as_bytes()))
            .map_err(|e| InitError::step(format_args!("joining {}", procs.display()), e))?;
    }
    Ok(())
}

/// `struct clone_args` of clone3(2), up to `cgroup` (CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// [`clone_parent`], with the child born in the cgroup2 directory `dir`.
fn clone_parent_into(dir: &OwnedFd) -> nix::Result<Option<Pid>> {
    let mut args = CloneArgs {
        flags: libc::CLONE_PARENT as u64 | CLONE_INTO_CGROUP,
        // With CLONE_PARENT the child signals like A (SIGCHLD, A was forked); clone3
        // refuses an explicit exit_signal with it.
        exit_signal: 0,
        cgroup: dir.as_raw_fd() as u64,
        ..Default::default()
    };
    // SAFETY: as `clone_parent`: a fork-style clone (no CLONE_VM, stack 0 = the child
    // runs on its copy of the current stack) of a single-threaded process; `args` is a
    // valid clone_args of the size passed, alive for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match rc {
        -1 => Err(nix::Error::last()),
        0 => Ok(None),
        pid => Ok(Some(Pid::from_raw(pid as i32))),
    }
}

/// fork(2), with the child born in the cgroup2 directory `dir` (clone3 with
/// CLONE_INTO_CGROUP): no `cgroup.procs` write, so no wait on the global threadgroup lock.
/// Falls back to a plain fork plus that write where clone3 or the flag is missing.
pub(in crate::shim) fn fork_into(dir: &OwnedFd, procs: &Path) -> Result<Option<Pid>, InitError> {
    let mut args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: dir.as_raw_fd() as u64,
        ..Default::default()
    };
    // SAFETY: a fork-style clone (no CLONE_VM, stack 0 = the child runs on its copy of the
    // current stack) of a single-threaded process; `args` is a valid clone_args of the size
    // passed, alive for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match rc {
        -1 if matches!(nix::Error::last(), nix::Error::ENOSYS | nix::Error::E2BIG) => {
            // SAFETY: the caller is single-threaded (the shim before it serves anything).
            match unsafe { nix::unistd::fork() } {
                Err(e) => Err(InitError::step("fork", e)),
                Ok(nix::unistd::ForkResult::Parent { child }) => Ok(Some(child)),
                Ok(nix::unistd::ForkResult::Child) => {
                    join_by_pid(std::iter::once(procs))?;
                    Ok(None)
                }
            }
        }
        -1 => Err(InitError::step(
            format_args!("clone3 into {}", procs.display()),
            nix::Error::last(),
        )),
        0 => Ok(None),
        pid => Ok(Some(Pid::from_raw(pid as i32))),
    }
}

fn clone_parent() -> nix::Result<Option<Pid>> {
    let flags = (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong;
    // SAFETY: a fork-style clone: no CLONE_VM, so the child gets a copy of the address
    // space and runs on its copy of the current stack (a null stack pointer keeps it), as
    // after fork(2); no tid pointers are passed. The caller is single-threaded, so no lock
    // is held by a thread that the child lacks. glibc's cached tid in the child is stale,
    // which only raise/pthread_kill would read, and the child never calls them.
    let rc = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    match rc {
        -1 => Err(nix::Error::last()),
        0 => Ok(None),
        pid => Ok(Some(Pid::from_raw(pid as i32))),
    }
}

/// The spec's seccomp filter, compiled before the fork, and AppArmor profile.
struct Confinement {
    seccomp: Option<seccomp::Filter>,
    apparmor: Option<String>,
}

impl Confinement {
    fn new(spec: &Spec, process: &oci_spec::runtime::Process) -> Result<Confinement, InitError> {
        Ok(Confinement {
            seccomp: seccomp::from_spec(spec)?,
            apparmor: process.apparmor_profile().clone().filter(|p| !p.is_empty()),
        })
    }

    /// The AppArmor profile for execve (after pivot_root: the container's /proc), then
    /// the filter, when the process keeps the right to gain privileges: loading it then
    /// needs CAP_SYS_ADMIN, which [`process::Plan::become_user`] may drop. Every syscall
    /// after this is one a sane profile allows (prctl, setgroups, setres[ug]id, capget,
    /// capset, chdir, prlimit64, stat/access, umask, close_range, read, write, execve),
    /// as with runc.
    fn before_user(&self, process: &process::Plan) -> Result<(), InitError> {
        if let Some(profile) = &self.apparmor {
            apparmor::change_on_exec(profile)?;
        }
        match &self.seccomp {
            Some(filter) if !process.no_new_privs() => filter.load(),
            _ => Ok(()),
        }
    }

    /// With no_new_privs the filter goes last, before the start wait and execve: the
    /// fewest syscalls run under it (write, read, close, execve, exit_group).
    fn after_user(&self, process: &process::Plan) -> Result<(), InitError> {
        match &self.seccomp {
            Some(filter) if process.no_new_privs() => filter.load(),
            _ => Ok(()),
        }
    }
}

/// Compile an OCI seccomp profile as the shim would: the check behind a Localhost
/// profile's InvalidArgument at CreateContainer.
pub fn check_seccomp(profile: &oci_spec::runtime::LinuxSeccomp) -> Result<(), InitError> {
    let mut linux = oci_spec::runtime::Linux::default();
    linux.set_seccomp(Some(profile.clone()));
    let mut spec = Spec::default();
    spec.set_linux(Some(linux));
    seccomp::from_spec(&spec).map(|_| ())
}

/// B of a container: set up, report ready, wait for the start byte, execve.
fn init_main(
    rootfs: &rootfs::Plan<'_>,
    process: &process::Plan,
    confinement: &Confinement,
    stdio: Stdio,
    sync: OwnedFd,
    start: OwnedFd,
) -> std::convert::Infallible {
    let keep = [sync.as_raw_fd(), start.as_raw_fd()];
    let setup = guard(|| {
        process::reset_signals();
        process::set_oom_score_adj(process.oom_score_adj)?;
        process::setup_stdio(stdio, process.tty)?;
        // The idmapped mounts stay open until `enter` has attached them.
        let mut mounting = keep.to_vec();
        mounting.extend(rootfs.keep_fds());
        close_fds_except(&mounting);
        rootfs.enter()?;
        process.ensure_cwd()?;
        rootfs.finish()?;
        confinement.before_user(process)?;
        process.become_user()?;
        let exe = process
            .look_path()
            .map_err(|e| InitError::invalid("process.args", e.message))?;
        process.set_umask();
        close_fds_except(&keep);
        confinement.after_user(process)?;
        Ok(exe)
    });
    let exe = match setup {
        Ok(exe) => exe,
        Err(e) => {
            let _ = write_all(&sync, &e.encode());
            exit_now(1)
        }
    };
    if write_all(&sync, b"ready\n").is_err() {
        exit_now(1);
    }
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(start.as_raw_fd(), &mut byte) {
            Ok(1) => break,
            Err(nix::Error::EINTR) => continue,
            // End of file: aborted, or the shim is gone.
            _ => exit_now(1),
        }
    }
    drop(start);
    let e = process.execve(&exe);
    let error = InitError::step(format_args!("execve {}", exe.to_string_lossy()), e);
    let _ = write_all(&sync, &error.encode());
    exit_now(127)
}

/// B of an exec: set up and execve at once; a missing command ends it with 127 or 126.
fn exec_main(
    process: &process::Plan,
    confinement: &Confinement,
    stdio: Stdio,
    sync: OwnedFd,
) -> std::convert::Infallible {
    let keep = [sync.as_raw_fd()];
    let setup = guard(|| {
        process::reset_signals();
        process::set_oom_score_adj(process.oom_score_adj)?;
        process::setup_stdio(stdio, process.tty)?;
        close_fds_except(&keep);
        process.enter_root()?;
        confinement.before_user(process)?;
        process.become_user()?;
        process.set_umask();
        confinement.after_user(process)?;
        Ok(())
    });
    if let Err(e) = setup {
        let _ = write_all(&sync, &e.encode());
        exit_now(1);
    }
    let exe = match process.look_path() {
        Ok(exe) => exe,
        Err(e) => not_executable(&sync, &e.message, e.code),
    };
    let e = process.execve(&exe);
    let code = if e == nix::Error::ENOENT { 127 } else { 126 };
    let shown = process
        .args
        .first()
        .map(|a| a.to_string_lossy().into_owned());
    not_executable(
        &sync,
        &format!("exec: {:?}: {}", shown.unwrap_or_default(), e.desc()),
        code,
    )
}

/// The sync line of an exec whose command cannot be run: `noexec <code> <message>`.
const NOT_EXECUTABLE: &str = "noexec ";

/// Tell the shim the command cannot be run (so that a streamed exec can answer with the
/// code and message at once), then fail as a shell does: the message on stderr, exit `code`.
fn not_executable(sync: &OwnedFd, message: &str, code: i32) -> ! {
    let line = format!("{NOT_EXECUTABLE}{code} {}\n", message.replace('\n', " "));
    let _ = write_all(sync, line.as_bytes());
    process::fail_as_shell(message, code)
}

/// The reverse of the line [`not_executable`] writes (its prefix already seen).
fn decode_not_executable(line: &str) -> (i32, String) {
    let rest = line
        .trim_end()
        .strip_prefix(NOT_EXECUTABLE)
        .unwrap_or_default();
    let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
    (code.parse().unwrap_or(127), message.to_string())
}

/// Run `f`, turning a panic into an error: a child must never unwind into the shim's code.
fn guard<T>(f: impl FnOnce() -> Result<T, InitError>) -> Result<T, InitError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(InitError::Failed(format!("panicked: {why}")))
    })
}

fn pipe() -> Result<(OwnedFd, OwnedFd), InitError> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| InitError::step("pipe", e))
}

/// Read one line (without its newline) from `fd`, or None at end of file before any byte;
/// fails once `deadline` passes.
fn read_line(fd: &OwnedFd, deadline: Instant, what: &str) -> Result<Option<String>, InitError> {
    let mut line = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut set = [sys::pollfd(fd.as_fd(), sys::POLLIN)];
        match sys::poll(&mut set, Some(left)) {
            Ok(0) => {
                return Err(InitError::Failed(format!(
                    "timed out after {} s waiting for {what}",
                    TIMEOUT.as_secs()
                )))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(InitError::step("poll", e)),
        }
        let mut buf = [0u8; 4096];
        match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
            Ok(0) if line.is_empty() => return Ok(None),
            Ok(0) => break,
            Ok(n) => {
                line.extend_from_slice(&buf[..n]);
                if let Some(end) = line.iter().position(|b| *b == b'\n') {
                    line.truncate(end);
                    break;
                }
            }
            Err(nix::Error::EINTR) => {}
            Err(e) => return Err(InitError::step(format_args!("reading from {what}"), e)),
        }
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

/// waitpid for one child, through EINTR.
fn wait_for(pid: Pid) -> nix::Result<WaitStatus> {
    loop {
        match waitpid(pid, None) {
            Err(nix::Error::EINTR) => continue,
            other => return other,
        }
    }
}

fn kill_and_reap(pid: Pid) {
    let _ = kill(pid, Signal::SIGKILL);
    let _ = wait_for(pid);
}
