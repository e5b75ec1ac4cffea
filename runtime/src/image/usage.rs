//! Disk usage of the image store, as `du` counts it: allocated blocks, each inode once.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsUsage {
    pub mountpoint: PathBuf,
    pub used_bytes: u64,
    pub inodes_used: u64,
    /// Unix nanoseconds when measured.
    pub timestamp: i64,
}

/// The usage of everything under `root`. Snapshots are trees a layer author chose, so the
/// walk is fd-relative (any depth) and a part that cannot be read is logged and left out of
/// the totals: one broken snapshot never fails ImageFsInfo (kubelet asks all the time).
pub(crate) fn measure(root: &Path) -> Result<FsUsage> {
    let usage = crate::fstree::disk_usage(root).map_err(Error::io("measuring", root))?;
    Ok(FsUsage {
        mountpoint: root.to_path_buf(),
        used_bytes: usage.bytes,
        inodes_used: usage.inodes,
        timestamp: crate::clock::now_nanos(),
    })
}
