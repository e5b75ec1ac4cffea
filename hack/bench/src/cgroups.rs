//! The cgroups the bench names as its pods' `cgroup_parent`: where to find them (every
//! mounted hierarchy, v1, v2 or both) and removing them once the pods are gone. Runtimes
//! remove what they create beneath a cgroup parent, not the parent itself (kubelet makes and
//! removes pod cgroups), so the bench does.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Mount points of every cgroup hierarchy (`cgroup` and `cgroup2`) in our mount namespace.
pub fn mounts() -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    text.lines().filter_map(parse_mountinfo_line).collect()
}

/// The mount point of a mountinfo line if its filesystem is a cgroup one.
fn parse_mountinfo_line(line: &str) -> Option<PathBuf> {
    let (left, right) = line.split_once(" - ")?;
    let fstype = right.split_whitespace().next()?;
    if fstype != "cgroup" && fstype != "cgroup2" {
        return None;
    }
    let mount_point = left.split_whitespace().nth(4)?;
    Some(PathBuf::from(unescape(mount_point)))
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = b[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            if let Ok(c) = u8::try_from(v) {
                out.push(c);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn under(mount: &Path, cgroup: &str) -> PathBuf {
    mount.join(cgroup.trim_start_matches('/'))
}

/// Removes the cgroup `path` (absolute, e.g. `/corral-bench/r1-pod0`) and everything beneath
/// it in every hierarchy, deepest first. A cgroup that still holds processes cannot be
/// removed: retried briefly (processes just killed take a moment to leave), then reported.
pub fn remove_tree(path: &str) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    for m in mounts() {
        let dir = under(&m, path);
        if dir.is_dir() {
            if let Err(e) = remove_dir_deep(&dir) {
                failed.push(format!("{}: {e}", dir.display()));
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("cgroups left behind: {}", failed.join("; "))
    }
}

fn remove_dir_deep(dir: &Path) -> std::io::Result<()> {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_dir_deep(&e.path())?;
            }
        }
    }
    let mut wait = Duration::from_millis(5);
    for _ in 0..12 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(16) => {
                // EBUSY: processes still leaving.
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_millis(500));
            }
            Err(e) => return Err(e),
        }
    }
    std::fs::remove_dir(dir)
}

/// Removes the cgroup `path` in every hierarchy where it has no children; one try each,
/// errors ignored (a cgroup with children says EBUSY).
pub fn remove_if_empty(path: &str) {
    for m in mounts() {
        let _ = std::fs::remove_dir(under(&m, path));
    }
}

/// The names of the cgroups directly under `path`, in any hierarchy.
pub fn children(path: &str) -> Vec<String> {
    let mut names = std::collections::BTreeSet::new();
    for m in mounts() {
        if let Ok(rd) = std::fs::read_dir(under(&m, path)) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    if let Some(n) = e.file_name().to_str() {
                        names.insert(n.to_string());
                    }
                }
            }
        }
    }
    names.into_iter().collect()
}

/// Whether cgroup `path` is `parent` or beneath it.
pub fn is_within(path: &str, parent: &str) -> bool {
    let parent = parent.trim_end_matches('/');
    path == parent
        || path
            .strip_prefix(parent)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_cgroup_lines() {
        let v1 =
            "35 25 0:30 / /sys/fs/cgroup/memory rw,relatime shared:14 - cgroup cgroup rw,memory";
        let v2 = "40 25 0:35 / /sys/fs/cgroup/unified rw,relatime shared:19 - cgroup2 cgroup2 rw";
        let other = "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw";
        let spaced = r"41 25 0:36 / /mnt/a\040b rw - cgroup2 cgroup2 rw";
        assert_eq!(
            parse_mountinfo_line(v1),
            Some(PathBuf::from("/sys/fs/cgroup/memory"))
        );
        assert_eq!(
            parse_mountinfo_line(v2),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(parse_mountinfo_line(other), None);
        assert_eq!(
            parse_mountinfo_line(spaced),
            Some(PathBuf::from("/mnt/a b"))
        );
    }

    #[test]
    fn within() {
        assert!(is_within("/corral-bench/p1", "/corral-bench/p1"));
        assert!(is_within("/corral-bench/p1/abc", "/corral-bench/p1"));
        assert!(is_within("/corral-bench/p1/abc", "/corral-bench/p1/"));
        assert!(!is_within("/corral-bench/p10", "/corral-bench/p1"));
        assert!(!is_within("/other", "/corral-bench/p1"));
    }
}
