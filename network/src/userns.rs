//! A pod's user namespace, made together with the net, ipc and uts namespaces it owns.
//!
//! corrald is multi-threaded, and `unshare(CLONE_NEWUSER)` is refused to a multi-threaded
//! process; a user namespace's maps must also be written from outside it. So the pinning
//! thread forks a holder (single-threaded, as every fork child is), and:
//!
//! ```text
//! holder: unshare(CLONE_NEWUSER) ─"ok"─▶ parent: writes uid_map, gid_map ─go─▶
//! holder: unshare(NET|IPC|UTS) (owned by the new user namespace), sethostname, sysctls ─"ok"─▶
//! parent: bind-mounts /proc/<holder>/ns/{user,net,ipc,uts} on the pod dir, closes go ─▶ holder exits
//! ```
//!
//! The holder is a fork of a multi-threaded process: it may only make async-signal-safe
//! calls, so everything it needs (paths, values) is prepared before the fork and it uses
//! raw libc calls, never the allocator. It reports each step as 8 bytes: the step (0 =
//! done) and the errno. setgroups is left allowed: the parent has CAP_SETGID over the
//! namespace, so the kernel needs no `deny` to accept the gid map, and the container's
//! own setgroups(2) (supplementary groups) must keep working inside.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One line of a uid or gid map: `length` ids from `container_id` inside are `host_id`
/// onwards outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMapping {
    pub container_id: u32,
    pub host_id: u32,
    pub length: u32,
}

/// The mappings of a pod's user namespace (CRI `UserNamespace` with mode POD).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNamespace {
    pub uids: Vec<IdMapping>,
    pub gids: Vec<IdMapping>,
}

impl UserNamespace {
    /// The host ids of the namespace's root: the owner, on the host, of what its root makes.
    pub fn root_on_host(&self) -> Option<(u32, u32)> {
        let find = |maps: &[IdMapping]| {
            maps.iter()
                .find(|m| m.container_id == 0 && m.length > 0)
                .map(|m| m.host_id)
        };
        Some((find(&self.uids)?, find(&self.gids)?))
    }
}

/// The text of a `/proc/<pid>/{uid,gid}_map` file.
pub fn map_text(maps: &[IdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.length))
        .collect()
}

/// Run `f` with a user namespace of `userns`'s maps (an open `/proc/<pid>/ns/user`), made
/// by a holder that exits afterwards. Blocking.
pub fn with_user_namespace<T>(
    userns: &UserNamespace,
    f: impl FnOnce(&std::fs::File) -> T,
) -> Result<T> {
    let holder = spawn_holder(userns, CloneFlags::empty(), None, &[])?;
    let path = format!("/proc/{}/ns/user", holder.pid);
    let file = std::fs::File::open(&path).map_err(Error::io(format!("open {path}")))?;
    let out = f(&file);
    holder.finish();
    Ok(out)
}

/// Steps the holder reports (errors carry the errno).
const STEP_DONE: u32 = 0;
const STEP_USERNS: u32 = 1;
const STEP_UNSHARE: u32 = 2;
const STEP_HOSTNAME: u32 = 3;
/// `STEP_SYSCTL + i` for the i-th sysctl.
const STEP_SYSCTL: u32 = 16;

/// A holder process whose namespaces are ready to be pinned from `/proc/<pid>/ns`.
pub(crate) struct Holder {
    pub pid: Pid,
    /// Closing it lets the holder exit.
    release: Option<OwnedFd>,
}

impl Holder {
    /// Let the holder exit and reap it.
    pub fn finish(mut self) {
        drop(self.release.take());
        let _ = waitpid(self.pid, None);
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        if self.release.is_some() {
            let _ = kill(self.pid, Signal::SIGKILL);
            drop(self.release.take());
            let _ = waitpid(self.pid, None);
        }
    }
}

/// Fork a holder that makes a user namespace with `userns`'s maps, then `flags` (net,
/// ipc, uts) inside it, sets `hostname` and `sysctls` there, and waits.
pub(crate) fn spawn_holder(
    userns: &UserNamespace,
    flags: CloneFlags,
    hostname: Option<&str>,
    sysctls: &[(String, std::path::PathBuf, String)],
) -> Result<Holder> {
    let keys: Vec<&str> = sysctls.iter().map(|(k, _, _)| k.as_str()).collect();
    let cstring = |s: &[u8], what: &str| {
        CString::new(s).map_err(|_| Error::invalid(what.to_string(), "contains a NUL byte"))
    };
    let hostname: Option<Vec<u8>> = hostname.map(|h| h.as_bytes().to_vec());
    let sysctls: Vec<(CString, Vec<u8>)> = sysctls
        .iter()
        .map(|(_, path, value)| {
            Ok((
                cstring(path.as_os_str().as_encoded_bytes(), "sysctls")?,
                value.as_bytes().to_vec(),
            ))
        })
        .collect::<Result<_>>()?;
    let (report_r, report_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(Error::nix("pipe"))?;
    let (go_r, go_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(Error::nix("pipe"))?;
    // SAFETY: the child of this multi-threaded process runs `holder_main` only, which
    // makes async-signal-safe libc calls on data prepared above and never returns.
    let pid = match unsafe { fork() }.map_err(Error::nix("fork the namespace holder"))? {
        ForkResult::Child => holder_main(
            go_r.as_raw_fd(),
            go_w.as_raw_fd(),
            report_r.as_raw_fd(),
            report_w.as_raw_fd(),
            flags,
            hostname.as_deref(),
            &sysctls,
        ),
        ForkResult::Parent { child } => child,
    };
    drop(go_r);
    drop(report_w);
    let holder = Holder {
        pid,
        release: Some(go_w),
    };
    expect_done(&report_r, "creating the user namespace", &keys)?;
    let proc = format!("/proc/{pid}");
    for (file, maps) in [("uid_map", &userns.uids), ("gid_map", &userns.gids)] {
        let path = format!("{proc}/{file}");
        std::fs::write(&path, map_text(maps)).map_err(|e| {
            if e.raw_os_error() == Some(libc::EINVAL) || e.raw_os_error() == Some(libc::EPERM) {
                Error::invalid(
                    format!("userns_options.{}", &file[..3]),
                    format!("the kernel refused the map {:?}: {e}", map_text(maps)),
                )
            } else {
                Error::io(format!("write {path}"))(e)
            }
        })?;
    }
    if let Some(go) = &holder.release {
        nix::unistd::write(go, b"g").map_err(Error::nix("releasing the namespace holder"))?;
    }
    expect_done(&report_r, "creating the pod's namespaces", &keys)?;
    Ok(holder)
}

/// Read one 8-byte report; Ok for STEP_DONE, else the failed step as an error.
fn expect_done(report: &OwnedFd, what: &str, keys: &[&str]) -> Result<()> {
    let mut buf = [0u8; 8];
    let mut got = 0;
    while got < buf.len() {
        match nix::unistd::read(report.as_raw_fd(), &mut buf[got..]) {
            Ok(0) => {
                return Err(Error::Internal(format!(
                    "{what}: the namespace holder exited without a word"
                )))
            }
            Ok(n) => got += n,
            Err(nix::Error::EINTR) => {}
            Err(e) => return Err(Error::nix(format!("{what}: reading the holder"))(e)),
        }
    }
    let step = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let errno = nix::Error::from_raw(i32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]));
    match step {
        STEP_DONE => Ok(()),
        STEP_USERNS => Err(Error::nix("unshare(CLONE_NEWUSER)")(errno)),
        STEP_UNSHARE => Err(Error::nix(
            "unshare the pod's namespaces in its user namespace",
        )(errno)),
        STEP_HOSTNAME => Err(Error::nix("sethostname")(errno)),
        n => {
            let i = (n - STEP_SYSCTL) as usize;
            let key = keys.get(i).copied().unwrap_or_default();
            if matches!(errno, nix::Error::EINVAL | nix::Error::ENOENT) {
                Err(Error::invalid(
                    format!("sysctls[{key}]"),
                    format!("refused in the pod's user namespace: {errno}"),
                ))
            } else {
                Err(Error::nix(format!("writing {key}"))(errno))
            }
        }
    }
}

/// The holder: async-signal-safe calls only (see the module doc).
fn holder_main(
    go_r: i32,
    go_w: i32,
    report_r: i32,
    report_w: i32,
    flags: CloneFlags,
    hostname: Option<&[u8]>,
    sysctls: &[(CString, Vec<u8>)],
) -> ! {
    // SAFETY (whole function): raw syscalls on fds this process owns and on buffers that
    // live until `_exit`; nothing allocates, locks or unwinds.
    unsafe {
        libc::close(go_w);
        libc::close(report_r);
        if libc::unshare(libc::CLONE_NEWUSER) != 0 {
            fail(report_w, STEP_USERNS);
        }
        report(report_w, STEP_DONE, 0);
        let mut byte = 0u8;
        loop {
            match libc::read(go_r, (&mut byte as *mut u8).cast(), 1) {
                1 => break,
                -1 if *libc::__errno_location() == libc::EINTR => {}
                _ => libc::_exit(1),
            }
        }
        if libc::unshare(flags.bits()) != 0 {
            fail(report_w, STEP_UNSHARE);
        }
        if let Some(name) = hostname {
            if libc::sethostname(name.as_ptr().cast(), name.len()) != 0 {
                fail(report_w, STEP_HOSTNAME);
            }
        }
        for (i, (path, value)) in sysctls.iter().enumerate() {
            let step = STEP_SYSCTL + i as u32;
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                fail(report_w, step);
            }
            if libc::write(fd, value.as_ptr().cast(), value.len()) < 0 {
                fail(report_w, step);
            }
            libc::close(fd);
        }
        report(report_w, STEP_DONE, 0);
        // Hold the namespaces until the parent has pinned them and closes its end.
        loop {
            match libc::read(go_r, (&mut byte as *mut u8).cast(), 1) {
                -1 if *libc::__errno_location() == libc::EINTR => {}
                _ => libc::_exit(0),
            }
        }
    }
}

/// One 8-byte report of the holder: the step and the errno.
///
/// # Safety
/// Async-signal-safe: a raw write(2) from a stack buffer.
unsafe fn report(fd: i32, step: u32, errno: i32) {
    let mut buf = [0u8; 8];
    buf[..4].copy_from_slice(&step.to_le_bytes());
    buf[4..].copy_from_slice(&errno.to_le_bytes());
    libc::write(fd, buf.as_ptr().cast(), buf.len());
}

/// Report `step` with the current errno and exit.
///
/// # Safety
/// Async-signal-safe: errno, write(2), _exit(2).
unsafe fn fail(fd: i32, step: u32) -> ! {
    report(fd, step, *libc::__errno_location());
    libc::_exit(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_text_is_one_line_per_mapping() {
        let maps = [
            IdMapping {
                container_id: 0,
                host_id: 65536,
                length: 65536,
            },
            IdMapping {
                container_id: 70000,
                host_id: 1,
                length: 2,
            },
        ];
        assert_eq!(map_text(&maps), "0 65536 65536\n70000 1 2\n");
    }

    #[test]
    fn root_on_host_needs_container_root_in_both_maps() {
        let m = |c, h| IdMapping {
            container_id: c,
            host_id: h,
            length: 10,
        };
        let ns = UserNamespace {
            uids: vec![m(0, 1000)],
            gids: vec![m(0, 2000)],
        };
        assert_eq!(ns.root_on_host(), Some((1000, 2000)));
        let ns = UserNamespace {
            uids: vec![m(1, 1000)],
            gids: vec![m(0, 2000)],
        };
        assert_eq!(ns.root_on_host(), None);
    }
}
