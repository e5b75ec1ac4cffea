//! One container's stats: its cgroup (CPU, memory, swap, processes) and its writable layer.

use std::path::Path;
use std::time::Instant;

use super::{CpuUsage, Detail, LayerUsage, MemoryUsage, ProcessUsage, SwapUsage};
use crate::cgroups::{Cgroup, CgroupMode, Stats, V1_UNLIMITED};
use crate::container::ContainerRecord;
use crate::error::ErrorKind;

/// What a container has used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerStats {
    pub id: String,
    pub cpu: CpuUsage,
    pub memory: MemoryUsage,
    /// `None` where the kernel keeps no swap accounting.
    pub swap: Option<SwapUsage>,
    /// `None` when the upper dir can't be measured (removed meanwhile).
    pub writable_layer: Option<LayerUsage>,
    pub processes: ProcessUsage,
    /// The figures only the metrics carry; read for ListPodSandboxMetrics alone (`None`
    /// from the stats calls, and when the cgroup is gone).
    pub detail: Option<Detail>,
}

/// A cgroup's figures read now, with when they were read.
pub(crate) struct CgroupRead {
    /// `None` when the cgroup is gone (the container exited and was stopped) or could not
    /// be read; every figure is then absent.
    pub stats: Option<Stats>,
    pub swap: Option<SwapUsage>,
    pub process_count: Option<u64>,
    /// Wall clock, Unix nanoseconds, for the CRI timestamps.
    pub timestamp: i64,
    /// Monotonic, for rates.
    pub at: Instant,
}

/// Reads a container's (or pod's) cgroup; `None` is one whose path is not valid. A cgroup
/// that is gone is not an error (it has no figures); one that can't be read is logged and
/// reported the same way, so one bad container never fails a list of fifty.
pub(crate) fn read_cgroup(cg: Option<&Cgroup>) -> CgroupRead {
    let stats = cg.and_then(|cg| match cg.stats() {
        Ok(s) => Some(s),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => {
            tracing::warn!(cgroup = cg.path(), error = %e, "stats: reading cgroup");
            None
        }
    });
    let at = Instant::now();
    let timestamp = crate::clock::now_nanos();
    let (swap, process_count) = match (cg, &stats) {
        (Some(cg), Some(s)) => (
            read_swap(cg, s.memory.usage_bytes, s.memory.limit_bytes, timestamp),
            s.pids
                .current
                .or_else(|| cg.pids().ok().map(|p| p.len() as u64)),
        ),
        _ => (None, None),
    };
    CgroupRead {
        stats,
        swap,
        process_count,
        timestamp,
        at,
    }
}

/// Reads only what CRI's ContainerStats carries (CPU usage, memory usage, working set,
/// limit, RSS, page faults, swap), in 4 files on v1 and 6 on cgroup2 instead of the 12 of
/// [`read_cgroup`]: each read is an open, a read and a close, 7-8 µs on a VM, and
/// ListContainerStats does this for every running container. Swap on v1 comes from
/// `memory.stat` (`total_swap`, `hierarchical_memsw_limit`), which is read anyway.
///
/// The file names follow the host's mode: on a hybrid host the memory and cpuacct
/// controllers are v1 ones (systemd binds them there), so their v1 files are read. A
/// missing file is an absent figure; a cgroup with none of them is gone.
///
/// `with_processes` adds the process count (`pids.current`, or the members of
/// `cgroup.procs` without a pids controller), which pod stats carry.
pub(crate) fn read_cgroup_lean(cg: Option<&Cgroup>, with_processes: bool) -> CgroupRead {
    let read = cg.map(|cg| match cg.mode() {
        CgroupMode::Unified => lean_v2(cg),
        CgroupMode::Legacy | CgroupMode::Hybrid => lean_v1(cg),
    });
    let at = Instant::now();
    let timestamp = crate::clock::now_nanos();
    let (stats, swap) = match read {
        Some(Ok(Lean {
            stats,
            swap_usage,
            swap_limit,
        })) if stats.cpu.usage_ns.is_some() || stats.memory.usage_bytes.is_some() => (
            Some(stats),
            swap_usage.map(|usage| SwapUsage {
                timestamp,
                usage_bytes: Some(usage),
                available_bytes: swap_limit.map(|l| l.saturating_sub(usage)),
                limit_bytes: swap_limit,
            }),
        ),
        Some(Err((path, e))) => {
            tracing::warn!(file = %path.display(), error = %e, "stats: reading cgroup");
            (None, None)
        }
        _ => (None, None),
    };
    let process_count = match (cg, &stats) {
        (Some(cg), Some(_)) if with_processes => process_count(cg),
        _ => None,
    };
    CgroupRead {
        stats,
        swap,
        process_count,
        timestamp,
        at,
    }
}

fn process_count(cg: &Cgroup) -> Option<u64> {
    cg.fs_path("pids")
        .and_then(|d| read_number(&d.join("pids.current")))
        .or_else(|| cg.pids().ok().map(|p| p.len() as u64))
}

struct Lean {
    stats: Stats,
    swap_usage: Option<u64>,
    swap_limit: Option<u64>,
}

type LeanResult = Result<Lean, (std::path::PathBuf, std::io::Error)>;

fn lean_v1(cg: &Cgroup) -> LeanResult {
    let mut stats = Stats::default();
    let mut swap = (None, None);
    if let Some(d) = cg.fs_path("cpuacct") {
        stats.cpu.usage_ns = read_opt(&d.join("cpuacct.usage"))?.and_then(|t| number(&t));
    }
    if let Some(d) = cg.fs_path("memory") {
        let m = &mut stats.memory;
        m.usage_bytes = read_opt(&d.join("memory.usage_in_bytes"))?.and_then(|t| number(&t));
        if m.usage_bytes.is_some() {
            m.limit_bytes = read_opt(&d.join("memory.limit_in_bytes"))?.and_then(|t| number(&t));
            let text = read_opt(&d.join("memory.stat"))?.unwrap_or_default();
            let k = keyed(&text);
            m.rss_bytes = k("total_rss");
            m.cache_bytes = k("total_cache");
            m.page_faults = k("total_pgfault");
            m.major_page_faults = k("total_pgmajfault");
            m.set_working_set(k("total_inactive_file"));
            // Present only with swap accounting; the limit counts memory + swap.
            swap = (
                k("total_swap"),
                k("hierarchical_memsw_limit")
                    .filter(|l| *l < V1_UNLIMITED)
                    .zip(m.limit_bytes)
                    .map(|(both, mem)| both.saturating_sub(mem)),
            );
        }
    }
    Ok(Lean {
        stats,
        swap_usage: swap.0,
        swap_limit: swap.1,
    })
}

fn lean_v2(cg: &Cgroup) -> LeanResult {
    let mut stats = Stats::default();
    let Some(d) = cg.fs_path("memory") else {
        return Ok(Lean {
            stats,
            swap_usage: None,
            swap_limit: None,
        });
    };
    let text = read_opt(&d.join("cpu.stat"))?.unwrap_or_default();
    stats.cpu.usage_ns = keyed(&text)("usage_usec").map(|us| us.saturating_mul(1000));
    let m = &mut stats.memory;
    m.usage_bytes = read_opt(&d.join("memory.current"))?.and_then(|t| number(&t));
    let mut swap = (None, None);
    if m.usage_bytes.is_some() {
        m.limit_bytes = read_opt(&d.join("memory.max"))?.and_then(|t| number(&t));
        let text = read_opt(&d.join("memory.stat"))?.unwrap_or_default();
        let k = keyed(&text);
        m.rss_bytes = k("anon");
        m.cache_bytes = k("file");
        m.page_faults = k("pgfault");
        m.major_page_faults = k("pgmajfault");
        m.set_working_set(k("inactive_file"));
        swap = (
            read_opt(&d.join("memory.swap.current"))?.and_then(|t| number(&t)),
            read_opt(&d.join("memory.swap.max"))?.and_then(|t| number(&t)),
        );
    }
    Ok(Lean {
        stats,
        swap_usage: swap.0,
        swap_limit: swap.1,
    })
}

/// A file's text; `None` when it is not there (controller absent, cgroup gone).
fn read_opt(path: &Path) -> Result<Option<String>, (std::path::PathBuf, std::io::Error)> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        // The cgroup was removed between the open and the read.
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err((path.to_path_buf(), e)),
    }
}

/// A one-number file's value; `None` for "max" and v1's unlimited.
fn number(text: &str) -> Option<u64> {
    text.trim().parse().ok().filter(|v| *v < V1_UNLIMITED)
}

/// Looks keys up in a flat-keyed file (`memory.stat`, `cpu.stat`).
fn keyed(text: &str) -> impl Fn(&str) -> Option<u64> + '_ {
    move |key| crate::cgroups::keyed_value(text, key)
}

impl CgroupRead {
    pub(crate) fn cpu(&self, usage_nano_cores: Option<u64>) -> CpuUsage {
        let c = self.stats.as_ref().map(|s| &s.cpu);
        CpuUsage {
            timestamp: self.timestamp,
            usage_core_ns: c.and_then(|c| c.usage_ns),
            usage_nano_cores,
            user_ns: c.and_then(|c| c.user_ns),
            system_ns: c.and_then(|c| c.system_ns),
            periods: c.and_then(|c| c.nr_periods),
            throttled_periods: c.and_then(|c| c.nr_throttled),
            throttled_ns: c.and_then(|c| c.throttled_ns),
        }
    }

    pub(crate) fn memory(&self) -> MemoryUsage {
        let Some(m) = self.stats.as_ref().map(|s| &s.memory) else {
            return MemoryUsage {
                timestamp: self.timestamp,
                ..Default::default()
            };
        };
        MemoryUsage {
            timestamp: self.timestamp,
            usage_bytes: m.usage_bytes,
            working_set_bytes: m.working_set_bytes,
            // As kubelet defines it: what the container may still use before the limit.
            available_bytes: match (m.limit_bytes, m.working_set_bytes) {
                (Some(limit), Some(ws)) => Some(limit.saturating_sub(ws)),
                _ => None,
            },
            rss_bytes: m.rss_bytes,
            cache_bytes: m.cache_bytes,
            page_faults: m.page_faults,
            major_page_faults: m.major_page_faults,
            limit_bytes: m.limit_bytes,
            oom_kills: m.oom_kills,
        }
    }

    pub(crate) fn processes(&self) -> ProcessUsage {
        ProcessUsage {
            timestamp: self.timestamp,
            count: self.process_count,
        }
    }
}

/// Swap used and left. cgroup2: `memory.swap.current` and `memory.swap.max`. v1 counts
/// memory + swap together (`memory.memsw.*`), so swap is that minus memory. `None` when the
/// files are not there (v1 without `swapaccount`, or no memory controller).
fn read_swap(
    cg: &Cgroup,
    mem_usage: Option<u64>,
    mem_limit: Option<u64>,
    timestamp: i64,
) -> Option<SwapUsage> {
    let dir = cg.fs_path("memory")?;
    let (usage, limit) = match cg.mode() {
        CgroupMode::Unified => (
            read_number(&dir.join("memory.swap.current"))?,
            read_number(&dir.join("memory.swap.max")),
        ),
        CgroupMode::Legacy | CgroupMode::Hybrid => {
            let memsw = read_number(&dir.join("memory.memsw.usage_in_bytes"))?;
            let memsw_limit = read_number(&dir.join("memory.memsw.limit_in_bytes"));
            (
                memsw.saturating_sub(mem_usage.unwrap_or(0)),
                // Swap may use what memsw allows beyond the memory limit.
                match (memsw_limit, mem_limit) {
                    (Some(both), Some(mem)) => Some(both.saturating_sub(mem)),
                    _ => None,
                },
            )
        }
    };
    Some(SwapUsage {
        timestamp,
        usage_bytes: Some(usage),
        available_bytes: limit.map(|l| l.saturating_sub(usage)),
        limit_bytes: limit,
    })
}

/// A one-number cgroup file; `None` when missing, unreadable, "max", or v1's unlimited.
fn read_number(path: &Path) -> Option<u64> {
    number(&std::fs::read_to_string(path).ok()?)
}

/// The writable layer's mount point for kubelet: the dir holding every container's layer
/// (`<root>/containers`), which is on the filesystem the layers use.
pub(crate) fn layers_dir(record: &ContainerRecord) -> &Path {
    record
        .layer_dir
        .parent()
        .unwrap_or(record.layer_dir.as_path())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn put(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// A cgroup2 container cgroup as the kernel fills it.
    fn v2_fixture(root: &Path, rel: &str, swap: bool) -> Cgroup {
        put(&root.join("cgroup.controllers"), "cpu memory pids");
        put(&root.join("cgroup.subtree_control"), "");
        let cg = Cgroup::with_root(&format!("/{rel}"), root).unwrap();
        cg.create().unwrap();
        let d = root.join(rel);
        put(&d.join("cgroup.procs"), "7\n9\n");
        put(
            &d.join("cpu.stat"),
            "usage_usec 2000\nuser_usec 1500\nsystem_usec 500\nnr_periods 4\nnr_throttled 1\nthrottled_usec 10\n",
        );
        put(&d.join("memory.current"), "104857600\n");
        put(
            &d.join("memory.stat"),
            "anon 80000000\nfile 20000000\ninactive_file 4857600\npgfault 900\npgmajfault 9\n",
        );
        put(&d.join("memory.max"), "209715200\n");
        put(
            &d.join("memory.events"),
            "low 0\nhigh 0\nmax 0\noom 1\noom_kill 1\n",
        );
        put(&d.join("pids.current"), "2\n");
        put(&d.join("pids.max"), "max\n");
        if swap {
            put(&d.join("memory.swap.current"), "1048576\n");
            put(&d.join("memory.swap.max"), "max\n");
        }
        cg
    }

    #[test]
    fn v2_cgroup_to_cpu_memory_swap_processes() {
        let root = tempfile::tempdir().unwrap();
        let cg = v2_fixture(root.path(), "kubepods/pod1/ctr1", true);
        let read = read_cgroup(Some(&cg));
        assert!(read.timestamp > 0);

        let cpu = read.cpu(Some(5));
        assert_eq!(cpu.usage_core_ns, Some(2_000_000));
        assert_eq!(cpu.user_ns, Some(1_500_000));
        assert_eq!(cpu.system_ns, Some(500_000));
        assert_eq!(cpu.usage_nano_cores, Some(5));
        assert_eq!(
            (cpu.periods, cpu.throttled_periods, cpu.throttled_ns),
            (Some(4), Some(1), Some(10_000))
        );

        let mem = read.memory();
        assert_eq!(mem.usage_bytes, Some(104_857_600));
        assert_eq!(mem.working_set_bytes, Some(100_000_000));
        assert_eq!(mem.available_bytes, Some(109_715_200));
        assert_eq!(mem.rss_bytes, Some(80_000_000));
        assert_eq!(mem.cache_bytes, Some(20_000_000));
        assert_eq!(
            (mem.page_faults, mem.major_page_faults),
            (Some(900), Some(9))
        );
        assert_eq!(mem.limit_bytes, Some(209_715_200));
        assert_eq!(mem.oom_kills, Some(1));

        let swap = read.swap.clone().expect("swap");
        assert_eq!(swap.usage_bytes, Some(1_048_576));
        assert_eq!((swap.limit_bytes, swap.available_bytes), (None, None));
        assert_eq!(read.processes().count, Some(2));
    }

    #[test]
    fn lean_read_agrees_with_the_full_one_on_what_cri_carries() {
        let root = tempfile::tempdir().unwrap();
        let cg = v2_fixture(root.path(), "kubepods/pod1/ctr1", true);
        let (full, lean) = (read_cgroup(Some(&cg)), read_cgroup_lean(Some(&cg), false));
        assert_eq!(lean.cpu(None).usage_core_ns, full.cpu(None).usage_core_ns);
        let (mut lm, mut fm) = (lean.memory(), full.memory());
        // The lean read doesn't look at OOM kills (not in CRI's ContainerStats).
        assert_eq!(lm.oom_kills, None);
        (lm.timestamp, fm.timestamp, fm.oom_kills) = (0, 0, None);
        assert_eq!(lm, fm);
        let (ls, fs) = (lean.swap.clone().unwrap(), full.swap.clone().unwrap());
        assert_eq!(
            (ls.usage_bytes, ls.limit_bytes, ls.available_bytes),
            (fs.usage_bytes, fs.limit_bytes, fs.available_bytes)
        );
        assert_eq!(lean.processes().count, None);
        let with = read_cgroup_lean(Some(&cg), true);
        assert_eq!(with.processes().count, full.processes().count);

        // Gone: no figures, as the full read.
        std::fs::remove_dir_all(root.path().join("kubepods/pod1/ctr1")).unwrap();
        let gone = read_cgroup_lean(Some(&cg), false);
        assert!(gone.stats.is_none() && gone.swap.is_none());
        assert!(read_cgroup_lean(None, false).stats.is_none());
    }

    #[test]
    fn keyed_lookups() {
        let k = keyed("anon 5\nfile 7\nfile_mapped 9\nbad x\n");
        assert_eq!(
            (k("anon"), k("file"), k("file_mapped")),
            (Some(5), Some(7), Some(9))
        );
        assert_eq!((k("bad"), k("missing")), (None, None));
        assert_eq!(number("max\n"), None);
        assert_eq!(number("9223372036854771712\n"), None);
        assert_eq!(number("42\n"), Some(42));
    }

    #[test]
    fn v2_without_swap_or_pids_counts_procs() {
        let root = tempfile::tempdir().unwrap();
        let cg = v2_fixture(root.path(), "pod2/ctr", false);
        let d = root.path().join("pod2/ctr");
        std::fs::remove_file(d.join("pids.current")).unwrap();
        std::fs::remove_file(d.join("memory.max")).unwrap();
        let read = read_cgroup(Some(&cg));
        assert!(read.swap.is_none());
        // No pids controller: the processes listed in cgroup.procs.
        assert_eq!(read.processes().count, Some(2));
        // Unlimited: nothing available to compute.
        assert_eq!(read.memory().limit_bytes, None);
        assert_eq!(read.memory().available_bytes, None);
    }

    #[test]
    fn a_gone_cgroup_has_no_figures_but_a_timestamp() {
        let root = tempfile::tempdir().unwrap();
        put(&root.path().join("cgroup.controllers"), "cpu memory");
        let cg = Cgroup::with_root("/gone", root.path()).unwrap();
        let read = read_cgroup(Some(&cg));
        assert!(read.stats.is_none() && read.swap.is_none());
        let cpu = read.cpu(None);
        assert!(cpu.timestamp > 0);
        assert_eq!(cpu.usage_core_ns, None);
        assert_eq!(read.memory().working_set_bytes, None);
        assert_eq!(read.processes().count, None);
        // No cgroup at all (a bad path): the same.
        assert!(read_cgroup(None).stats.is_none());
    }
}
