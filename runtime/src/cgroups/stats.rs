//! What a cgroup has used: the numbers kubelet's summary API and the CRI stats calls need.
//!
//! Every figure is an `Option`: `None` when its controller is not there (not mounted, not
//! enabled), so a missing controller never fails a whole stats call. The structs are
//! `#[non_exhaustive]` so fields can be added (io, hugetlb, pressure) without breaking readers.

use std::collections::BTreeMap;
use std::path::Path;

use super::{fs, CgroupError, Result};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    pub cpu: CpuStats,
    pub memory: MemoryStats,
    pub pids: PidsStats,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CpuStats {
    /// Total CPU time, nanoseconds (v1 `cpuacct.usage`, v2 `cpu.stat usage_usec` × 1000).
    pub usage_ns: Option<u64>,
    pub user_ns: Option<u64>,
    pub system_ns: Option<u64>,
    /// CFS bandwidth periods elapsed, periods throttled, and time throttled.
    pub nr_periods: Option<u64>,
    pub nr_throttled: Option<u64>,
    pub throttled_ns: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryStats {
    /// v1 `memory.usage_in_bytes`, v2 `memory.current`.
    pub usage_bytes: Option<u64>,
    /// Usage minus inactive file pages, as kubelet defines the working set.
    pub working_set_bytes: Option<u64>,
    /// Anonymous memory (v1 `total_rss`, v2 `anon`).
    pub rss_bytes: Option<u64>,
    /// Page cache (v1 `total_cache`, v2 `file`).
    pub cache_bytes: Option<u64>,
    pub page_faults: Option<u64>,
    pub major_page_faults: Option<u64>,
    /// The limit; `None` when unlimited or unknown.
    pub limit_bytes: Option<u64>,
    /// Processes killed by the OOM killer in this cgroup (v1 `memory.oom_control oom_kill`,
    /// v2 `memory.events oom_kill`).
    pub oom_kills: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PidsStats {
    pub current: Option<u64>,
    /// `None` when unlimited.
    pub limit: Option<u64>,
}

impl MemoryStats {
    pub(crate) fn set_working_set(&mut self, inactive_file: Option<u64>) {
        self.working_set_bytes = self
            .usage_bytes
            .map(|u| u.saturating_sub(inactive_file.unwrap_or(0)));
    }
}

/// A flat-keyed file (`key value` lines: `memory.stat`, `cpu.stat`, `memory.events`).
/// Lines that are not `key <u64>` are skipped.
pub(crate) fn parse_keyed(text: &str) -> BTreeMap<&str, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (k, v) = (it.next()?, it.next()?);
            Some((k, v.parse().ok()?))
        })
        .collect()
}

/// The value of `key` in a flat-keyed file, without building the whole map.
pub(crate) fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next()? == key)
            .then(|| it.next()?.parse().ok())
            .flatten()
    })
}

/// v1 reports "no limit" as a huge page-aligned number (`PAGE_COUNTER_MAX` pages).
pub(crate) const V1_UNLIMITED: u64 = 1 << 62;

/// A single-value file: a number, or "max" (v2) / a huge number (v1) for unlimited.
/// Missing file → Ok(None); "max" → Ok(None).
pub(crate) fn read_limit(path: &Path) -> Result<Option<u64>> {
    let Some(text) = fs::read_opt(path)? else {
        return Ok(None);
    };
    let t = text.trim();
    if t == "max" {
        return Ok(None);
    }
    let v = parse_u64(path, t)?;
    Ok((v < V1_UNLIMITED).then_some(v))
}

/// A single-number file; missing → None.
pub(crate) fn read_u64(path: &Path) -> Result<Option<u64>> {
    match fs::read_opt(path)? {
        Some(text) => parse_u64(path, text.trim()).map(Some),
        None => Ok(None),
    }
}

fn parse_u64(path: &Path, t: &str) -> Result<u64> {
    t.parse().map_err(|e| CgroupError::Parse {
        path: path.to_path_buf(),
        reason: format!("{t:?}: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_files() {
        let m =
            parse_keyed("usage_usec 1500\nuser_usec 1000\nbogus\nsome_avg10 x\n\nnr_periods 3\n");
        assert_eq!(m.get("usage_usec"), Some(&1500));
        assert_eq!(m.get("nr_periods"), Some(&3));
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn limits() {
        let dir = tempfile::tempdir().unwrap();
        for (text, want) in [
            ("max\n", None),
            ("67108864\n", Some(67_108_864)),
            ("9223372036854771712\n", None),
            ("0\n", Some(0)),
        ] {
            let p = dir.path().join("f");
            std::fs::write(&p, text).unwrap();
            assert_eq!(read_limit(&p).unwrap(), want, "{text:?}");
        }
        assert_eq!(read_limit(&dir.path().join("absent")).unwrap(), None);
        std::fs::write(dir.path().join("bad"), "lots").unwrap();
        assert!(matches!(
            read_limit(&dir.path().join("bad")),
            Err(CgroupError::Parse { .. })
        ));
    }

    #[test]
    fn working_set_is_usage_minus_inactive_file() {
        let mut m = MemoryStats {
            usage_bytes: Some(100),
            ..Default::default()
        };
        m.set_working_set(Some(30));
        assert_eq!(m.working_set_bytes, Some(70));
        m.set_working_set(Some(300));
        assert_eq!(m.working_set_bytes, Some(0));
        m.set_working_set(None);
        assert_eq!(m.working_set_bytes, Some(100));
    }
}
