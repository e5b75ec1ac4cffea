//! The runtime's error type. Every error carries a [`ErrorKind`]; `cri-server` maps kinds to
//! gRPC codes in exactly one place, so handlers never pick a code themselves.

use std::path::PathBuf;

use crate::image::registry::RegistryError;
use crate::image::unpack::UnpackError;

/// What went wrong, in the terms a CRI client acts on (containerd's errdefs, narrowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed; `field` names the offending request field.
    InvalidArgument {
        field: String,
    },
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    /// A dependency (a registry, the kernel) is not reachable or refused for now.
    Unavailable,
    /// The registry wants credentials we do not have, or rejected the ones we sent.
    Unauthenticated,
    /// Content failed verification (digest or size mismatch, hostile layer).
    DataLoss,
    /// The operation's own time limit passed (an ExecSync timeout).
    DeadlineExceeded,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{what} already exists")]
    AlreadyExists { what: String },
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error(transparent)]
    Network(#[from] network::Error),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Cgroup(#[from] crate::cgroups::CgroupError),
    #[error(transparent)]
    Shim(#[from] crate::shim_client::ShimError),
    #[error("unpacking layer {digest}: {source}")]
    Unpack {
        digest: String,
        #[source]
        source: UnpackError,
    },
    #[error("content {digest} failed verification: {reason}")]
    Verification { digest: String, reason: String },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("metadata store: {0}")]
    Store(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidArgument { field, .. } => ErrorKind::InvalidArgument {
                field: field.clone(),
            },
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Error::FailedPrecondition(_) => ErrorKind::FailedPrecondition,
            Error::Unavailable(_) => ErrorKind::Unavailable,
            Error::DeadlineExceeded(_) => ErrorKind::DeadlineExceeded,
            Error::Network(e) => match e.kind() {
                network::ErrorKind::InvalidArgument { field } => {
                    ErrorKind::InvalidArgument { field }
                }
                network::ErrorKind::NotFound => ErrorKind::NotFound,
                network::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
                network::ErrorKind::Unavailable => ErrorKind::Unavailable,
                network::ErrorKind::Internal => ErrorKind::Internal,
            },
            Error::Registry(e) => e.kind(),
            Error::Cgroup(e) => e.kind(),
            Error::Shim(e) => e.kind(),
            Error::Unpack { .. } | Error::Verification { .. } => ErrorKind::DataLoss,
            Error::Io { .. } | Error::Store(_) | Error::Internal(_) => ErrorKind::Internal,
        }
    }

    /// A CNI plugin's own failure (its DEL, say): what a stop reports and a removal
    /// outlives.
    pub fn is_cni_plugin_failure(&self) -> bool {
        matches!(self, Error::Network(e) if e.is_plugin_failure())
    }

    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error and its causes on one line (`a: b: c`), a cause left out when the message above
/// already carries it, so that a client sees why, not only what.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let next = c.to_string();
        if !s.contains(&next) {
            s.push_str(": ");
            s.push_str(&next);
        }
        cur = c.source();
    }
    s
}
