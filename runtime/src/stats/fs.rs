//! A container's writable layer: the bytes and inodes its overlay upper dir holds, counted
//! as `du` does (allocated blocks, each inode once), without following symlinks or
//! crossing into another filesystem.
//!
//! The walk costs one `fstatat` per entry, so a layer with many files is expensive to
//! measure on every stats call (kubelet asks every 10 s, and more when someone reads its
//! summary API). Each measurement is kept for a while that grows with what it cost
//! ([`ttl_for`]): a small layer is measured again after a second, a layer that took 100 ms to
//! walk only every 5 s, so the walks never take more than ~2% of a thread.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How much of a writable layer is used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerUsage {
    /// Unix nanoseconds when it was measured (older than the call when it came from the
    /// cache).
    pub timestamp: i64,
    /// A directory on the filesystem the layer lives on, for kubelet to find its capacity.
    pub mountpoint: PathBuf,
    pub used_bytes: u64,
    pub inodes_used: u64,
}

/// The shortest time a measurement is reused.
const MIN_TTL: Duration = Duration::from_secs(1);
/// The longest: a layer so large that a walk takes more than 0.6 s is still measured twice
/// a minute.
const MAX_TTL: Duration = Duration::from_secs(30);
/// A measurement is reused for this many times what it cost.
const COST_FACTOR: u32 = 50;

/// How long a measurement that took `cost` stays good.
pub(crate) fn ttl_for(cost: Duration) -> Duration {
    cost.saturating_mul(COST_FACTOR).clamp(MIN_TTL, MAX_TTL)
}

/// Bytes (allocated blocks × 512) and inodes under `root`, root included. Symlinks are
/// counted, never followed; directories on another device (a mount inside the tree) are
/// neither counted nor entered; a hard-linked file counts once. The container chose this
/// tree: the walk is fd-relative and iterative (any depth), and entries that vanish during
/// the walk (the container deletes files while we count) or cannot be read are skipped.
pub(crate) fn disk_usage(root: &Path) -> Result<(u64, u64)> {
    let usage = crate::fstree::disk_usage(root).map_err(Error::io("measuring", root))?;
    Ok((usage.bytes, usage.inodes))
}

struct Cached {
    usage: LayerUsage,
    taken: Instant,
    ttl: Duration,
}

/// The last measurement of each container's layer, by container id.
#[derive(Default)]
pub(crate) struct LayerCache {
    entries: Mutex<HashMap<String, Cached>>,
}

impl LayerCache {
    /// The usage of `upper` (container `id`'s upper dir): the cached measurement while it
    /// is fresh, else a new walk. `mountpoint` is reported with it.
    pub(crate) fn usage(&self, id: &str, upper: &Path, mountpoint: &Path) -> Result<LayerUsage> {
        let now = Instant::now();
        if let Some(hit) = self.lock().get(id) {
            if now.duration_since(hit.taken) < hit.ttl {
                return Ok(hit.usage.clone());
            }
        }
        // Walked without the lock: other containers' lookups don't wait on this one.
        let (used_bytes, inodes_used) = disk_usage(upper)?;
        let usage = LayerUsage {
            timestamp: crate::clock::now_nanos(),
            mountpoint: mountpoint.to_path_buf(),
            used_bytes,
            inodes_used,
        };
        let cost = now.elapsed();
        self.lock().insert(
            id.to_string(),
            Cached {
                usage: usage.clone(),
                taken: Instant::now(),
                ttl: ttl_for(cost),
            },
        );
        Ok(usage)
    }

    /// Forget every container not in `live`.
    pub(crate) fn retain(&self, live: &HashSet<&str>) {
        self.lock().retain(|id, _| live.contains(id.as_str()));
    }

    pub(crate) fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        // A panic elsewhere while holding it leaves only a cache behind: still usable.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_blocks_and_inodes_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("upper");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/big"), vec![1u8; 1 << 20]).unwrap();
        std::fs::write(root.join("small"), b"x").unwrap();
        std::fs::hard_link(root.join("small"), root.join("a/small-again")).unwrap();
        // A symlink to something big outside: counted as a link, never followed.
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("huge"), vec![1u8; 4 << 20]).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();

        let (bytes, inodes) = disk_usage(&root).unwrap();
        // upper, a, a/b, big, small (once), link.
        assert_eq!(inodes, 6);
        assert!(bytes >= 1 << 20, "{bytes}");
        assert!(bytes < 4 << 20, "followed the symlink: {bytes}");

        // A file's growth shows.
        std::fs::write(root.join("more"), vec![1u8; 2 << 20]).unwrap();
        let (after, inodes_after) = disk_usage(&root).unwrap();
        assert!(after >= bytes + (2 << 20), "{bytes} → {after}");
        assert_eq!(inodes_after, 7);
    }

    #[test]
    fn a_missing_root_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = disk_usage(&dir.path().join("gone")).unwrap_err();
        assert!(err.to_string().contains("gone"), "{err}");
    }

    #[test]
    fn ttl_grows_with_cost_within_bounds() {
        assert_eq!(ttl_for(Duration::from_micros(50)), MIN_TTL);
        assert_eq!(ttl_for(Duration::from_millis(100)), Duration::from_secs(5));
        assert_eq!(ttl_for(Duration::from_secs(10)), MAX_TTL);
    }

    #[test]
    fn cache_reuses_a_fresh_measurement_and_forgets() {
        let dir = tempfile::tempdir().unwrap();
        let upper = dir.path().join("upper");
        std::fs::create_dir(&upper).unwrap();
        let cache = LayerCache::default();
        let first = cache.usage("c1", &upper, dir.path()).unwrap();
        assert_eq!(first.mountpoint, dir.path());
        std::fs::write(upper.join("f"), vec![1u8; 1 << 20]).unwrap();
        // Within the TTL: the same answer, timestamp included.
        let again = cache.usage("c1", &upper, dir.path()).unwrap();
        assert_eq!(again, first);
        cache.usage("c2", &upper, dir.path()).unwrap();
        assert_eq!(cache.len(), 2);
        cache.retain(&["c2"].into_iter().collect());
        assert_eq!(cache.len(), 1);
        cache.forget("c2");
        assert_eq!(cache.len(), 0);
        // Forgotten: measured anew, the new file counted.
        let fresh = cache.usage("c1", &upper, dir.path()).unwrap();
        assert!(
            fresh.used_bytes >= first.used_bytes + (1 << 20),
            "{first:?} → {fresh:?}"
        );
    }
}
