//! Disk usage of a tree, as `du` counts it: allocated blocks, each inode once.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
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

pub(crate) fn measure(root: &Path) -> Result<FsUsage> {
    let mut seen = HashSet::new();
    let mut bytes = 0u64;
    let mut inodes = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            // A snapshot removed while we walk is not an error.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("reading", dir)(e)),
        };
        for entry in entries.flatten() {
            let Ok(md) = entry.metadata() else { continue };
            if seen.insert((md.dev(), md.ino())) {
                bytes += md.blocks() * 512;
                inodes += 1;
            }
            if md.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    let timestamp = crate::clock::now_nanos();
    Ok(FsUsage {
        mountpoint: root.to_path_buf(),
        used_bytes: bytes,
        inodes_used: inodes,
        timestamp,
    })
}
