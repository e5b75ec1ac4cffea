//! The cgroup2 tree: the whole of a Unified host, and the `unified` mount of a Hybrid one.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::stats::{parse_keyed, read_limit, read_u64, CpuStats, MemoryStats, PidsStats, Stats};
use super::{fs, Result};

/// The controllers a Unified host enables in every ancestor of our cgroups: the ones
/// [`super::Resources`] and [`Stats`] use, plus io for the stats to come.
pub(crate) const MANAGED: &[&str] = &["cpu", "cpuset", "hugetlb", "io", "memory", "pids"];

/// The directories from `root` down to the parent of `root/rel`, top first.
fn ancestors(root: &Path, rel: &str) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let comps: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
    let mut dir = root.to_path_buf();
    for c in comps.iter().take(comps.len().saturating_sub(1)) {
        dir.push(c);
        out.push(dir.clone());
    }
    out
}

/// The controllers listed in a cgroup's `cgroup.controllers` (empty if absent).
pub(crate) fn controllers(dir: &Path) -> Result<BTreeSet<String>> {
    let text = fs::read_opt(&dir.join("cgroup.controllers"))?.unwrap_or_default();
    Ok(text.split_whitespace().map(str::to_string).collect())
}

/// Enables `wanted` (those available) in `cgroup.subtree_control` of every ancestor of
/// `root/rel`, so that `rel` gets their files. Best effort: a controller the kernel refuses
/// to enable (a parent with processes in it, a threaded subtree) shows up later as
/// missing in the leaf's `cgroup.controllers`, and a limit that needs it fails there,
/// naming it.
pub(crate) fn enable_controllers(root: &Path, rel: &str, wanted: &[&str]) -> Result<()> {
    for dir in ancestors(root, rel) {
        let available = controllers(&dir)?;
        let control = dir.join("cgroup.subtree_control");
        let enabled: BTreeSet<String> = fs::read_opt(&control)?
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let missing: Vec<&str> = wanted
            .iter()
            .copied()
            .filter(|c| available.contains(*c) && !enabled.contains(*c))
            .collect();
        if missing.is_empty() {
            continue;
        }
        let all: Vec<String> = missing.iter().map(|c| format!("+{c}")).collect();
        if fs::write(&control, &all.join(" ")).is_err() {
            // One refusal fails the whole write; take them one at a time.
            for c in missing {
                if let Err(e) = fs::write(&control, &format!("+{c}")) {
                    tracing::debug!(controller = c, error = %e, "cgroup controller not enabled");
                }
            }
        }
    }
    Ok(())
}

/// mkdir -p, with the managed controllers enabled on the way down.
pub(crate) fn create(root: &Path, rel: &str) -> Result<()> {
    fs::mkdir_all(&root.join(rel))?;
    enable_controllers(root, rel, MANAGED)
}

/// Sets or clears `cgroup.freeze`; false when the file is absent (the root, old kernels).
pub(crate) fn freeze(dir: &Path, frozen: bool) -> Result<bool> {
    let path = dir.join("cgroup.freeze");
    if !path.exists() {
        return Ok(false);
    }
    fs::write(&path, if frozen { "1" } else { "0" })?;
    Ok(true)
}

/// Writes `cgroup.kill` (kernel ≥ 5.14): SIGKILL to every process of the subtree.
/// False when the file is absent.
pub(crate) fn cgroup_kill(dir: &Path) -> Result<bool> {
    let path = dir.join("cgroup.kill");
    if !path.exists() {
        return Ok(false);
    }
    fs::write(&path, "1")?;
    Ok(true)
}

pub(crate) fn stats(dir: &Path) -> Result<Stats> {
    let mut s = Stats::default();

    if let Some(text) = fs::read_opt(&dir.join("cpu.stat"))? {
        let m = parse_keyed(&text);
        let us = |k: &str| m.get(k).map(|v| v.saturating_mul(1000));
        s.cpu = CpuStats {
            usage_ns: us("usage_usec"),
            user_ns: us("user_usec"),
            system_ns: us("system_usec"),
            nr_periods: m.get("nr_periods").copied(),
            nr_throttled: m.get("nr_throttled").copied(),
            throttled_ns: us("throttled_usec"),
        };
    }

    let usage = read_u64(&dir.join("memory.current"))?;
    if usage.is_some() {
        let stat = fs::read_opt(&dir.join("memory.stat"))?.unwrap_or_default();
        let m = parse_keyed(&stat);
        let events = fs::read_opt(&dir.join("memory.events"))?.unwrap_or_default();
        let mut mem = MemoryStats {
            usage_bytes: usage,
            rss_bytes: m.get("anon").copied(),
            cache_bytes: m.get("file").copied(),
            page_faults: m.get("pgfault").copied(),
            major_page_faults: m.get("pgmajfault").copied(),
            limit_bytes: read_limit(&dir.join("memory.max"))?,
            oom_kills: parse_keyed(&events).get("oom_kill").copied(),
            ..Default::default()
        };
        mem.set_working_set(m.get("inactive_file").copied());
        s.memory = mem;
    }

    s.pids = PidsStats {
        current: read_u64(&dir.join("pids.current"))?,
        limit: read_limit(&dir.join("pids.max"))?,
    };
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestors_stop_above_the_leaf() {
        let got = ancestors(Path::new("/r"), "a/b/c");
        let want: Vec<PathBuf> = ["/r", "/r/a", "/r/a/b"].iter().map(PathBuf::from).collect();
        assert_eq!(got, want);
        assert_eq!(ancestors(Path::new("/r"), "a"), vec![PathBuf::from("/r")]);
    }
}
