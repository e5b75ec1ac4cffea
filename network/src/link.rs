//! The rtnetlink facade: a connection per network namespace and the link verbs.
//!
//! This module and its siblings `bridge`, `veth`, `addr` and `route` are the only users
//! of `rtnetlink` and `netlink-packet-route`; the rest of the crate sees domain verbs.
//! A connection for a pod's namespace is built from a socket created on a thread that
//! entered that namespace (see [`crate::netns`]): a netlink socket keeps the namespace
//! it was created in.

use std::os::fd::{FromRawFd, IntoRawFd};
use std::path::Path;

use futures::TryStreamExt;
use rtnetlink::packet_route::link::LinkMessage;
use rtnetlink::{Handle, LinkUnspec};

use crate::error::{Error, Result};

/// The loopback device's index, in every network namespace.
const LOOPBACK_INDEX: u32 = 1;

/// An rtnetlink connection; its background task ends when this is dropped.
pub(crate) struct Netlink {
    pub(crate) handle: Handle,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Netlink {
    /// A connection in the caller's (the host's) network namespace.
    pub(crate) fn connect() -> Result<Self> {
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(Error::io("open rtnetlink socket"))?;
        Ok(Netlink {
            handle,
            task: tokio::spawn(conn),
        })
    }

    /// A connection that talks to the network namespace pinned at `netns`.
    pub(crate) async fn connect_in(netns: &Path) -> Result<Self> {
        let fd = crate::netns::route_socket_in(netns).await?;
        Self::from_fd(fd)
    }

    #[allow(unsafe_code)]
    fn from_fd(fd: std::os::fd::OwnedFd) -> Result<Self> {
        // SAFETY: `fd` is an open NETLINK_ROUTE socket that we own; ownership moves into
        // the TokioSocket. Its constructor sets O_NONBLOCK and registers the fd with the
        // tokio reactor, which exists because we are called from async code on tokio.
        let socket = unsafe { rtnetlink::sys::TokioSocket::from_raw_fd(fd.into_raw_fd()) };
        let (conn, handle, _) = rtnetlink::from_socket(socket);
        Ok(Netlink {
            handle,
            task: tokio::spawn(conn),
        })
    }

    /// The index of the link called `name`, or None.
    pub(crate) async fn link_index(&self, name: &str) -> Result<Option<u32>> {
        Ok(self.link_by_name(name).await?.map(|m| m.header.index))
    }

    pub(crate) async fn link_by_name(&self, name: &str) -> Result<Option<LinkMessage>> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match links.try_next().await {
            Ok(link) => Ok(link),
            Err(e) if errno_of(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(nl_err(format!("get link {name}"))(e)),
        }
    }

    pub(crate) async fn set_up(&self, index: u32) -> Result<()> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(nl_err(format!("set link {index} up")))
    }

    pub(crate) async fn loopback_up(&self) -> Result<()> {
        self.set_up(LOOPBACK_INDEX).await
    }

    /// Delete the link called `name`; Ok when there is none.
    pub(crate) async fn delete_link(&self, name: &str) -> Result<()> {
        let Some(index) = self.link_index(name).await? else {
            return Ok(());
        };
        match self.handle.link().del(index).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno_of(&e) == Some(libc::ENODEV) => Ok(()),
            Err(e) => Err(nl_err(format!("delete link {name}"))(e)),
        }
    }
}

/// Whether a link message says the link is administratively up.
pub(crate) fn is_up(link: &LinkMessage) -> bool {
    link.header
        .flags
        .contains(rtnetlink::packet_route::link::LinkFlags::Up)
}

/// The errno in an rtnetlink error, if the kernel sent one.
pub(crate) fn errno_of(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) if m.raw_code() != 0 => Some(m.raw_code().abs()),
        _ => None,
    }
}

/// Map an rtnetlink error to ours, naming what we were doing.
pub(crate) fn nl_err(context: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> Error {
    let context = context.into();
    move |e| {
        let errno = errno_of(&e);
        let message = match errno {
            Some(n) => std::io::Error::from_raw_os_error(n).to_string(),
            None => e.to_string(),
        };
        Error::Netlink {
            context,
            errno,
            message,
        }
    }
}
