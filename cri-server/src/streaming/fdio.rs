//! Async reads and writes on the descriptors the shim hands over (pipe ends, a pty
//! master): made non-blocking and driven by tokio's reactor, so an exec's or an attach's
//! bytes go from the container to the client without passing through the shim.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::unix::AsyncFd;

use super::channel::{Inbound, Outbound};

/// The most read from a descriptor at once.
const CHUNK: usize = 32 * 1024;

pub struct Fd {
    inner: AsyncFd<OwnedFd>,
    /// A pty master: EIO on read means the other side is gone (its end of file).
    pty: bool,
}

impl Fd {
    pub fn new(fd: OwnedFd, pty: bool) -> io::Result<Fd> {
        set_nonblocking(&fd)?;
        // SAFETY: an OwnedFd is open, and its raw fd the same, for as long as it lives, and
        // it lives inside the AsyncFd until that is dropped.
        let inner = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
        Ok(Fd { inner, pty })
    }

    /// The next bytes; empty at the end.
    pub async fn read(&self) -> io::Result<Bytes> {
        let mut buf = BytesMut::zeroed(CHUNK);
        loop {
            let mut guard = self.inner.readable().await?;
            match guard
                .try_io(|fd| nix::unistd::read(fd.as_raw_fd(), &mut buf).map_err(io::Error::from))
            {
                Ok(Ok(n)) => {
                    buf.truncate(n);
                    return Ok(buf.freeze());
                }
                Ok(Err(e)) if self.pty && e.raw_os_error() == Some(libc::EIO) => {
                    return Ok(Bytes::new())
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// Write all of `data`.
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.inner.writable().await?;
            match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(io::Error::from))
            {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.inner.get_ref().as_fd()
    }
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL).map_err(io::Error::from)?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags)).map_err(io::Error::from)?;
    Ok(())
}

/// Copy a descriptor to the client until its end (or the client's), then close the stream.
pub async fn copy_out(fd: Arc<Fd>, mut out: Outbound) {
    loop {
        match fd.read().await {
            Ok(chunk) if chunk.is_empty() => break,
            Ok(chunk) => {
                if out.send(chunk).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "reading a stream's descriptor");
                break;
            }
        }
    }
    out.close().await;
}

/// Copy the client's bytes into a descriptor until the client closes its side; this copy's
/// reference to the descriptor goes then (a pipe closes; a pty master stays open while the
/// output shares it).
pub async fn copy_in(mut input: Inbound, fd: Arc<Fd>) {
    while let Some(chunk) = input.recv().await {
        if let Err(e) = fd.write_all(&chunk).await {
            tracing::debug!(error = %e, "writing the client's input");
            break;
        }
    }
}
