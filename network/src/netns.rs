//! Pinned pod namespaces (net, ipc, uts) and work inside a network namespace.
//!
//! Everything that changes a thread's namespaces runs on a dedicated `std::thread` that
//! exits afterwards; a tokio worker never calls `unshare` or `setns`. `unshare` of net,
//! ipc and uts is allowed in a multi-threaded process (only mount and user namespaces
//! need a single-threaded caller) and touches the calling thread alone.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::error::{Error, Result};
use crate::sysctl::{self, SysctlKind};
use crate::userns::{self, UserNamespace};

/// The pinned user namespace's file, beside the others.
const USER: &str = "user";

/// Which namespaces to create for a pod, and what to set inside them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceRequest {
    /// A new network namespace (false for a hostNetwork pod).
    pub net: bool,
    /// A new IPC namespace (false for `NODE` IPC).
    pub ipc: bool,
    /// A new UTS namespace.
    pub uts: bool,
    /// Set inside the new UTS namespace; ignored when `uts` is false.
    pub hostname: Option<String>,
    /// Namespaced sysctls, applied inside the new namespaces. Each key's namespace must be
    /// among the new ones, so that nothing is ever written to the host's.
    pub sysctls: BTreeMap<String, String>,
    /// A user namespace with these maps, made first and owning the new net, ipc and uts
    /// namespaces (all three required); None: they belong to the host's.
    pub userns: Option<UserNamespace>,
}

/// The files that pin the pod's namespaces; None for a kind not asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PinnedNamespaces {
    pub user: Option<PathBuf>,
    pub net: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
}

const KINDS: [(&str, CloneFlags); 3] = [
    ("net", CloneFlags::CLONE_NEWNET),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
];

/// Create the requested namespaces and pin each by a bind mount on `<dir>/{net,ipc,uts}`.
///
/// Blocking (it spawns and joins a thread): call it through `spawn_blocking`. On failure
/// it undoes its own mounts and files.
pub fn pin_namespaces(dir: &Path, req: &NamespaceRequest) -> Result<PinnedNamespaces> {
    for key in req.sysctls.keys() {
        let needs = match sysctl::validate_sysctl(key)? {
            SysctlKind::Net => req.net,
            SysctlKind::Ipc => req.ipc,
        };
        if !needs {
            return Err(Error::invalid(
                format!("sysctls[{key}]"),
                "the pod shares this namespace with the host",
            ));
        }
    }
    if let Some(hostname) = req.hostname.as_deref().filter(|_| req.uts) {
        if hostname.is_empty() || hostname.len() > 64 || hostname.contains('\0') {
            return Err(Error::invalid(
                "hostname",
                format!("{hostname:?} is not a valid hostname"),
            ));
        }
    }
    let mut flags = CloneFlags::empty();
    for ((_, flag), wanted) in KINDS.iter().zip([req.net, req.ipc, req.uts]) {
        if wanted {
            flags |= *flag;
        }
    }
    if req.userns.is_some() && flags != KINDS.iter().fold(CloneFlags::empty(), |a, k| a | k.1) {
        return Err(Error::invalid(
            "userns_options",
            "a pod with a user namespace needs its own network, IPC and UTS namespaces",
        ));
    }
    if flags.is_empty() {
        return Ok(PinnedNamespaces::default());
    }
    fs::create_dir_all(dir).map_err(Error::io(format!("create {}", dir.display())))?;
    let dir = dir.to_path_buf();
    let req = req.clone();
    std::thread::Builder::new()
        .name("corral-pinns".into())
        .spawn(move || match &req.userns {
            Some(userns) => pin_with_userns(&dir, &req, userns, flags),
            None => pin_on_this_thread(&dir, &req, flags),
        })
        .map_err(Error::io("spawn namespace thread"))?
        .join()
        .map_err(|_| Error::Internal("namespace thread panicked".into()))?
}

/// Runs on a thread of its own, which exits afterwards with the namespaces it made.
fn pin_on_this_thread(
    dir: &Path,
    req: &NamespaceRequest,
    flags: CloneFlags,
) -> Result<PinnedNamespaces> {
    unshare(flags).map_err(Error::nix("unshare namespaces"))?;
    if req.uts {
        if let Some(hostname) = &req.hostname {
            nix::unistd::sethostname(hostname).map_err(Error::nix("sethostname"))?;
        }
    }
    for (key, value) in &req.sysctls {
        sysctl::write(key, value)?;
    }
    let mut pinned = PinnedNamespaces::default();
    let mut made: Vec<PathBuf> = Vec::new();
    for ((kind, flag), slot) in
        KINDS
            .iter()
            .zip([&mut pinned.net, &mut pinned.ipc, &mut pinned.uts])
    {
        if !flags.contains(*flag) {
            continue;
        }
        let target = dir.join(kind);
        match pin_one(kind, &target) {
            Ok(()) => {
                made.push(target.clone());
                *slot = Some(target);
            }
            Err(err) => {
                let cleanup: Vec<Error> = made.iter().filter_map(|p| unpin(p).err()).collect();
                return Err(err.with_cleanup(cleanup));
            }
        }
    }
    Ok(pinned)
}

/// With a user namespace: a forked holder makes the namespaces (see [`userns`]), and each
/// is pinned from its `/proc/<pid>/ns`, the user namespace first.
fn pin_with_userns(
    dir: &Path,
    req: &NamespaceRequest,
    userns: &UserNamespace,
    flags: CloneFlags,
) -> Result<PinnedNamespaces> {
    let sysctls = req
        .sysctls
        .iter()
        .map(|(k, v)| Ok((k.clone(), sysctl::proc_path(k)?, v.clone())))
        .collect::<Result<Vec<_>>>()?;
    let hostname = req.hostname.as_deref().filter(|_| req.uts);
    let holder = userns::spawn_holder(userns, flags, hostname, &sysctls)?;
    let mut pinned = PinnedNamespaces::default();
    let mut made: Vec<PathBuf> = Vec::new();
    let slots = [
        (USER, &mut pinned.user),
        (KINDS[0].0, &mut pinned.net),
        (KINDS[1].0, &mut pinned.ipc),
        (KINDS[2].0, &mut pinned.uts),
    ];
    for (kind, slot) in slots {
        let target = dir.join(kind);
        let source = format!("/proc/{}/ns/{kind}", holder.pid);
        match pin_from(&source, &target) {
            Ok(()) => {
                made.push(target.clone());
                *slot = Some(target);
            }
            Err(err) => {
                drop(holder);
                let cleanup: Vec<Error> = made.iter().filter_map(|p| unpin(p).err()).collect();
                return Err(err.with_cleanup(cleanup));
            }
        }
    }
    holder.finish();
    Ok(pinned)
}

fn pin_one(kind: &str, target: &Path) -> Result<()> {
    pin_from(&format!("/proc/thread-self/ns/{kind}"), target)
}

/// Bind the namespace file `source` on `target` (made empty first).
fn pin_from(source: &str, target: &Path) -> Result<()> {
    if is_nsfs(target) {
        return Err(Error::AlreadyExists(format!(
            "pinned namespace {}",
            target.display()
        )));
    }
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(target)
        .map_err(Error::io(format!("create {}", target.display())))?;
    if let Err(e) = mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    ) {
        let _ = fs::remove_file(target);
        return Err(Error::nix(format!("bind {source} on {}", target.display()))(e));
    }
    Ok(())
}

/// Unmount (every layer of) a pinned namespace file and remove the file.
fn unpin(path: &Path) -> Result<()> {
    // A file can carry stacked mounts; 8 is far beyond what we ever make.
    for _ in 0..8 {
        if !is_nsfs(path) {
            break;
        }
        match umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) => {}
            Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => break,
            Err(e) => return Err(Error::nix(format!("unmount {}", path.display()))(e)),
        }
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("remove {}", path.display()))(e)),
    }
}

fn is_nsfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
        .unwrap_or(false)
}

/// Undo [`pin_namespaces`]: lazily unmount each pinned file under `dir` and remove it.
/// Idempotent. Dropping the last reference to a network namespace lets the kernel reap
/// its veth on its own.
pub fn release_namespaces(dir: &Path) -> Result<()> {
    let mut errors = Vec::new();
    // The user namespace last: the others are its.
    for kind in KINDS.iter().map(|(kind, _)| *kind).chain([USER]) {
        if let Err(e) = unpin(&dir.join(kind)) {
            errors.push(e);
        }
    }
    match errors.len() {
        0 => Ok(()),
        _ => {
            let first = errors.remove(0);
            Err(first.with_cleanup(errors))
        }
    }
}

/// Run `f` on a dedicated thread that has entered the network namespace pinned at `netns`.
/// Blocking; the thread exits afterwards.
///
/// Sockets `f` creates stay in that namespace wherever they are used later (and keep it
/// alive while open). Note that `/sys/class/net` shows the namespace of whoever mounted
/// sysfs, not the caller's; read `/proc/thread-self/net/dev` (or ask netlink) for the
/// pod's interfaces and counters.
pub fn run_in_netns<T: Send + 'static>(
    netns: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let ns = open_netns(netns)?;
    let path = netns.to_path_buf();
    std::thread::Builder::new()
        .name("corral-netns".into())
        .spawn(move || enter(&path, ns).map(|()| f()))
        .map_err(Error::io("spawn netns thread"))?
        .join()
        .map_err(|_| Error::Internal("netns thread panicked".into()))?
}

/// [`run_in_netns`] for async callers: the thread reports back over a channel, so no
/// tokio worker waits on a join.
pub(crate) async fn run_in_netns_async<T: Send + 'static>(
    netns: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let ns = open_netns(netns)?;
    let path = netns.to_path_buf();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("corral-netns".into())
        .spawn(move || {
            let _ = tx.send(enter(&path, ns).map(|()| f()));
        })
        .map_err(Error::io("spawn netns thread"))?;
    rx.await
        .map_err(|_| Error::Internal("netns thread panicked".into()))?
}

/// Open a pinned network namespace; NotFound when it is not one (gone, or never pinned).
pub(crate) fn open_netns(netns: &Path) -> Result<File> {
    let file = File::open(netns).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            Error::NotFound(format!("network namespace {}", netns.display()))
        }
        _ => Error::io(format!("open {}", netns.display()))(e),
    })?;
    if !is_nsfs(netns) {
        return Err(Error::NotFound(format!(
            "network namespace {} (not a pinned namespace)",
            netns.display()
        )));
    }
    Ok(file)
}

fn enter(path: &Path, ns: File) -> Result<()> {
    setns(ns, CloneFlags::CLONE_NEWNET).map_err(Error::nix(format!("setns {}", path.display())))
}

/// A NETLINK_ROUTE socket created inside `netns`; it keeps talking to that namespace
/// wherever it is used from.
pub(crate) async fn route_socket_in(netns: &Path) -> Result<OwnedFd> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockProtocol, SockType};
    run_in_netns_async(netns, || {
        socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )
        .map_err(Error::nix("netlink socket in pod netns"))
    })
    .await?
}
