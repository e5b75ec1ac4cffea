//! The few file operations a cgroup filesystem needs, each error naming its path.
//!
//! Writes open an existing file and never create one: in cgroupfs a missing interface file
//! means the controller is not enabled there, and test fixtures behave the same way.

use std::fs;
use std::io::{self, Write as _};
use std::path::Path;

use super::{CgroupError, Result};

pub(crate) fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(CgroupError::io("read", path))
}

/// Reads a file that may legitimately be absent (a controller that is not enabled).
pub(crate) fn read_opt(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CgroupError::io("read", path)(e)),
    }
}

/// Writes `value` to an existing file in one `write(2)`, as the kernel wants.
/// (`O_TRUNC`, as runc opens them: cgroupfs ignores it, fixtures need it.)
pub(crate) fn write(path: &Path, value: &str) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(CgroupError::io("open", path))?;
    f.write_all(value.as_bytes())
        .map_err(CgroupError::io("write", path))
}

pub(crate) fn mkdir_all(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(CgroupError::io("mkdir", path))
}

/// Reads a `cgroup.procs` file: one pid a line. Pids of processes outside our pid
/// namespace read as 0 and are dropped. A missing file reads as no pids.
pub(crate) fn read_pids(path: &Path) -> Result<Vec<i32>> {
    let Some(text) = read_opt(path)? else {
        return Ok(Vec::new());
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.parse::<i32>().map_err(|e| CgroupError::Parse {
                path: path.to_path_buf(),
                reason: format!("pid {l:?}: {e}"),
            })
        })
        .filter(|p| !matches!(p, Ok(pid) if *pid <= 0))
        .collect()
}

/// Child cgroup directories of `dir` (none if `dir` is gone).
pub(crate) fn subdirs(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CgroupError::io("read dir", dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(CgroupError::io("read dir", dir))?;
        let is_dir = entry
            .file_type()
            .map_err(CgroupError::io("stat", entry.path()))?
            .is_dir();
        if is_dir {
            out.push(entry.path());
        }
    }
    Ok(out)
}
