//! The two libc calls that nix does not give this crate (its `poll` feature is off, and
//! `_exit` needs none of nix), nix's openat/openat2 with the new fd owned (nix 0.29
//! returns a raw one), fd passing over a unix socket (`SCM_RIGHTS`, the received fds
//! owned at once) and a pty's window size: thin safe wrappers.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
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

/// The most fds one answer passes (stdin, stdout, stderr) and one receive accepts.
pub const MAX_PASSED_FDS: usize = 4;

/// sendmsg(2) of `bytes` on a connected unix stream socket with `fds` attached
/// (`SCM_RIGHTS`), non-blocking. The fds travel with the first byte sent; the caller keeps
/// (and may close) its copies. Returns how many bytes went.
pub fn send_with_fds(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
    let raw: Vec<i32> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let cmsgs = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &cmsgs };
    loop {
        match sendmsg::<UnixAddr>(
            sock.as_raw_fd(),
            &[IoSlice::new(bytes)],
            cmsgs,
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(n) => return Ok(n),
        }
    }
}

/// recvmsg(2) into `buf` on a unix stream socket, non-blocking; fds that come with the
/// bytes are pushed onto `fds`, owned and close-on-exec. More than [`MAX_PASSED_FDS`] in
/// one message, or a truncated control message, is an error (the fds that did arrive are
/// closed). Returns how many bytes came (0: end of file).
pub fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
    let mut space = nix::cmsg_space!([i32; MAX_PASSED_FDS]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = loop {
        match recvmsg::<UnixAddr>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(msg) => break msg,
        }
    };
    let bytes = msg.bytes;
    let truncated = msg.flags.contains(MsgFlags::MSG_CTRUNC);
    let mut received = Vec::new();
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = cmsg {
            for fd in raw {
                // SAFETY: the kernel just installed this fd in our table for this message;
                // nothing else refers to it.
                received.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    if truncated {
        return Err(io::Error::other(
            "fds passed beyond the control buffer (truncated)",
        ));
    }
    fds.extend(received);
    Ok(bytes)
}

/// TIOCSWINSZ: set a terminal's size (columns, rows), as a pty master's holder does on a
/// client's resize; the foreground process group gets SIGWINCH.
pub fn set_winsize(tty: BorrowedFd<'_>, columns: u16, rows: u16) -> io::Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: columns,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize` through the pointer, which is valid for the
    // whole call; the fd is borrowed, so it is open.
    let rc = unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    match rc {
        -1 => Err(io::Error::last_os_error()),
        _ => Ok(()),
    }
}

/// unlockpt(3) and then the slave of a pty master without a path lookup (TIOCGPTPEER,
/// Linux 4.13): the peer of this very master, in whichever devpts it was opened from.
pub fn pty_peer(master: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int through the pointer, valid for the whole call; the
    // fd is borrowed, so it is open.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes the open flags by value and returns a new fd or -1.
    let slave = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) };
    if slave < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the ioctl just returned this fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(slave) })
}

/// The fds' borrowed forms, for [`send_with_fds`].
pub fn borrow_all(fds: &[OwnedFd]) -> Vec<BorrowedFd<'_>> {
    fds.iter().map(|fd| fd.as_fd()).collect()
}
