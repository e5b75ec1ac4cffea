//! Pseudo-terminals for containers and execs that ask for a tty.
//!
//! The shim keeps the master (non-blocking, in its poll set) and hands the slave to the
//! process as its stdin, stdout and stderr; all output then arrives on the master, as the
//! one stream "stdout". Once every holder of the slave has closed it, a read of the
//! master fails with EIO: that is the tty's end of file.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};

/// A master and slave pair, both close-on-exec.
#[derive(Debug)]
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

/// Open a new pty pair; the master is non-blocking.
pub fn open() -> io::Result<Pty> {
    let pair = nix::pty::openpty(None, None)?;
    // openpty(3) gives no O_CLOEXEC; the shim is single-threaded, so no fork can happen
    // between the open and this.
    for fd in [&pair.master, &pair.slave] {
        set_cloexec(fd)?;
    }
    set_nonblocking(&pair.master)?;
    Ok(Pty {
        master: pair.master,
        slave: pair.slave,
    })
}

/// A pty for a process joining the running container `container_pid`: from the
/// container's own devpts (its `/dev/pts/ptmx`), so that inside the container the slave
/// is a `/dev/pts/N` that exists (`tty`, `ttyname(3)`, programs that reopen their tty),
/// as a pty made by runc or crun inside the container is. Falls back to a pty of the
/// shim's devpts when the container has no usable devpts.
pub fn open_for(container_pid: i32) -> io::Result<Pty> {
    match open_in_devpts(container_pid) {
        Ok(pty) => Ok(pty),
        Err(e) => {
            super::log(format_args!(
                "no pty from the devpts of {container_pid} ({e}); using the shim's"
            ));
            open()
        }
    }
}

/// devpts' `statfs` magic.
const DEVPTS_SUPER_MAGIC: i64 = 0x1cd1;

fn open_in_devpts(container_pid: i32) -> io::Result<Pty> {
    use nix::fcntl::{OpenHow, ResolveFlag};
    use nix::sys::stat::{fstat, major, minor, SFlag};
    use std::os::unix::fs::OpenOptionsExt;
    let root: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(format!("/proc/{container_pid}/root"))?
        .into();
    // The container's tree is the container's to shape: resolve inside it, follow no
    // link, then check that what opened is devpts' ptmx before using it.
    let how = OpenHow::new()
        .flags(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
        .resolve(
            ResolveFlag::RESOLVE_IN_ROOT
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        );
    let master = super::sys::openat2(root.as_fd(), std::path::Path::new("dev/pts/ptmx"), how)?;
    let st = fstat(master.as_raw_fd())?;
    let is_ptmx = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR
        && major(st.st_rdev) == 5
        && minor(st.st_rdev) == 2;
    let fs = nix::sys::statfs::fstatfs(&master)?;
    if !is_ptmx || fs.filesystem_type().0 as i64 != DEVPTS_SUPER_MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the container's /dev/pts/ptmx is not devpts' ptmx",
        ));
    }
    let slave = super::sys::pty_peer(master.as_fd())?;
    Ok(Pty { master, slave })
}

fn set_cloexec(fd: &impl AsFd) -> io::Result<()> {
    // nix 0.29's fcntl takes a raw fd; `fd` is borrowed for the call.
    fcntl(
        fd.as_fd().as_raw_fd(),
        FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC),
    )?;
    Ok(())
}

/// Make `fd` non-blocking (for the shim's poll loop).
pub fn set_nonblocking(fd: &impl AsFd) -> io::Result<()> {
    let raw = fd.as_fd().as_raw_fd();
    let flags = OFlag::from_bits_retain(fcntl(raw, FcntlArg::F_GETFL)?);
    fcntl(raw, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// True when a read error from a tty master means "the other side has gone".
pub fn is_hangup(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EIO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::{Read, Write};

    #[test]
    fn output_written_to_the_slave_reads_from_the_master() {
        let pty = open().unwrap();
        for fd in [&pty.master, &pty.slave] {
            let flags = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFD).unwrap();
            assert!(FdFlag::from_bits_retain(flags).contains(FdFlag::FD_CLOEXEC));
        }
        let mut master = File::from(pty.master);
        let mut slave = File::from(pty.slave);
        assert_eq!(
            master.read(&mut [0u8; 8]).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        slave.write_all(b"hi\n").unwrap();
        drop(slave);
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            match master.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(1))
                }
                Err(e) => {
                    assert!(is_hangup(&e), "{e}");
                    break;
                }
            }
        }
        // The line discipline turns `\n` into `\r\n` (onlcr).
        assert_eq!(got, b"hi\r\n");
    }
}
