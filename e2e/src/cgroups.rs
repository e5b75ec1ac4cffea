//! Cgroups as kubelet makes them for its pods: parents that the caller, not corrald, owns.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";

/// The directory of `path` in every mounted hierarchy (each v1 controller's, and cgroup2's,
/// be it at the root or at `unified`).
pub fn dirs(path: &str) -> Vec<PathBuf> {
    let rel = path.trim_start_matches('/');
    let root = Path::new(ROOT);
    if root.join("cgroup.procs").exists() {
        return vec![root.join(rel)];
    }
    std::fs::read_dir(root)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|h| h.join("cgroup.procs").exists())
                .map(|h| h.join(rel))
                .collect()
        })
        .unwrap_or_default()
}

/// The memory controller's directory for a cgroup path, on v1 (or hybrid) and v2 hosts.
pub fn memory_dir(path: &str) -> PathBuf {
    let rel = path.trim_start_matches('/');
    if Path::new(ROOT).join("cgroup.controllers").exists() {
        Path::new(ROOT).join(rel)
    } else {
        Path::new(ROOT).join("memory").join(rel)
    }
}

/// The child cgroups below `path`, in any hierarchy, by name.
pub fn children(path: &str) -> Vec<String> {
    let mut out: Vec<String> = dirs(path)
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|d| d.flatten())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Every cgroup below `path` at any depth, in every hierarchy.
pub fn descendants(path: &str) -> BTreeSet<PathBuf> {
    fn walk(dir: &Path, out: &mut BTreeSet<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.insert(e.path());
                walk(&e.path(), out);
            }
        }
    }
    let mut out = BTreeSet::new();
    for dir in dirs(path) {
        walk(&dir, &mut out);
    }
    out
}

/// A parent cgroup made by the test in every hierarchy, as kubelet makes its pod cgroups;
/// removed with whatever is left below it when the guard drops, even when the test failed.
pub struct KubeletParent(pub String);

impl KubeletParent {
    pub fn make(path: &str) -> std::io::Result<KubeletParent> {
        for dir in dirs(path) {
            std::fs::create_dir_all(dir)?;
        }
        Ok(KubeletParent(path.to_string()))
    }
}

impl Drop for KubeletParent {
    /// Removes what is left below the parent (deepest first: a cgroup goes only once it has
    /// no children), the parent, then its ancestors up to the path's first component while
    /// they are empty (the test's own top level).
    fn drop(&mut self) {
        let mut below: Vec<PathBuf> = descendants(&self.0).into_iter().collect();
        below.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in below {
            let _ = std::fs::remove_dir(d);
        }
        let depth = self.0.trim_start_matches('/').split('/').count();
        for dir in dirs(&self.0) {
            let mut d = dir.as_path();
            for _ in 0..depth {
                if std::fs::remove_dir(d).is_err() {
                    break;
                }
                match d.parent() {
                    Some(p) => d = p,
                    None => break,
                }
            }
        }
    }
}
