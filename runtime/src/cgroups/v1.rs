//! cgroup v1 hierarchies: one per mounted controller (or group of co-mounted ones).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use super::stats::{parse_keyed, read_limit, read_u64, CpuStats, MemoryStats, PidsStats, Stats};
use super::{fs, Result};

/// mkdir -p in every hierarchy. In cpuset, a new cgroup starts with empty `cpuset.cpus`
/// and `cpuset.mems` and refuses tasks until they are set, so each level without them gets
/// its parent's, top down.
pub(crate) fn create(v1: &BTreeMap<String, PathBuf>, mounts: &[&Path], rel: &str) -> Result<()> {
    for mount in mounts {
        fs::mkdir_all(&mount.join(rel))?;
    }
    if let Some(root) = v1.get("cpuset") {
        let mut dir = root.clone();
        for comp in rel.split('/').filter(|c| !c.is_empty()) {
            let parent = dir.clone();
            dir.push(comp);
            for file in ["cpuset.cpus", "cpuset.mems"] {
                copy_if_empty(&parent.join(file), &dir.join(file))?;
            }
        }
    }
    Ok(())
}

fn copy_if_empty(from: &Path, to: &Path) -> Result<()> {
    let Some(current) = fs::read_opt(to)? else {
        return Ok(());
    };
    if !current.trim().is_empty() {
        return Ok(());
    }
    match fs::read_opt(from)? {
        Some(v) if !v.trim().is_empty() => fs::write(to, v.trim()),
        _ => Ok(()),
    }
}

/// Whether `memory.memsw.limit_in_bytes` must be written before `memory.limit_in_bytes`:
/// when raising, as runc decides it (the kernel wants memsw ≥ memory at every step).
pub(crate) fn swap_first(
    memory_dir: Option<&Path>,
    memory: Option<i64>,
    memsw: Option<i64>,
) -> bool {
    let memory = memory.unwrap_or(0);
    // Unlimited memory with swap unset means unlimited memsw too (see `plan_v1`).
    let memsw = memsw.filter(|s| *s != 0).or((memory < 0).then_some(-1));
    match (memory, memsw) {
        (0, _) | (_, None) => false,
        (_, Some(s)) if s < 0 => true,
        (_, Some(s)) => memory_dir
            .and_then(|d| read_u64(&d.join("memory.limit_in_bytes")).ok().flatten())
            .is_some_and(|current| current < s.unsigned_abs()),
    }
}

/// Freezes (or thaws) with the freezer controller; false when it isn't mounted or the
/// cgroup has no freezer directory. Waits briefly for FROZEN and goes on without it: a
/// task stuck in the kernel may keep the cgroup FREEZING, and the kill loop copes.
pub(crate) fn freeze(dir: Option<&Path>, frozen: bool) -> Result<bool> {
    let Some(dir) = dir else {
        return Ok(false);
    };
    let state = dir.join("freezer.state");
    if !state.exists() {
        return Ok(false);
    }
    let want = if frozen { "FROZEN" } else { "THAWED" };
    fs::write(&state, want)?;
    let deadline = Instant::now() + Duration::from_millis(100);
    while frozen && Instant::now() < deadline {
        if fs::read(&state)?.trim() == want {
            break;
        }
        thread::sleep(Duration::from_millis(1));
    }
    Ok(true)
}

/// Reads each controller's files from its own hierarchy; `dir` maps controller → the
/// cgroup's directory there.
pub(crate) fn stats(dir: impl Fn(&str) -> Option<PathBuf>) -> Result<Stats> {
    let mut s = Stats::default();

    if let Some(d) = dir("cpuacct") {
        s.cpu.usage_ns = read_u64(&d.join("cpuacct.usage"))?;
        s.cpu.user_ns = read_u64(&d.join("cpuacct.usage_user"))?;
        s.cpu.system_ns = read_u64(&d.join("cpuacct.usage_sys"))?;
    }
    if let Some(d) = dir("cpu") {
        if let Some(text) = fs::read_opt(&d.join("cpu.stat"))? {
            let m = parse_keyed(&text);
            s.cpu = CpuStats {
                nr_periods: m.get("nr_periods").copied(),
                nr_throttled: m.get("nr_throttled").copied(),
                throttled_ns: m.get("throttled_time").copied(),
                ..s.cpu
            };
        }
    }

    if let Some(d) = dir("memory") {
        let usage = read_u64(&d.join("memory.usage_in_bytes"))?;
        let stat = fs::read_opt(&d.join("memory.stat"))?.unwrap_or_default();
        let m = parse_keyed(&stat);
        let oom = fs::read_opt(&d.join("memory.oom_control"))?.unwrap_or_default();
        let mut mem = MemoryStats {
            usage_bytes: usage,
            rss_bytes: m.get("total_rss").copied(),
            cache_bytes: m.get("total_cache").copied(),
            page_faults: m.get("total_pgfault").copied(),
            major_page_faults: m.get("total_pgmajfault").copied(),
            limit_bytes: read_limit(&d.join("memory.limit_in_bytes"))?,
            oom_kills: parse_keyed(&oom).get("oom_kill").copied(),
            ..Default::default()
        };
        mem.set_working_set(m.get("total_inactive_file").copied());
        s.memory = mem;
    }

    if let Some(d) = dir("pids") {
        s.pids = PidsStats {
            current: read_u64(&d.join("pids.current"))?,
            limit: read_limit(&d.join("pids.max"))?,
        };
    }
    Ok(s)
}
