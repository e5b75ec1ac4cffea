//! The figures of a container that only the cAdvisor-style metrics (ListPodSandboxMetrics)
//! carry: peak, kernel and mapped memory, limit hits, the CPU and swap settings, threads,
//! open files and sockets, and block I/O per device. They are read on top of the full
//! cgroup read ([`super::container::read_cgroup`]) and never for the CRI stats calls.
//!
//! | figure | cgroup v1 | cgroup2 |
//! | --- | --- | --- |
//! | `memory_max_usage_bytes` | `memory.max_usage_in_bytes` | `memory.peak` (kernel ≥ 5.19) |
//! | `memory_failcnt` | `memory.failcnt` | `memory.events` `max` |
//! | `memory_kernel_bytes` | `memory.kmem.usage_in_bytes` | `memory.stat` `kernel` (or its parts before 5.18) |
//! | `memory_mapped_file_bytes` | `memory.stat` `total_mapped_file` | `memory.stat` `file_mapped` |
//! | `swap_limit_bytes` | `memory.memsw.limit_in_bytes` (memory + swap) | `memory.swap.max` |
//! | `cpu_period_us` | `cpu.cfs_period_us` | `cpu.max`, its second field |
//! | `cpu_shares` | `cpu.shares` | `cpu.weight`, as shares |
//! | `threads` | `pids.current` (else the lines of `tasks`) | `pids.current` (else `cgroup.threads`) |
//! | `threads_max` | `pids.max` | `pids.max` |
//! | `file_descriptors`, `sockets` | `/proc/<pid>/fd` of each pid of `cgroup.procs` | the same |
//! | `devices` | `blkio.*io_service_bytes_recursive`, `…io_serviced_recursive` (bfq's, cfq's or blk-throttle's, as runc picks) | `io.stat` |
//!
//! As cAdvisor reports them, a figure the kernel doesn't keep is 0 (v1 without swap
//! accounting, v2 before `memory.peak`), and so is "no limit" (`max`, v1's huge number).
//! Two choices differ from cAdvisor, which leaves them at 0 on cgroup2 only because runc
//! doesn't read them there: `memory_failcnt` is `memory.events` `max` (the times usage was
//! about to go over `memory.max`, what v1's `failcnt` counts), and `memory_kernel_bytes`
//! is `memory.stat` `kernel`.
//!
//! The cost, per container and call: about ten more small cgroup files (a few more on v1
//! when bfq lists no device), `cgroup.procs`, then one `readdir` of `/proc/<pid>/fd` per
//! process and one `readlink` per open descriptor, and one sysfs `uevent` per device.

use std::path::{Path, PathBuf};

use crate::cgroups::{keyed_value, Cgroup, CgroupMode, Stats, V1_UNLIMITED};

/// What cAdvisor reports beyond the figures of the CRI stats messages. 0 where the kernel
/// doesn't keep a figure, and for "no limit".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Detail {
    /// The most memory the cgroup has used.
    pub memory_max_usage_bytes: u64,
    /// Times memory usage hit the limit.
    pub memory_failcnt: u64,
    /// Kernel memory charged to the cgroup (slab, stacks, page tables…).
    pub memory_kernel_bytes: u64,
    /// Memory-mapped files.
    pub memory_mapped_file_bytes: u64,
    /// The swap limit as cAdvisor reports it: memory + swap on v1, swap alone on cgroup2.
    pub swap_limit_bytes: u64,
    /// CFS period, microseconds.
    pub cpu_period_us: u64,
    /// CPU shares (v1), or cgroup2's weight converted to shares.
    pub cpu_shares: u64,
    /// Tasks (threads) in the cgroup.
    pub threads: u64,
    /// The pids limit.
    pub threads_max: u64,
    /// Open file descriptors of the cgroup's processes.
    pub file_descriptors: u64,
    /// Those of them that are sockets.
    pub sockets: u64,
    /// Block I/O by device, sorted by device number.
    pub devices: Vec<DeviceIo>,
}

/// One block device's I/O, cumulative.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceIo {
    pub major: u64,
    pub minor: u64,
    /// `/dev/<name>` as sysfs names it (cAdvisor's `device` label); `major:minor` when
    /// sysfs doesn't know the device.
    pub device: String,
    /// Bytes by operation, as the kernel lists them: `Read`, `Write`, and on v1 `Sync`,
    /// `Async`, `Discard`, `Total` (cgroup2's `rbytes`/`wbytes` named as v1 names them).
    pub bytes: Vec<(String, u64)>,
    /// Operations completed, likewise.
    pub ios: Vec<(String, u64)>,
}

impl DeviceIo {
    fn get(list: &[(String, u64)], op: &str) -> u64 {
        list.iter().find(|(o, _)| o == op).map_or(0, |(_, v)| *v)
    }

    pub fn read_bytes(&self) -> u64 {
        Self::get(&self.bytes, "Read")
    }

    pub fn write_bytes(&self) -> u64 {
        Self::get(&self.bytes, "Write")
    }

    pub fn reads(&self) -> u64 {
        Self::get(&self.ios, "Read")
    }

    pub fn writes(&self) -> u64 {
        Self::get(&self.ios, "Write")
    }
}

/// Where block devices are listed by number (`<major>:<minor>/uevent`).
const SYS_DEV_BLOCK: &str = "/sys/dev/block";

/// Reads the figures of `cg`, whose cgroup read gave `stats` (its pids figures are
/// reused). Blocking; never fails: what can't be read is 0.
pub(crate) fn read(cg: &Cgroup, stats: &Stats) -> Detail {
    read_with(cg, stats, Path::new("/proc"), Path::new(SYS_DEV_BLOCK))
}

fn read_with(cg: &Cgroup, stats: &Stats, proc: &Path, sys_block: &Path) -> Detail {
    let mut d = Detail::default();
    if let Some(dir) = controller(cg, "memory") {
        memory(&dir, &mut d);
    }
    if let Some(dir) = controller(cg, "cpu") {
        cpu(&dir, &mut d);
    }
    let io = match cg.mode() {
        CgroupMode::Unified => controller(cg, "io"),
        CgroupMode::Legacy | CgroupMode::Hybrid => {
            controller(cg, "blkio").or_else(|| controller(cg, "io"))
        }
    };
    if let Some(dir) = io {
        d.devices = block_io(&dir, sys_block);
    }
    threads(cg, stats, &mut d);
    // cAdvisor takes the processes from the cpu hierarchy; every hierarchy has them.
    let procs = controller(cg, "cpu")
        .or_else(|| controller(cg, "memory"))
        .and_then(|dir| read_text(&dir.path.join("cgroup.procs")));
    if let Some(procs) = procs {
        let pids = procs.lines().filter_map(|l| l.trim().parse::<u32>().ok());
        (d.file_descriptors, d.sockets) = open_files(proc, pids);
    }
    d
}

/// A controller's directory for this cgroup, and whether it is a cgroup2 one (a hybrid
/// host may have a controller on either side).
struct Dir {
    path: PathBuf,
    v2: bool,
}

fn controller(cg: &Cgroup, name: &str) -> Option<Dir> {
    let path = cg.fs_path(name)?;
    let v2 = match cg.mode() {
        CgroupMode::Unified => true,
        CgroupMode::Legacy => false,
        CgroupMode::Hybrid => cg.fs_path("unified").as_ref() == Some(&path),
    };
    Some(Dir { path, v2 })
}

fn memory(dir: &Dir, d: &mut Detail) {
    let file = |name: &str| read_text(&dir.path.join(name));
    let num = |name: &str| file(name).map_or(0, |t| limit_value(&t));
    let stat = file("memory.stat").unwrap_or_default();
    if dir.v2 {
        d.memory_max_usage_bytes = num("memory.peak");
        d.memory_failcnt = file("memory.events").map_or(0, |t| keyed_value(&t, "max").unwrap_or(0));
        d.memory_kernel_bytes = kernel_memory_v2(&stat);
        d.memory_mapped_file_bytes = keyed_value(&stat, "file_mapped").unwrap_or(0);
        d.swap_limit_bytes = num("memory.swap.max");
    } else {
        d.memory_max_usage_bytes = num("memory.max_usage_in_bytes");
        d.memory_failcnt = num("memory.failcnt");
        d.memory_kernel_bytes = num("memory.kmem.usage_in_bytes");
        d.memory_mapped_file_bytes = keyed_value(&stat, "total_mapped_file").unwrap_or(0);
        d.swap_limit_bytes = num("memory.memsw.limit_in_bytes");
    }
}

/// cgroup2's kernel memory: `kernel` (Linux ≥ 5.18), else the parts it sums.
pub(crate) fn kernel_memory_v2(stat: &str) -> u64 {
    if let Some(kernel) = keyed_value(stat, "kernel") {
        return kernel;
    }
    let slab = keyed_value(stat, "slab").unwrap_or_else(|| {
        keyed_value(stat, "slab_reclaimable")
            .unwrap_or(0)
            .saturating_add(keyed_value(stat, "slab_unreclaimable").unwrap_or(0))
    });
    ["kernel_stack", "pagetables", "percpu", "vmalloc"]
        .iter()
        .filter_map(|k| keyed_value(stat, k))
        .fold(slab, u64::saturating_add)
}

fn cpu(dir: &Dir, d: &mut Detail) {
    let file = |name: &str| read_text(&dir.path.join(name));
    if dir.v2 {
        d.cpu_period_us = file("cpu.max")
            .and_then(|t| cpu_max_period(&t))
            .unwrap_or(0);
        d.cpu_shares = file("cpu.weight")
            .and_then(|t| t.trim().parse().ok())
            .map_or(0, weight_to_shares);
    } else {
        d.cpu_period_us = file("cpu.cfs_period_us").map_or(0, |t| limit_value(&t));
        d.cpu_shares = file("cpu.shares").map_or(0, |t| limit_value(&t));
    }
}

/// The period of a `cpu.max` (`<quota|max> <period>`).
pub(crate) fn cpu_max_period(text: &str) -> Option<u64> {
    text.split_whitespace().nth(1)?.parse().ok()
}

/// cgroup2's `cpu.weight` (1-10000) as v1 shares (2-262144): the inverse of the OCI
/// conversion, as cAdvisor makes it. 0 for a weight out of range.
pub(crate) fn weight_to_shares(weight: u64) -> u64 {
    if !(1..=10_000).contains(&weight) {
        return 0;
    }
    2 + ((weight - 1) * 262_142) / 9_999
}

/// Threads and their limit: `pids.current` and `pids.max` (already read into `stats`);
/// without a pids controller, the tasks listed in the cgroup and no limit.
fn threads(cg: &Cgroup, stats: &Stats, d: &mut Detail) {
    d.threads_max = stats.pids.limit.unwrap_or(0);
    if let Some(current) = stats.pids.current {
        d.threads = current;
        return;
    }
    let listed = controller(cg, "cpu")
        .or_else(|| controller(cg, "memory"))
        .and_then(|dir| {
            let name = if dir.v2 { "cgroup.threads" } else { "tasks" };
            read_text(&dir.path.join(name))
        });
    d.threads = listed.map_or(0, |t| count_lines(&t));
}

pub(crate) fn count_lines(text: &str) -> u64 {
    text.lines().filter(|l| !l.trim().is_empty()).count() as u64
}

/// Open descriptors and sockets of `pids`: the entries of each `/proc/<pid>/fd`, and those
/// whose link reads `socket:[…]`. A process that exits meanwhile counts for nothing.
pub(crate) fn open_files(proc: &Path, pids: impl Iterator<Item = u32>) -> (u64, u64) {
    let (mut fds, mut sockets) = (0u64, 0u64);
    for pid in pids {
        let dir = proc.join(pid.to_string()).join("fd");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            fds += 1;
            let is_socket = std::fs::read_link(entry.path()).is_ok_and(|target| {
                target
                    .as_os_str()
                    .as_encoded_bytes()
                    .starts_with(b"socket:")
            });
            if is_socket {
                sockets += 1;
            }
        }
    }
    (fds, sockets)
}

/// Block I/O per device: bytes and operations.
fn block_io(dir: &Dir, sys_block: &Path) -> Vec<DeviceIo> {
    let entries = if dir.v2 {
        read_text(&dir.path.join("io.stat"))
            .map(|t| parse_io_stat(&t))
            .unwrap_or_default()
    } else {
        // runc's (so cAdvisor's) order: the first pair whose bytes file lists a device.
        // bfq's count the devices it schedules, cfq's (Linux < 5.0) likewise, the
        // throttle ones those blk-throttle sees.
        V1_IO_FILES
            .iter()
            .find_map(|(bytes, ios)| {
                let bytes = parse_blkio_v1(&read_text(&dir.path.join(bytes))?, Table::Bytes);
                if bytes.is_empty() {
                    return None;
                }
                let ios = read_text(&dir.path.join(ios)).unwrap_or_default();
                Some([bytes, parse_blkio_v1(&ios, Table::Ios)].concat())
            })
            .unwrap_or_default()
    };
    group(entries, |major, minor| device_name(sys_block, major, minor))
}

/// v1's (bytes, operations) files, in the order runc tries them.
const V1_IO_FILES: [(&str, &str); 4] = [
    (
        "blkio.bfq.io_service_bytes_recursive",
        "blkio.bfq.io_serviced_recursive",
    ),
    (
        "blkio.io_service_bytes_recursive",
        "blkio.io_serviced_recursive",
    ),
    (
        "blkio.throttle.io_service_bytes_recursive",
        "blkio.throttle.io_serviced_recursive",
    ),
    (
        "blkio.throttle.io_service_bytes",
        "blkio.throttle.io_serviced",
    ),
];

/// Which table of `DeviceIo` an entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    Bytes,
    Ios,
}

/// One `major:minor op value` of a block I/O file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IoEntry {
    pub major: u64,
    pub minor: u64,
    pub table: Table,
    pub op: String,
    pub value: u64,
}

fn device_number(text: &str) -> Option<(u64, u64)> {
    let (major, minor) = text.split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// A v1 `blkio.*io_service*` file: `8:0 Read 4096` lines and a closing `Total 4096`
/// (skipped, as is any line not of the form).
pub(crate) fn parse_blkio_v1(text: &str, table: Table) -> Vec<IoEntry> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (major, minor) = device_number(f.next()?)?;
            let (op, value) = (f.next()?, f.next()?.parse().ok()?);
            Some(IoEntry {
                major,
                minor,
                table,
                op: op.to_string(),
                value,
            })
        })
        .collect()
}

/// cgroup2's `io.stat`: `8:0 rbytes=… wbytes=… rios=… wios=… dbytes=… dios=…` lines. As
/// runc maps them, `rbytes`/`wbytes` are the bytes read and written and `rios`/`wios`
/// the operations; the other keys are not read.
pub(crate) fn parse_io_stat(text: &str) -> Vec<IoEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let Some((major, minor)) = f.next().and_then(device_number) else {
            continue;
        };
        for kv in f {
            let Some((key, value)) = kv.split_once('=') else {
                continue;
            };
            let (table, op) = match key {
                "rbytes" => (Table::Bytes, "Read"),
                "wbytes" => (Table::Bytes, "Write"),
                "rios" => (Table::Ios, "Read"),
                "wios" => (Table::Ios, "Write"),
                _ => continue,
            };
            if let Ok(value) = value.parse() {
                out.push(IoEntry {
                    major,
                    minor,
                    table,
                    op: op.to_string(),
                    value,
                });
            }
        }
    }
    out
}

/// Entries gathered by device, sorted by device number, each named once by `name`.
pub(crate) fn group(entries: Vec<IoEntry>, name: impl Fn(u64, u64) -> String) -> Vec<DeviceIo> {
    let mut devices: Vec<DeviceIo> = Vec::new();
    for e in entries {
        let i = match devices
            .iter()
            .position(|d| (d.major, d.minor) == (e.major, e.minor))
        {
            Some(i) => i,
            None => {
                devices.push(DeviceIo {
                    major: e.major,
                    minor: e.minor,
                    ..Default::default()
                });
                devices.len() - 1
            }
        };
        let list = match e.table {
            Table::Bytes => &mut devices[i].bytes,
            Table::Ios => &mut devices[i].ios,
        };
        // A repeated op (none in kernel output) keeps its last value, as runc's map does.
        match list.iter_mut().find(|(op, _)| *op == e.op) {
            Some(slot) => slot.1 = e.value,
            None => list.push((e.op, e.value)),
        }
    }
    devices.sort_by_key(|d| (d.major, d.minor));
    for d in &mut devices {
        d.device = name(d.major, d.minor);
    }
    devices
}

/// `/dev/<DEVNAME>` of a block device from its sysfs `uevent`, as cAdvisor names it;
/// `major:minor` when sysfs has no name for it (so two such devices never share a label).
pub(crate) fn device_name(sys_block: &Path, major: u64, minor: u64) -> String {
    read_text(&sys_block.join(format!("{major}:{minor}")).join("uevent"))
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("DEVNAME="))
                .map(|name| format!("/dev/{}", name.trim()))
        })
        .unwrap_or_else(|| format!("{major}:{minor}"))
}

/// A file's text; `None` when it can't be read (absent: controller or kernel feature
/// missing; the cgroup or process gone meanwhile).
fn read_text(path: &Path) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) => {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::debug!(file = %path.display(), error = %e, "stats: reading");
            }
            None
        }
    }
}

/// A one-number file's value as cAdvisor reports it: "max", v1's unlimited (any value from
/// `V1_UNLIMITED` up) and anything
/// that isn't a number are 0.
pub(crate) fn limit_value(text: &str) -> u64 {
    text.trim()
        .parse()
        .ok()
        .filter(|v| *v < V1_UNLIMITED)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    const BLKIO_BYTES: &str = "\
8:16 Read 4096
8:16 Write 8192
8:16 Sync 12288
8:16 Async 0
8:16 Discard 0
8:16 Total 12288
8:0 Read 1
8:0 Write 2
8:0 Sync 3
8:0 Async 0
8:0 Discard 0
8:0 Total 3
Total 12291
";
    const BLKIO_IOS: &str = "\
8:16 Read 1
8:16 Write 2
8:16 Sync 3
8:16 Async 0
8:16 Discard 0
8:16 Total 3
Total 3
";

    #[test]
    fn v1_blkio_files_by_device() {
        let mut entries = parse_blkio_v1(BLKIO_BYTES, Table::Bytes);
        assert_eq!(entries.len(), 12, "the Total line is skipped");
        entries.extend(parse_blkio_v1(BLKIO_IOS, Table::Ios));
        let devices = group(entries, |ma, mi| format!("dev{ma}.{mi}"));
        assert_eq!(devices.len(), 2);
        let (sda, sdb) = (&devices[0], &devices[1]);
        assert_eq!(
            (sda.major, sda.minor, sda.device.as_str()),
            (8, 0, "dev8.0")
        );
        assert_eq!((sda.read_bytes(), sda.write_bytes()), (1, 2));
        assert_eq!((sda.reads(), sda.writes()), (0, 0), "no io_serviced lines");
        assert_eq!(sdb.device, "dev8.16");
        assert_eq!((sdb.read_bytes(), sdb.write_bytes()), (4096, 8192));
        assert_eq!((sdb.reads(), sdb.writes()), (1, 2));
        let ops: Vec<&str> = sdb.bytes.iter().map(|(op, _)| op.as_str()).collect();
        assert_eq!(ops, ["Read", "Write", "Sync", "Async", "Discard", "Total"]);
        // The root cgroup's empty file, and garbage.
        assert!(parse_blkio_v1("Total 0\n", Table::Bytes).is_empty());
        assert!(parse_blkio_v1("8:0 Read x\nfoo\n8 Read 1\n", Table::Bytes).is_empty());
    }

    #[test]
    fn v2_io_stat_by_device() {
        let text = "\
259:0 rbytes=1048576 wbytes=4096 rios=10 wios=1 dbytes=0 dios=0
253:1 rbytes=5 wbytes=6 rios=7 wios=8 dbytes=9 dios=10 cost.usage=3
bogus line
";
        let devices = group(parse_io_stat(text), |ma, mi| format!("{ma}:{mi}"));
        assert_eq!(devices.len(), 2);
        let (dm, nvme) = (&devices[0], &devices[1]);
        assert_eq!(dm.device, "253:1");
        assert_eq!(
            (dm.read_bytes(), dm.write_bytes(), dm.reads(), dm.writes()),
            (5, 6, 7, 8)
        );
        // Only what runc maps: no discard, no cost.
        assert_eq!(dm.bytes.len(), 2);
        assert_eq!(dm.ios.len(), 2);
        assert_eq!(
            (
                nvme.read_bytes(),
                nvme.write_bytes(),
                nvme.reads(),
                nvme.writes()
            ),
            (1_048_576, 4096, 10, 1)
        );
    }

    #[test]
    fn device_names_from_sysfs() {
        let dir = tempfile::tempdir().unwrap();
        put(
            &dir.path().join("8:0/uevent"),
            "MAJOR=8\nMINOR=0\nDEVNAME=sda\nDEVTYPE=disk\n",
        );
        assert_eq!(device_name(dir.path(), 8, 0), "/dev/sda");
        assert_eq!(device_name(dir.path(), 8, 1), "8:1");
    }

    #[test]
    fn cpu_settings_and_conversions() {
        assert_eq!(cpu_max_period("max 100000\n"), Some(100_000));
        assert_eq!(cpu_max_period("20000 50000\n"), Some(50_000));
        assert_eq!(cpu_max_period("max\n"), None);
        // The OCI conversion's ends and default come back.
        assert_eq!(weight_to_shares(1), 2);
        assert_eq!(weight_to_shares(10_000), 262_144);
        // 1024 shares are written as weight 39, read back as cAdvisor reads them.
        assert_eq!(weight_to_shares(39), 998);
        assert_eq!(weight_to_shares(100), 2 + (99 * 262_142) / 9_999);
        assert_eq!((weight_to_shares(0), weight_to_shares(10_001)), (0, 0));
        assert_eq!(limit_value("max\n"), 0);
        assert_eq!(limit_value("9223372036854771712\n"), 0);
        assert_eq!(limit_value("1024\n"), 1024);
        assert_eq!(limit_value("junk"), 0);
    }

    #[test]
    fn v2_kernel_memory_and_its_parts() {
        assert_eq!(kernel_memory_v2("anon 5\nkernel 4096\nslab 1\n"), 4096);
        // Before 5.18: the parts.
        let parts = "kernel_stack 100\npagetables 200\npercpu 10\nsock 7\nvmalloc 1\nslab 1000\n";
        assert_eq!(kernel_memory_v2(parts), 1311);
        let split = "kernel_stack 1\nslab_reclaimable 20\nslab_unreclaimable 300\n";
        assert_eq!(kernel_memory_v2(split), 321);
        assert_eq!(kernel_memory_v2(""), 0);
    }

    #[test]
    fn open_files_and_sockets_of_our_process() {
        // A fixture /proc: pid 10 with a file, a socket and a pipe; pid 11 gone.
        let dir = tempfile::tempdir().unwrap();
        let fd = dir.path().join("10/fd");
        std::fs::create_dir_all(&fd).unwrap();
        std::os::unix::fs::symlink("/var/log/app.log", fd.join("3")).unwrap();
        std::os::unix::fs::symlink("socket:[12345]", fd.join("4")).unwrap();
        std::os::unix::fs::symlink("pipe:[999]", fd.join("5")).unwrap();
        assert_eq!(open_files(dir.path(), [10, 11].into_iter()), (3, 1));

        // The real /proc: this process holds a socket of its own while we count.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (fds, sockets) = open_files(Path::new("/proc"), [std::process::id()].into_iter());
        assert!(fds >= 4, "{fds} fds");
        assert!(sockets >= 1, "{sockets} sockets");
        drop(listener);
    }

    #[test]
    fn counts_listed_tasks() {
        assert_eq!(count_lines("1\n2\n\n3\n"), 3);
        assert_eq!(count_lines(""), 0);
    }

    #[test]
    fn v1_controller_files() {
        let root = tempfile::tempdir().unwrap();
        let v1 = |sub: &str| Dir {
            path: root.path().join(sub),
            v2: false,
        };
        let mem = v1("memory");
        put(&mem.path.join("memory.max_usage_in_bytes"), "2097152\n");
        put(&mem.path.join("memory.failcnt"), "7\n");
        put(&mem.path.join("memory.kmem.usage_in_bytes"), "65536\n");
        put(
            &mem.path.join("memory.stat"),
            "cache 1\nmapped_file 2\ntotal_cache 10\ntotal_mapped_file 20\n",
        );
        put(
            &mem.path.join("memory.memsw.limit_in_bytes"),
            "9223372036854771712\n",
        );
        let mut d = Detail::default();
        memory(&mem, &mut d);
        assert_eq!(d.memory_max_usage_bytes, 2_097_152);
        assert_eq!(d.memory_failcnt, 7);
        assert_eq!(d.memory_kernel_bytes, 65_536);
        assert_eq!(d.memory_mapped_file_bytes, 20, "the hierarchical figure");
        assert_eq!(d.swap_limit_bytes, 0, "unlimited");
        // Swap accounting on, with a limit: memory + swap, as cAdvisor reports it.
        put(&mem.path.join("memory.memsw.limit_in_bytes"), "134217728\n");
        // A kernel without kmem accounting.
        std::fs::remove_file(mem.path.join("memory.kmem.usage_in_bytes")).unwrap();
        memory(&mem, &mut d);
        assert_eq!((d.swap_limit_bytes, d.memory_kernel_bytes), (128 << 20, 0));

        let cpu_dir = v1("cpu");
        put(&cpu_dir.path.join("cpu.cfs_period_us"), "100000\n");
        put(&cpu_dir.path.join("cpu.shares"), "512\n");
        cpu(&cpu_dir, &mut d);
        assert_eq!((d.cpu_period_us, d.cpu_shares), (100_000, 512));

        // bfq lists no device (no disk uses it): blk-throttle's files are read.
        let blkio = v1("blkio");
        put(
            &blkio.path.join("blkio.bfq.io_service_bytes_recursive"),
            "Total 0\n",
        );
        put(
            &blkio.path.join("blkio.throttle.io_service_bytes_recursive"),
            BLKIO_BYTES,
        );
        put(
            &blkio.path.join("blkio.throttle.io_serviced_recursive"),
            BLKIO_IOS,
        );
        put(
            &blkio.path.join("blkio.throttle.io_service_bytes"),
            "8:0 Read 1\n",
        );
        let devices = block_io(&blkio, &root.path().join("sys"));
        assert_eq!(devices.len(), 2);
        assert_eq!(devices[1].device, "8:16", "unnamed in this sysfs");
        assert_eq!((devices[1].write_bytes(), devices[1].writes()), (8192, 2));
        // A bfq file that lists devices wins, as in runc.
        put(
            &blkio.path.join("blkio.bfq.io_service_bytes_recursive"),
            "8:32 Read 5\n8:32 Write 6\nTotal 11\n",
        );
        let devices = block_io(&blkio, &root.path().join("sys"));
        assert_eq!(devices.len(), 1);
        assert_eq!((devices[0].minor, devices[0].read_bytes()), (32, 5));
        assert!(devices[0].ios.is_empty());
        // No blkio files at all (the root cgroup, a kernel without them).
        assert!(block_io(&v1("none"), root.path()).is_empty());
    }

    /// A cgroup2 container cgroup with every file the detail reads.
    fn v2_cgroup(root: &Path) -> Cgroup {
        put(&root.join("cgroup.controllers"), "cpu io memory pids");
        let cg = Cgroup::with_root("/pod/ctr", root).unwrap();
        let d = root.join("pod/ctr");
        put(&d.join("cgroup.procs"), "");
        put(&d.join("cgroup.threads"), "7\n8\n9\n");
        put(&d.join("memory.current"), "4096\n");
        put(&d.join("memory.peak"), "1048576\n");
        put(
            &d.join("memory.events"),
            "low 0\nhigh 2\nmax 5\noom 1\noom_kill 1\n",
        );
        put(
            &d.join("memory.stat"),
            "anon 10\nfile 20\nkernel 8192\nfile_mapped 4096\n",
        );
        put(&d.join("memory.swap.max"), "max\n");
        put(&d.join("cpu.max"), "20000 100000\n");
        put(&d.join("cpu.weight"), "100\n");
        put(&d.join("io.stat"), "8:0 rbytes=1 wbytes=2 rios=3 wios=4\n");
        cg
    }

    #[test]
    fn v2_cgroup_detail() {
        let root = tempfile::tempdir().unwrap();
        let cg = v2_cgroup(root.path());
        let sys = root.path().join("sys");
        put(&sys.join("8:0/uevent"), "DEVNAME=vda\n");
        let stats = cg.stats().unwrap();
        let d = read_with(&cg, &stats, &root.path().join("proc"), &sys);
        assert_eq!(d.memory_max_usage_bytes, 1_048_576);
        assert_eq!(d.memory_failcnt, 5);
        assert_eq!(d.memory_kernel_bytes, 8192);
        assert_eq!(d.memory_mapped_file_bytes, 4096);
        assert_eq!(d.swap_limit_bytes, 0, "max");
        assert_eq!(d.cpu_period_us, 100_000);
        assert_eq!(d.cpu_shares, 2 + (99 * 262_142) / 9_999);
        // No pids controller files: the threads listed, no limit.
        assert_eq!((d.threads, d.threads_max), (3, 0));
        assert_eq!((d.file_descriptors, d.sockets), (0, 0));
        assert_eq!(d.devices.len(), 1);
        assert_eq!(d.devices[0].device, "/dev/vda");
        assert_eq!(d.devices[0].writes(), 4);

        // With a pids controller and a swap limit; without memory.peak (kernel < 5.19).
        let dir = root.path().join("pod/ctr");
        put(&dir.join("pids.current"), "4\n");
        put(&dir.join("pids.max"), "512\n");
        put(&dir.join("memory.swap.max"), "67108864\n");
        std::fs::remove_file(dir.join("memory.peak")).unwrap();
        let stats = cg.stats().unwrap();
        let d = read_with(&cg, &stats, &root.path().join("proc"), &sys);
        assert_eq!((d.threads, d.threads_max), (4, 512));
        assert_eq!(d.swap_limit_bytes, 64 << 20);
        assert_eq!(d.memory_max_usage_bytes, 0);
    }

    #[test]
    fn v2_cgroup_without_files_is_all_zero() {
        let root = tempfile::tempdir().unwrap();
        put(&root.path().join("cgroup.controllers"), "memory");
        let cg = Cgroup::with_root("/bare", root.path()).unwrap();
        put(&root.path().join("bare/memory.current"), "1\n");
        let stats = cg.stats().unwrap();
        let d = read_with(&cg, &stats, root.path(), root.path());
        assert_eq!(d, Detail::default());
    }
}
