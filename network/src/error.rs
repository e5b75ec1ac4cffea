//! The crate's error type and its kinds (containerd's errdefs, as DESIGN.md asks).

use std::io;

/// What a caller should make of an [`Error`]; the runtime maps it to a gRPC code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// A bad request; `field` names what was wrong.
    InvalidArgument {
        field: String,
    },
    NotFound,
    AlreadyExists,
    /// The kernel or the store refused; retrying later may help.
    Unavailable,
    /// A bug.
    Internal,
}

/// Every failure of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("no free address left in {range}")]
    Exhausted { range: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// An rtnetlink request failed; `errno` is set when the kernel answered with one.
    #[error("netlink: {context}: {message}")]
    Netlink {
        context: String,
        errno: Option<i32>,
        message: String,
    },
    /// An nf_tables request failed.
    #[error("nftables: {context}: {source}")]
    Nftables {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("ipam store: {0}")]
    Store(String),
    /// A failed operation whose undo failed too: both are kept.
    #[error("{cause}; cleanup also failed: {cleanup}")]
    Cleanup { cause: Box<Error>, cleanup: String },
    #[error("internal: {0}")]
    Internal(String),
    /// A CNI plugin failed (its error code, message and stderr are in `message`).
    #[error("CNI plugin {plugin} {op}: {message}")]
    Plugin {
        plugin: String,
        op: String,
        message: String,
    },
    /// CNI mode has no usable network config yet.
    #[error("pod network is not ready: {0}")]
    NotReady(String),
}

/// This crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The kind that decides the gRPC code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidArgument { field, .. } => ErrorKind::InvalidArgument {
                field: field.clone(),
            },
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::AlreadyExists(_) => ErrorKind::AlreadyExists,
            Error::Exhausted { .. } | Error::Store(_) => ErrorKind::Unavailable,
            Error::Io { source, .. } | Error::Nftables { source, .. } => {
                errno_kind(source.raw_os_error())
            }
            Error::Netlink { errno, .. } => errno_kind(*errno),
            Error::Cleanup { cause, .. } => cause.kind(),
            Error::Internal(_) => ErrorKind::Internal,
            Error::Plugin { .. } | Error::NotReady(_) => ErrorKind::Unavailable,
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }

    pub(crate) fn nix(context: impl Into<String>) -> impl FnOnce(nix::Error) -> Error {
        let context = context.into();
        move |errno| Error::Io {
            context,
            source: io::Error::from(errno),
        }
    }

    pub(crate) fn store<E: Into<redb::Error>>(err: E) -> Error {
        Error::Store(err.into().to_string())
    }

    /// Whether a CNI plugin's own failure is the cause (what a pod removal may leave
    /// behind, logged, rather than be blocked by forever).
    pub fn is_plugin_failure(&self) -> bool {
        match self {
            Error::Plugin { .. } => true,
            Error::Cleanup { cause, .. } => cause.is_plugin_failure(),
            _ => false,
        }
    }

    /// The errno the kernel answered with, if any.
    pub(crate) fn errno(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } | Error::Nftables { source, .. } => source.raw_os_error(),
            Error::Netlink { errno, .. } => *errno,
            _ => None,
        }
    }

    /// Attach the failure of an undo step to this error.
    pub(crate) fn with_cleanup(self, cleanup: Vec<Error>) -> Error {
        if cleanup.is_empty() {
            return self;
        }
        let cleanup = cleanup
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        Error::Cleanup {
            cause: Box::new(self),
            cleanup,
        }
    }
}

fn errno_kind(errno: Option<i32>) -> ErrorKind {
    match errno {
        Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ESRCH) => ErrorKind::NotFound,
        Some(libc::EEXIST) => ErrorKind::AlreadyExists,
        _ => ErrorKind::Unavailable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let cases: Vec<(Error, ErrorKind)> = vec![
            (
                Error::invalid("sysctls", "bad"),
                ErrorKind::InvalidArgument {
                    field: "sysctls".into(),
                },
            ),
            (
                Error::Netlink {
                    context: "x".into(),
                    errno: Some(libc::EEXIST),
                    message: "exists".into(),
                },
                ErrorKind::AlreadyExists,
            ),
            (
                Error::Exhausted {
                    range: "10.0.0.0/29".into(),
                },
                ErrorKind::Unavailable,
            ),
            (
                Error::NotFound("x".into()).with_cleanup(vec![Error::Internal("y".into())]),
                ErrorKind::NotFound,
            ),
        ];
        for (err, kind) in cases {
            assert_eq!(err.kind(), kind, "{err}");
        }
    }
}
