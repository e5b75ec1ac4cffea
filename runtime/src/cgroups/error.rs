//! The cgroup manager's error, folded into [`crate::Error`] with its kind kept.

use std::io;
use std::path::PathBuf;

use crate::error::ErrorKind;

/// The request field that names a pod's or container's cgroup.
pub const PATH_FIELD: &str = "linux.cgroup_parent";

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// The cgroup path is not one we accept (see [`super::validate_path`]).
    #[error("invalid {PATH_FIELD} {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    /// A resource value is malformed or contradicts another one.
    #[error("invalid {field}: {reason}")]
    InvalidResource { field: &'static str, reason: String },
    /// The controller is there but this kernel lacks the file a limit needs
    /// (`memory.memsw.limit_in_bytes` without swap accounting).
    #[error("{field} needs {file}, which this kernel does not offer")]
    Unsupported { file: String, field: &'static str },
    /// No cgroup filesystem is mounted at all.
    #[error("no cgroup hierarchy is mounted")]
    NoHierarchy,
    #[error("cgroup {path} not found")]
    NotFound { path: String },
    /// The cgroup still has processes or child cgroups.
    #[error("cgroup {path} is busy: {reason}")]
    Busy { path: String, reason: String },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("parsing {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    /// The kernel refused a device rule (EPERM: the parent cgroup does not allow it).
    #[error("writing the device rule {rule:?} to {path}: {source}")]
    DeviceRule {
        path: PathBuf,
        rule: String,
        #[source]
        source: io::Error,
    },
    /// A `bpf(2)` step of the v2 device filter failed.
    #[error("device filter: {op} on {path}: {source}{log}")]
    Bpf {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
        /// The verifier's log, when it rejected the program.
        log: String,
    },
}

impl CgroupError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            CgroupError::InvalidPath { .. } => ErrorKind::InvalidArgument {
                field: PATH_FIELD.to_string(),
            },
            CgroupError::InvalidResource { field, .. } => ErrorKind::InvalidArgument {
                field: (*field).to_string(),
            },
            CgroupError::NotFound { .. } => ErrorKind::NotFound,
            CgroupError::Unsupported { .. }
            | CgroupError::NoHierarchy
            | CgroupError::Busy { .. } => ErrorKind::FailedPrecondition,
            CgroupError::DeviceRule { source, .. } | CgroupError::Bpf { source, .. }
                if source.raw_os_error() == Some(libc::EPERM) =>
            {
                ErrorKind::FailedPrecondition
            }
            CgroupError::Io { .. }
            | CgroupError::Parse { .. }
            | CgroupError::DeviceRule { .. }
            | CgroupError::Bpf { .. } => ErrorKind::Internal,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| CgroupError::Io { op, path, source }
    }

    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, CgroupError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}
