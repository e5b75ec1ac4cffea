//! Resource usage: what the CRI stats calls (ContainerStats, ListContainerStats,
//! PodSandboxStats, ListPodSandboxStats) and the cAdvisor-style metrics
//! (ListPodSandboxMetrics) report, and so what kubelet's summary API and `/metrics/cadvisor`
//! show when kubelet takes them from the runtime.
//!
//! | figure | where it comes from |
//! | --- | --- |
//! | CPU, memory, processes, swap | the container's (or pod's) cgroup, v1 or v2: for the stats calls only the 4-6 files CRI's messages need (`container.rs`), for the metrics every figure [`crate::cgroups`] reads |
//! | CPU rate (`usage_nano_cores`) | two cumulative reads apart in time (`sampler.rs`) |
//! | writable layer | a `du` of the container's upper dir, cached for ≥ 1 s (`fs.rs`) |
//! | network | `/proc/<pid>/net/dev` of a process in the pod's netns (`network.rs`) |
//! | metrics only: peak/kernel/mapped memory, limit hits, CPU and swap settings, threads, open files and sockets, block I/O per device | more cgroup files, `/proc/<pid>/fd`, sysfs device names; read for ListPodSandboxMetrics alone (`detail.rs`) |
//!
//! Every call here is blocking file I/O: run it on a blocking thread, and gather a whole
//! list in one blocking task ([`Collector::containers`]) rather than one task per
//! container. A figure that can't be read is absent (`None`), never an error: a container
//! that exits while its stats are being read must not fail the other forty-nine.
//!
//! The [`Collector`] remembers the last CPU read of each container and pod (for the rate)
//! and the last measurement of each writable layer; [`Collector::retain_containers`] and
//! [`Collector::retain_pods`] drop what belongs to removed ones. corrald has one, from
//! [`collector`].

mod container;
mod detail;
mod fs;
mod metrics;
mod network;
mod pod;
mod sampler;

use std::collections::HashSet;
use std::path::Path;
use std::sync::OnceLock;

pub use container::ContainerStats;
pub use detail::{Detail, DeviceIo};
pub use fs::LayerUsage;
pub use metrics::{
    descriptors, ContainerMetrics, Descriptor, FsCapacity, Metric, MetricKind, PodMetrics,
};
pub use network::{InterfaceUsage, NetworkUsage};
pub use pod::PodStats;

use crate::cgroups::Cgroup;
use crate::container::ContainerRecord;
use crate::sandbox::SandboxRecord;
use container::CgroupRead;
use fs::LayerCache;
use sampler::Sampler;

/// CPU time used. Cumulative figures are nanoseconds since the cgroup was made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuUsage {
    /// Unix nanoseconds when read.
    pub timestamp: i64,
    pub usage_core_ns: Option<u64>,
    /// CPU nanoseconds per second since the previous read; `None` on the first.
    pub usage_nano_cores: Option<u64>,
    pub user_ns: Option<u64>,
    pub system_ns: Option<u64>,
    /// CFS bandwidth periods elapsed and throttled, and time throttled.
    pub periods: Option<u64>,
    pub throttled_periods: Option<u64>,
    pub throttled_ns: Option<u64>,
}

/// Memory in use, bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    pub timestamp: i64,
    pub usage_bytes: Option<u64>,
    /// Usage less inactive file pages (what kubelet evicts on).
    pub working_set_bytes: Option<u64>,
    /// Limit less working set, when there is a limit.
    pub available_bytes: Option<u64>,
    pub rss_bytes: Option<u64>,
    pub cache_bytes: Option<u64>,
    pub page_faults: Option<u64>,
    pub major_page_faults: Option<u64>,
    pub limit_bytes: Option<u64>,
    pub oom_kills: Option<u64>,
}

/// Swap in use, bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SwapUsage {
    pub timestamp: i64,
    pub usage_bytes: Option<u64>,
    /// Limit less usage, when there is a limit.
    pub available_bytes: Option<u64>,
    pub limit_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessUsage {
    pub timestamp: i64,
    pub count: Option<u64>,
}

/// Reads stats and keeps what rates and caches need between calls.
#[derive(Default)]
pub struct Collector {
    containers_cpu: Sampler,
    pods_cpu: Sampler,
    layers: LayerCache,
    /// Tests point the collector at a cgroup2 fixture instead of the host's cgroups.
    #[cfg(test)]
    cgroup_root: Option<std::path::PathBuf>,
}

impl Collector {
    pub fn new() -> Collector {
        Collector::default()
    }

    /// One container's stats, its CPU rate measured since the previous call. Blocking.
    pub fn container(&self, record: &ContainerRecord) -> ContainerStats {
        self.read_container(record, Read::Cri)
    }

    /// Many containers' stats, in order. Blocking; a long list is shared between the calling
    /// thread and a few scoped ones (`parallel_map`).
    pub fn containers(&self, records: &[ContainerRecord]) -> Vec<ContainerStats> {
        parallel_map(records, |r| self.read_container(r, Read::Cri))
    }

    /// The stats of each of `pods`, with those of their running containers among
    /// `containers`, in order. Blocking, shared out as [`Collector::containers`].
    pub fn pods(&self, pods: &[SandboxRecord], containers: &[ContainerRecord]) -> Vec<PodStats> {
        parallel_map(pods, |p| self.pod(p, containers))
    }

    /// [`Collector::pod_metrics`] of each of `pods`, in order.
    pub fn pods_metrics(
        &self,
        pods: &[SandboxRecord],
        containers: &[ContainerRecord],
    ) -> Vec<PodMetrics> {
        parallel_map(pods, |p| self.pod_metrics(p, containers))
    }

    /// A pod's stats, with those of its running containers among `containers` (the pod's;
    /// others are ignored). Blocking.
    pub fn pod(&self, pod: &SandboxRecord, containers: &[ContainerRecord]) -> PodStats {
        let running: Vec<&ContainerRecord> = running_in(pod, containers).collect();
        // Without a pod cgroup the pod's process count is its containers'.
        let how = match pod.config.cgroup_parent {
            Some(_) => Read::Cri,
            None => Read::CriWithProcesses,
        };
        let stats: Vec<ContainerStats> = running
            .iter()
            .map(|c| self.read_container(c, how))
            .collect();
        let network = self.network(pod, &running);
        match &pod.config.cgroup_parent {
            Some(path) => {
                let read = container::read_cgroup_lean(self.cgroup(path).as_ref(), true);
                let rate = self.rate(&self.pods_cpu, &pod.id, &read);
                pod::from_cgroup(&pod.id, &read, rate, network, stats)
            }
            None => pod::summed(&pod.id, crate::clock::now_nanos(), network, stats),
        }
    }

    /// A pod's metrics (ListPodSandboxMetrics), with those of its running containers among
    /// `containers`. Reads no CPU rate, so it never shortens the stats calls' windows.
    /// Blocking.
    pub fn pod_metrics(&self, pod: &SandboxRecord, containers: &[ContainerRecord]) -> PodMetrics {
        let running: Vec<&ContainerRecord> = running_in(pod, containers).collect();
        let stats = PodStats {
            id: pod.id.clone(),
            network: self.network(pod, &running),
            containers: running
                .iter()
                .map(|c| self.read_container(c, Read::Full))
                .collect(),
            ..Default::default()
        };
        let fs = running
            .first()
            .and_then(|c| fs_capacity(container::layers_dir(c)));
        let records: Vec<ContainerRecord> = running.into_iter().cloned().collect();
        metrics::pod_metrics(pod, &records, &stats, fs, crate::clock::now_nanos())
    }

    /// Forget the samples and layer measurements of containers not in `live` (all that
    /// exist, not only those a filtered call asked about).
    pub fn retain_containers(&self, live: &HashSet<&str>) {
        self.containers_cpu.retain(live);
        self.layers.retain(live);
    }

    /// Forget the samples of pods not in `live`.
    pub fn retain_pods(&self, live: &HashSet<&str>) {
        self.pods_cpu.retain(live);
    }

    /// Forget one removed container.
    pub fn forget_container(&self, id: &str) {
        self.containers_cpu.forget(id);
        self.layers.forget(id);
    }

    fn read_container(&self, record: &ContainerRecord, how: Read) -> ContainerStats {
        let cg = self.cgroup(&record.cgroup);
        let read = match how {
            Read::Cri => container::read_cgroup_lean(cg.as_ref(), false),
            Read::CriWithProcesses => container::read_cgroup_lean(cg.as_ref(), true),
            Read::Full => container::read_cgroup(cg.as_ref()),
        };
        let rate = match how {
            Read::Cri | Read::CriWithProcesses => {
                self.rate(&self.containers_cpu, &record.id, &read)
            }
            Read::Full => None,
        };
        let writable_layer = match self.layers.usage(
            &record.id,
            &record.upper_dir(),
            container::layers_dir(record),
        ) {
            Ok(usage) => Some(usage),
            Err(e) => {
                // Removed while we looked, most likely: no figure rather than a failure.
                tracing::debug!(container = %record.id, error = %e, "stats: writable layer");
                None
            }
        };
        let detail = match (how, cg.as_ref(), read.stats.as_ref()) {
            (Read::Full, Some(cg), Some(stats)) => Some(detail::read(cg, stats)),
            _ => None,
        };
        ContainerStats {
            id: record.id.clone(),
            cpu: read.cpu(rate),
            memory: read.memory(),
            swap: read.swap.clone(),
            writable_layer,
            processes: read.processes(),
            detail,
        }
    }

    fn rate(&self, sampler: &Sampler, id: &str, read: &CgroupRead) -> Option<u64> {
        let usage = read.stats.as_ref()?.cpu.usage_ns?;
        sampler.rate(id, read.at, usage)
    }

    fn network(&self, pod: &SandboxRecord, running: &[&ContainerRecord]) -> Option<NetworkUsage> {
        let pids: Vec<i32> = running.iter().filter_map(|c| c.pid).collect();
        network::read(pod, &pids).unwrap_or_else(|e| {
            tracing::warn!(pod = %pod.id, error = %e, "stats: reading the pod's network");
            None
        })
    }

    fn cgroup(&self, path: &str) -> Option<Cgroup> {
        #[cfg(test)]
        if let Some(root) = &self.cgroup_root {
            return Cgroup::with_root(path, root).ok();
        }
        Cgroup::new(path)
            .map_err(|e| tracing::warn!(cgroup = path, error = %e, "stats: bad cgroup path"))
            .ok()
    }
}

/// How much of a container's cgroup to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// What CRI's ContainerStats carries, in as few files as possible; the CPU rate sampled.
    Cri,
    /// As `Cri`, and the process count.
    CriWithProcesses,
    /// Every figure, and the metrics-only [`Detail`], for the metrics; no rate, so metrics
    /// never shorten the stats calls' sampling windows.
    Full,
}

/// Below this many items per thread, a thread costs more (~30 µs to start) than it saves
/// (a container's stats are ~10 cgroup file reads, 100-150 µs on a VM).
const MIN_PER_THREAD: usize = 8;

/// `f` over `items`, in order, on up to as many threads as the machine has cores: the
/// calling (blocking) thread takes the first share, scoped threads the others. A thread
/// that can't be started has its share done by the calling thread.
fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = cores().min(items.len() / MIN_PER_THREAD).max(1);
    if threads == 1 {
        return items.iter().map(&f).collect();
    }
    let f = &f;
    let share = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let mut shares = items.chunks(share);
        let mine = shares.next().unwrap_or_default();
        let others: Vec<_> = shares
            .map(|part| {
                let spawned = std::thread::Builder::new()
                    .name("corral-stats".into())
                    .spawn_scoped(scope, move || part.iter().map(f).collect::<Vec<R>>());
                (part, spawned)
            })
            .collect();
        let mut out: Vec<R> = mine.iter().map(f).collect();
        for (part, spawned) in others {
            match spawned {
                Ok(handle) => match handle.join() {
                    Ok(done) => out.extend(done),
                    // A bug in a reader: fail the call (spawn_blocking reports it).
                    Err(panic) => std::panic::resume_unwind(panic),
                },
                Err(e) => {
                    tracing::debug!(error = %e, "stats: no thread, reading inline");
                    out.extend(part.iter().map(f));
                }
            }
        }
        out
    })
}

/// The cores this process may use, found once (std reads the cgroup's CPU quota for it).
fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The pod's running containers among `containers`.
fn running_in<'a>(
    pod: &'a SandboxRecord,
    containers: &'a [ContainerRecord],
) -> impl Iterator<Item = &'a ContainerRecord> {
    containers
        .iter()
        .filter(move |c| c.pod_id == pod.id && c.is_running())
}

/// Size and inodes of the filesystem holding `dir`.
// statvfs counts are u64 here but narrower on some 32-bit targets: the `from`s stay.
#[allow(clippy::useless_conversion)]
fn fs_capacity(dir: &Path) -> Option<FsCapacity> {
    let s = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(FsCapacity {
        capacity_bytes: u64::from(s.blocks()).saturating_mul(u64::from(s.fragment_size())),
        inodes_total: u64::from(s.files()),
        inodes_free: u64::from(s.files_free()),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::container::{ContainerConfig, ContainerState, ImageRef};
    use crate::sandbox::{NamespaceMode, SandboxConfig, SandboxState};

    pub(crate) fn pod_record(id: &str, cgroup_parent: Option<&str>) -> SandboxRecord {
        SandboxRecord {
            id: id.into(),
            config: SandboxConfig {
                name: "web".into(),
                uid: "uid-1".into(),
                namespace: "prod".into(),
                attempt: 2,
                hostname: String::new(),
                log_directory: String::new(),
                labels: BTreeMap::new(),
                annotations: BTreeMap::new(),
                dns: None,
                port_mappings: Vec::new(),
                network: NamespaceMode::Pod,
                pid: NamespaceMode::Container,
                ipc: NamespaceMode::Pod,
                cgroup_parent: cgroup_parent.map(str::to_string),
                sysctls: BTreeMap::new(),
                runtime_handler: String::new(),
                userns: None,
                resources: None,
            },
            state: SandboxState::Ready,
            created_at: 1,
            ip: None,
            additional_ips: Vec::new(),
            network_error: None,
            dir: "/nonexistent/pod".into(),
            netns: None,
            ipcns: None,
            utsns: None,
            userns: None,
            shim_pid: None,
            pause_pid: None,
            cgroup: None,
        }
    }

    pub(crate) fn container_record(
        id: &str,
        name: &str,
        attempt: u32,
        started_at: i64,
    ) -> ContainerRecord {
        ContainerRecord {
            id: id.into(),
            pod_id: "pod0123".into(),
            config: ContainerConfig {
                name: name.into(),
                attempt,
                ..Default::default()
            },
            image: ImageRef {
                name: "registry/app:1".into(),
                ..Default::default()
            },
            state: ContainerState::Running,
            created_at: 1,
            started_at,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            pid: None,
            bundle: "/nonexistent/bundle".into(),
            layer_dir: "/nonexistent/layer".into(),
            pod_dir: "/nonexistent/pod".into(),
            log_path: None,
            cgroup: format!("/pod0123/{id}"),
            stop_signal: 15,
            user: None,
        }
    }

    fn put(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// A cgroup2 cgroup with `usage_usec` of CPU, `current` bytes of memory, `procs`.
    fn cg_files(dir: &Path, usage_usec: u64, current: u64, procs: u64) {
        put(&dir.join("cgroup.procs"), "");
        put(&dir.join("cpu.stat"), &format!("usage_usec {usage_usec}\n"));
        put(&dir.join("memory.current"), &format!("{current}\n"));
        put(&dir.join("memory.stat"), "anon 1000\ninactive_file 100\n");
        put(&dir.join("pids.current"), &format!("{procs}\n"));
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        cgroups: std::path::PathBuf,
        layers: std::path::PathBuf,
        collector: Collector,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let cgroups = dir.path().join("cgroup");
        let layers = dir.path().join("containers");
        put(&cgroups.join("cgroup.controllers"), "cpu memory pids");
        let collector = Collector {
            cgroup_root: Some(cgroups.clone()),
            ..Default::default()
        };
        Fixture {
            _dir: dir,
            cgroups,
            layers,
            collector,
        }
    }

    impl Fixture {
        fn container(&self, id: &str, usage_usec: u64, current: u64) -> ContainerRecord {
            let mut r = container_record(id, id, 0, 1);
            r.layer_dir = self.layers.join(id);
            std::fs::create_dir_all(r.upper_dir()).unwrap();
            cg_files(
                &self.cgroups.join("pod0123").join(id),
                usage_usec,
                current,
                1,
            );
            r
        }
    }

    #[test]
    fn container_stats_from_its_cgroup_and_layer() {
        let f = fixture();
        let c = f.container("c1", 3_000, 5_000);
        std::fs::write(c.upper_dir().join("data"), vec![1u8; 1 << 20]).unwrap();
        let s = f.collector.container(&c);
        assert_eq!(s.id, "c1");
        assert_eq!(s.cpu.usage_core_ns, Some(3_000_000));
        assert_eq!(s.cpu.usage_nano_cores, None, "first read has no rate");
        assert_eq!(s.memory.usage_bytes, Some(5_000));
        assert_eq!(s.memory.working_set_bytes, Some(4_900));
        // Not in CRI's ContainerStats, so not read for it.
        assert_eq!(s.processes.count, None);
        let layer = s.writable_layer.expect("layer");
        assert!(layer.used_bytes >= 1 << 20, "{layer:?}");
        assert_eq!(layer.inodes_used, 2);
        assert_eq!(layer.mountpoint, f.layers);
        assert!(s.swap.is_none());
        assert!(
            s.detail.is_none(),
            "metrics-only figures aren't read for stats"
        );
    }

    #[test]
    fn second_read_gives_a_rate() {
        let f = fixture();
        let c = f.container("c1", 0, 1);
        assert_eq!(f.collector.container(&c).cpu.usage_nano_cores, None);
        std::thread::sleep(sampler::MIN_WINDOW + Duration::from_millis(20));
        // A whole core's worth of CPU over the window, at least.
        let usec = (sampler::MIN_WINDOW + Duration::from_millis(20)).as_micros() as u64;
        cg_files(&f.cgroups.join("pod0123/c1"), usec, 1, 1);
        let rate = f.collector.containers(std::slice::from_ref(&c))[0]
            .cpu
            .usage_nano_cores
            .expect("a rate");
        assert!(
            rate > 500_000_000 && rate <= 1_000_000_000,
            "{rate} nanocores"
        );
    }

    #[test]
    fn a_container_without_cgroup_or_layer_has_no_figures() {
        let f = fixture();
        let mut c = container_record("gone", "gone", 0, 1);
        c.state = ContainerState::Exited;
        let s = f.collector.container(&c);
        assert_eq!(s.cpu.usage_core_ns, None);
        assert!(s.cpu.timestamp > 0);
        assert_eq!(s.memory.working_set_bytes, None);
        assert!(s.writable_layer.is_none());
    }

    #[test]
    fn pod_with_a_cgroup_reads_it_and_without_one_sums() {
        let f = fixture();
        let a = f.container("a", 1_000, 100);
        let b = f.container("b", 2_000, 200);
        let mut exited = f.container("x", 50_000, 9_999);
        exited.state = ContainerState::Exited;
        let all = vec![a, b, exited];

        let pod = pod_record("pod0123", None);
        let s = f.collector.pod(&pod, &all);
        assert_eq!(s.containers.len(), 2, "running containers only");
        assert_eq!(s.cpu.usage_core_ns, Some(3_000_000));
        assert_eq!(s.memory.usage_bytes, Some(300));
        assert_eq!(s.processes.count, Some(2));
        assert!(s.network.is_none());

        // With a cgroup_parent the pod's own cgroup is the truth (it holds the pause too).
        cg_files(&f.cgroups.join("pod0123"), 10_000, 4_096, 3);
        let pod = pod_record("pod0123", Some("/pod0123"));
        let s = f.collector.pod(&pod, &all);
        assert_eq!(s.cpu.usage_core_ns, Some(10_000_000));
        assert_eq!(s.memory.usage_bytes, Some(4_096));
        assert_eq!(s.processes.count, Some(3));
        assert_eq!(s.containers.len(), 2);
    }

    #[test]
    fn retain_drops_removed_ones() {
        let f = fixture();
        let a = f.container("a", 1, 1);
        let b = f.container("b", 1, 1);
        f.collector.containers(&[a, b]);
        assert_eq!(f.collector.containers_cpu.len(), 2);
        f.collector.retain_containers(&["a"].into_iter().collect());
        assert_eq!(f.collector.containers_cpu.len(), 1);
        f.collector.forget_container("a");
        assert_eq!(f.collector.containers_cpu.len(), 0);
        cg_files(&f.cgroups.join("pod0123"), 1, 1, 1);
        let pod = pod_record("pod0123", Some("/pod0123"));
        f.collector.pod(&pod, &[]);
        assert_eq!(f.collector.pods_cpu.len(), 1);
        f.collector.retain_pods(&HashSet::new());
        assert_eq!(f.collector.pods_cpu.len(), 0);
    }

    #[test]
    fn parallel_map_keeps_order() {
        for n in [0, 1, 7, 8, 16, 17, 100] {
            let items: Vec<usize> = (0..n).collect();
            let out = parallel_map(&items, |i| i * 2);
            assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>(), "{n}");
        }
    }

    #[test]
    fn pod_metrics_cover_running_containers_without_sampling() {
        let f = fixture();
        let a = f.container("a", 1_000, 100);
        let pod = pod_record("pod0123", None);
        let m = f.collector.pod_metrics(&pod, std::slice::from_ref(&a));
        assert_eq!(m.pod_id, "pod0123");
        assert_eq!(m.containers.len(), 1);
        assert!(m.metrics.is_empty(), "no netns, no network metrics");
        let names: HashSet<&str> = m.containers[0].metrics.iter().map(|x| x.name).collect();
        for want in [
            "container_cpu_usage_seconds_total",
            "container_memory_working_set_bytes",
            "container_fs_usage_bytes",
            "container_fs_inodes_total",
            "container_processes",
        ] {
            assert!(names.contains(want), "{want} missing: {names:?}");
        }
        assert_eq!(f.collector.containers_cpu.len(), 0);
    }

    #[test]
    fn a_running_container_has_every_container_metric() {
        let f = fixture();
        let a = f.container("a", 1_000, 100);
        // The files a cgroup2 container has beyond cg_files's.
        let dir = f.cgroups.join("pod0123/a");
        put(
            &dir.join("cpu.stat"),
            "usage_usec 1000\nuser_usec 600\nsystem_usec 400\nnr_periods 1\nnr_throttled 0\nthrottled_usec 0\n",
        );
        put(
            &dir.join("memory.stat"),
            "anon 60\nfile 40\ninactive_file 10\npgfault 5\npgmajfault 1\nkernel 8\nfile_mapped 4\n",
        );
        put(&dir.join("pids.max"), "max\n");
        put(&dir.join("cpu.max"), "max 100000\n");
        put(&dir.join("cpu.weight"), "100\n");
        put(&dir.join("memory.events"), "max 0\noom_kill 0\n");
        put(
            &dir.join("io.stat"),
            "8:0 rbytes=1 wbytes=2 rios=3 wios=4\n",
        );
        let pod = pod_record("pod0123", None);
        let m = f.collector.pod_metrics(&pod, std::slice::from_ref(&a));
        let detail = m.containers[0].metrics.iter();
        let names: HashSet<&str> = detail.map(|x| x.name).collect();
        // All but the network ones, which are the pod's (and this pod has no netns).
        for d in descriptors() {
            if d.label_keys.contains(&"interface") {
                continue;
            }
            assert!(names.contains(d.name), "{} missing", d.name);
        }
        let get = |name: &str| {
            m.containers[0]
                .metrics
                .iter()
                .find(|x| x.name == name)
                .map(|x| x.value)
        };
        assert_eq!(get("container_spec_cpu_period"), Some(100_000));
        assert_eq!(get("container_threads"), Some(1));
        assert_eq!(get("container_threads_max"), Some(0));
        assert_eq!(get("container_memory_failcnt"), Some(0));
        assert_eq!(get("container_fs_writes_total"), Some(4));
    }
}
