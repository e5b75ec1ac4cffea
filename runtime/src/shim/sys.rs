//! The two libc calls that nix does not give this crate (its `poll` feature is off, and
//! `_exit` needs none of nix), and nix's openat/openat2 with the new fd owned (nix 0.29
//! returns a raw one): thin safe wrappers.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow};
use nix::sys::stat::Mode;
use std::time::Duration;

/// Events for [`poll`], as in poll(2).
pub const POLLIN: i16 = libc::POLLIN;
pub const POLLOUT: i16 = libc::POLLOUT;

/// One entry of a [`poll`] set.
pub fn pollfd(fd: BorrowedFd<'_>, events: i16) -> libc::pollfd {
    libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    }
}

/// poll(2): wait until an fd in `fds` is ready, or `timeout` passes (None: forever).
/// Returns the number of ready entries; their `revents` are set.
pub fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<usize> {
    let timeout = match timeout {
        None => -1,
        Some(t) => i32::try_from(t.as_millis()).unwrap_or(i32::MAX),
    };
    // SAFETY: `fds` is a live, exclusively borrowed array of `fds.len()` pollfd structs for
    // the whole call; the kernel writes only their `revents` fields.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
    match n {
        -1 => Err(io::Error::last_os_error()),
        n => Ok(n as usize),
    }
}

/// _exit(2): end the process at once, running no exit handlers and flushing nothing; for
/// forked children that must not touch their parent's copy of shared state.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit takes no pointers and never returns; it is async-signal-safe.
    unsafe { libc::_exit(code) }
}

/// close_range(2) over `first..=last`; false when the kernel lacks it (before 5.9).
pub fn close_range(first: u32, last: u32) -> bool {
    if first > last {
        return true;
    }
    // SAFETY: close_range takes no pointers; closing fds the process owns through Rust
    // objects is the caller's concern (it is called before any such fd is used again).
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
    rc == 0
}

/// openat(2) relative to `dir`.
pub fn openat(
    dir: BorrowedFd<'_>,
    path: &Path,
    flags: OFlag,
    mode: Mode,
) -> Result<OwnedFd, Errno> {
    let fd = nix::fcntl::openat(Some(dir.as_raw_fd()), path, flags, mode)?;
    // SAFETY: openat just returned this fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// openat2(2) relative to `dir` (ENOSYS before Linux 5.6).
pub fn openat2(dir: BorrowedFd<'_>, path: &Path, how: OpenHow) -> Result<OwnedFd, Errno> {
    let fd = nix::fcntl::openat2(dir.as_raw_fd(), path, how)?;
    // SAFETY: openat2 just returned this fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
