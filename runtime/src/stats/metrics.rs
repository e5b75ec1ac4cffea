//! The cAdvisor-style metrics of ListMetricDescriptors and ListPodSandboxMetrics, which
//! kubelet re-exports on its `/metrics/cadvisor` endpoint when it takes pod and container
//! stats from the runtime (`PodAndContainerStatsFromCRI`).
//!
//! Names, help and meaning follow cAdvisor, so dashboards and alerts written for it keep
//! working. Labels are the ones cAdvisor's kubelet endpoint carries (`container`, `id`,
//! `image`, `name`, `namespace`, `pod`), plus `cpu`, `interface`, `failure_type`/`scope`,
//! `device` (and `major`/`minor`/`operation` on `container_blkio_device_usage_total`) on
//! the metrics that cAdvisor gives them. Network metrics belong to the pod, not to one of
//! its containers: as CRI-O does, they come in the pod's own list with `container="POD"`.
//! The figures only metrics carry ([`Detail`]) are all reported whenever the container's
//! cgroup was read, 0s included, as cAdvisor reports them.
//!
//! CRI carries every value as a u64, so the `_seconds_total` counters are whole seconds
//! (as CRI-O reports them). A metric read live has timestamp 0 (kubelet stamps it); the
//! filesystem ones carry the time their (cached) measurement was taken.
//!
//! Each metric is made from its descriptor, with the descriptor's label keys, so the two
//! cannot disagree; the tests check it over every metric produced.

use super::container::ContainerStats;
use super::detail::Detail;
use super::pod::PodStats;
use crate::container::ContainerRecord;
use crate::sandbox::SandboxRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    pub name: &'static str,
    pub help: &'static str,
    /// In the order of every metric's `label_values`.
    pub label_keys: &'static [&'static str],
    pub kind: MetricKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    pub name: &'static str,
    pub kind: MetricKind,
    /// Unix nanoseconds when the value was measured, 0 when measured for this call.
    pub timestamp: i64,
    /// One value per key of the descriptor, in its order.
    pub label_values: Vec<String>,
    pub value: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerMetrics {
    pub container_id: String,
    pub metrics: Vec<Metric>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodMetrics {
    pub pod_id: String,
    /// The pod's own: its network.
    pub metrics: Vec<Metric>,
    pub containers: Vec<ContainerMetrics>,
}

/// The filesystem holding the writable layers (statvfs), for the cAdvisor metrics that
/// describe the filesystem rather than the container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsCapacity {
    pub capacity_bytes: u64,
    pub inodes_total: u64,
    pub inodes_free: u64,
}

const BASE: &[&str] = &["container", "id", "image", "name", "namespace", "pod"];
const WITH_CPU: &[&str] = &[
    "container",
    "id",
    "image",
    "name",
    "namespace",
    "pod",
    "cpu",
];
const WITH_INTERFACE: &[&str] = &[
    "container",
    "id",
    "image",
    "name",
    "namespace",
    "pod",
    "interface",
];
const WITH_DEVICE: &[&str] = &[
    "container",
    "id",
    "image",
    "name",
    "namespace",
    "pod",
    "device",
];
const WITH_DEVICE_OPERATION: &[&str] = &[
    "container",
    "id",
    "image",
    "name",
    "namespace",
    "pod",
    "device",
    "major",
    "minor",
    "operation",
];
const WITH_FAILURE: &[&str] = &[
    "container",
    "id",
    "image",
    "name",
    "namespace",
    "pod",
    "failure_type",
    "scope",
];

macro_rules! descriptors {
    ($($id:ident = $name:literal, $kind:ident, $keys:ident, $help:literal;)*) => {
        $(
            const $id: Descriptor = Descriptor {
                name: $name,
                help: $help,
                label_keys: $keys,
                kind: MetricKind::$kind,
            };
        )*
        const ALL: &[Descriptor] = &[$($id),*];
    };
}

descriptors! {
    CPU_USAGE = "container_cpu_usage_seconds_total", Counter, WITH_CPU,
        "Cumulative cpu time consumed in seconds.";
    CPU_USER = "container_cpu_user_seconds_total", Counter, BASE,
        "Cumulative user cpu time consumed in seconds.";
    CPU_SYSTEM = "container_cpu_system_seconds_total", Counter, BASE,
        "Cumulative system cpu time consumed in seconds.";
    CFS_PERIODS = "container_cpu_cfs_periods_total", Counter, BASE,
        "Number of elapsed enforcement period intervals.";
    CFS_THROTTLED_PERIODS = "container_cpu_cfs_throttled_periods_total", Counter, BASE,
        "Number of throttled period intervals.";
    CFS_THROTTLED_SECONDS = "container_cpu_cfs_throttled_seconds_total", Counter, BASE,
        "Total time duration the container has been throttled.";
    MEMORY_USAGE = "container_memory_usage_bytes", Gauge, BASE,
        "Current memory usage in bytes, including all memory regardless of when it was accessed.";
    MEMORY_WORKING_SET = "container_memory_working_set_bytes", Gauge, BASE,
        "Current working set in bytes.";
    MEMORY_RSS = "container_memory_rss", Gauge, BASE,
        "Size of RSS in bytes.";
    MEMORY_CACHE = "container_memory_cache", Gauge, BASE,
        "Number of bytes of page cache memory.";
    MEMORY_SWAP = "container_memory_swap", Gauge, BASE,
        "Container swap usage in bytes.";
    MEMORY_FAILURES = "container_memory_failures_total", Counter, WITH_FAILURE,
        "Cumulative count of memory allocation failures.";
    MEMORY_FAILCNT = "container_memory_failcnt", Counter, BASE,
        "Number of memory usage hits limits.";
    MEMORY_MAX_USAGE = "container_memory_max_usage_bytes", Gauge, BASE,
        "Maximum memory usage recorded in bytes.";
    MEMORY_KERNEL = "container_memory_kernel_usage", Gauge, BASE,
        "Size of kernel memory allocated in bytes.";
    MEMORY_MAPPED_FILE = "container_memory_mapped_file", Gauge, BASE,
        "Size of memory mapped files in bytes.";
    SPEC_MEMORY_LIMIT = "container_spec_memory_limit_bytes", Gauge, BASE,
        "Memory limit for the container.";
    SPEC_MEMORY_SWAP_LIMIT = "container_spec_memory_swap_limit_bytes", Gauge, BASE,
        "Memory swap limit for the container.";
    SPEC_CPU_PERIOD = "container_spec_cpu_period", Gauge, BASE,
        "CPU period of the container.";
    SPEC_CPU_SHARES = "container_spec_cpu_shares", Gauge, BASE,
        "CPU share of the container.";
    OOM_EVENTS = "container_oom_events_total", Counter, BASE,
        "Count of out of memory events observed for the container.";
    PROCESSES = "container_processes", Gauge, BASE,
        "Number of processes running inside the container.";
    THREADS = "container_threads", Gauge, BASE,
        "Number of threads running inside the container.";
    THREADS_MAX = "container_threads_max", Gauge, BASE,
        "Maximum number of threads allowed inside the container, infinity if value is zero.";
    FILE_DESCRIPTORS = "container_file_descriptors", Gauge, BASE,
        "Number of open file descriptors for the container.";
    SOCKETS = "container_sockets", Gauge, BASE,
        "Number of open sockets for the container.";
    FS_USAGE = "container_fs_usage_bytes", Gauge, BASE,
        "Number of bytes that are consumed by the container on this filesystem.";
    FS_LIMIT = "container_fs_limit_bytes", Gauge, BASE,
        "Number of bytes that can be consumed by the container on this filesystem.";
    FS_INODES_TOTAL = "container_fs_inodes_total", Gauge, BASE,
        "Number of Inodes.";
    FS_INODES_FREE = "container_fs_inodes_free", Gauge, BASE,
        "Number of available Inodes.";
    FS_READS_BYTES = "container_fs_reads_bytes_total", Counter, WITH_DEVICE,
        "Cumulative count of bytes read.";
    FS_READS = "container_fs_reads_total", Counter, WITH_DEVICE,
        "Cumulative count of reads completed.";
    FS_WRITES_BYTES = "container_fs_writes_bytes_total", Counter, WITH_DEVICE,
        "Cumulative count of bytes written.";
    FS_WRITES = "container_fs_writes_total", Counter, WITH_DEVICE,
        "Cumulative count of writes completed.";
    BLKIO_DEVICE_USAGE = "container_blkio_device_usage_total", Counter, WITH_DEVICE_OPERATION,
        "Blkio Device bytes usage.";
    START_TIME = "container_start_time_seconds", Gauge, BASE,
        "Start time of the container since unix epoch in seconds.";
    LAST_SEEN = "container_last_seen", Gauge, BASE,
        "Last time a container was seen by the exporter.";
    NET_RX_BYTES = "container_network_receive_bytes_total", Counter, WITH_INTERFACE,
        "Cumulative count of bytes received.";
    NET_RX_PACKETS = "container_network_receive_packets_total", Counter, WITH_INTERFACE,
        "Cumulative count of packets received.";
    NET_RX_DROPPED = "container_network_receive_packets_dropped_total", Counter, WITH_INTERFACE,
        "Cumulative count of packets dropped while receiving.";
    NET_RX_ERRORS = "container_network_receive_errors_total", Counter, WITH_INTERFACE,
        "Cumulative count of errors encountered while receiving.";
    NET_TX_BYTES = "container_network_transmit_bytes_total", Counter, WITH_INTERFACE,
        "Cumulative count of bytes transmitted.";
    NET_TX_PACKETS = "container_network_transmit_packets_total", Counter, WITH_INTERFACE,
        "Cumulative count of packets transmitted.";
    NET_TX_DROPPED = "container_network_transmit_packets_dropped_total", Counter, WITH_INTERFACE,
        "Cumulative count of packets dropped while transmitting.";
    NET_TX_ERRORS = "container_network_transmit_errors_total", Counter, WITH_INTERFACE,
        "Cumulative count of errors encountered while transmitting.";
}

/// Every metric ListPodSandboxMetrics may return.
pub fn descriptors() -> &'static [Descriptor] {
    ALL
}

const NS_PER_SEC: u64 = 1_000_000_000;

/// Collects metrics that share the base label values.
struct Emitter<'a> {
    base: &'a [String],
    out: Vec<Metric>,
}

impl Emitter<'_> {
    /// Adds `desc` with `value` when there is one; `extra` are the values of the
    /// descriptor's keys beyond the base ones.
    fn add(&mut self, desc: &Descriptor, extra: &[&str], value: Option<u64>, timestamp: i64) {
        let Some(value) = value else { return };
        let mut label_values = Vec::with_capacity(desc.label_keys.len());
        label_values.extend(self.base.iter().cloned());
        label_values.extend(extra.iter().map(|s| s.to_string()));
        debug_assert_eq!(label_values.len(), desc.label_keys.len(), "{}", desc.name);
        self.out.push(Metric {
            name: desc.name,
            kind: desc.kind,
            timestamp,
            label_values,
            value,
        });
    }
}

/// kubelet's container name (`k8s_<container>_<pod>_<namespace>_<uid>_<attempt>`), which
/// cAdvisor and CRI-O report as `name`.
fn kube_name(container: &str, pod: &SandboxRecord, attempt: u32) -> String {
    let c = &pod.config;
    format!(
        "k8s_{container}_{}_{}_{}_{attempt}",
        c.name, c.namespace, c.uid
    )
}

/// One container's metrics.
pub(crate) fn container_metrics(
    pod: &SandboxRecord,
    record: &ContainerRecord,
    stats: &ContainerStats,
    fs: Option<FsCapacity>,
    now_ns: i64,
) -> ContainerMetrics {
    let base = [
        record.config.name.clone(),
        record.id.clone(),
        record.image.name.clone(),
        kube_name(&record.config.name, pod, record.config.attempt),
        pod.config.namespace.clone(),
        pod.config.name.clone(),
    ];
    let mut e = Emitter {
        base: &base,
        out: Vec::with_capacity(48),
    };
    let secs = |ns: Option<u64>| ns.map(|n| n / NS_PER_SEC);
    let (cpu, mem) = (&stats.cpu, &stats.memory);
    e.add(&CPU_USAGE, &["total"], secs(cpu.usage_core_ns), 0);
    e.add(&CPU_USER, &[], secs(cpu.user_ns), 0);
    e.add(&CPU_SYSTEM, &[], secs(cpu.system_ns), 0);
    e.add(&CFS_PERIODS, &[], cpu.periods, 0);
    e.add(&CFS_THROTTLED_PERIODS, &[], cpu.throttled_periods, 0);
    e.add(&CFS_THROTTLED_SECONDS, &[], secs(cpu.throttled_ns), 0);
    e.add(&MEMORY_USAGE, &[], mem.usage_bytes, 0);
    e.add(&MEMORY_WORKING_SET, &[], mem.working_set_bytes, 0);
    e.add(&MEMORY_RSS, &[], mem.rss_bytes, 0);
    e.add(&MEMORY_CACHE, &[], mem.cache_bytes, 0);
    // cAdvisor reports no swap accounting as 0 (when memory was read at all).
    let swap = match &stats.swap {
        Some(swap) => swap.usage_bytes,
        None => mem.usage_bytes.map(|_| 0),
    };
    e.add(&MEMORY_SWAP, &[], swap, 0);
    // cAdvisor's split of page faults: minor ones are all faults less the major ones.
    let minor = mem
        .page_faults
        .map(|all| all.saturating_sub(mem.major_page_faults.unwrap_or(0)));
    e.add(&MEMORY_FAILURES, &["pgfault", "container"], minor, 0);
    e.add(
        &MEMORY_FAILURES,
        &["pgmajfault", "container"],
        mem.major_page_faults,
        0,
    );
    // cAdvisor reports an unlimited container as 0 (when its memory was read at all).
    let limit = mem.usage_bytes.map(|_| mem.limit_bytes.unwrap_or(0));
    e.add(&SPEC_MEMORY_LIMIT, &[], limit, 0);
    e.add(&OOM_EVENTS, &[], mem.oom_kills, 0);
    e.add(&PROCESSES, &[], stats.processes.count, 0);
    if let Some(d) = &stats.detail {
        detail_metrics(&mut e, d);
    }
    if let Some(layer) = &stats.writable_layer {
        e.add(&FS_USAGE, &[], Some(layer.used_bytes), layer.timestamp);
    }
    if let Some(fs) = fs {
        e.add(&FS_LIMIT, &[], Some(fs.capacity_bytes), 0);
        e.add(&FS_INODES_TOTAL, &[], Some(fs.inodes_total), 0);
        e.add(&FS_INODES_FREE, &[], Some(fs.inodes_free), 0);
    }
    let started = u64::try_from(record.started_at).ok().filter(|s| *s > 0);
    e.add(&START_TIME, &[], started.map(|s| s / NS_PER_SEC), 0);
    let now = u64::try_from(now_ns).unwrap_or(0) / NS_PER_SEC;
    e.add(&LAST_SEEN, &[], Some(now), 0);
    ContainerMetrics {
        container_id: record.id.clone(),
        metrics: e.out,
    }
}

/// The metrics of a container's [`Detail`]: every one, 0s included, as cAdvisor reports
/// them; the I/O ones per device (and per operation for the blkio one).
fn detail_metrics(e: &mut Emitter<'_>, d: &Detail) {
    e.add(&MEMORY_FAILCNT, &[], Some(d.memory_failcnt), 0);
    e.add(&MEMORY_MAX_USAGE, &[], Some(d.memory_max_usage_bytes), 0);
    e.add(&MEMORY_KERNEL, &[], Some(d.memory_kernel_bytes), 0);
    e.add(
        &MEMORY_MAPPED_FILE,
        &[],
        Some(d.memory_mapped_file_bytes),
        0,
    );
    e.add(&SPEC_MEMORY_SWAP_LIMIT, &[], Some(d.swap_limit_bytes), 0);
    e.add(&SPEC_CPU_PERIOD, &[], Some(d.cpu_period_us), 0);
    e.add(&SPEC_CPU_SHARES, &[], Some(d.cpu_shares), 0);
    e.add(&THREADS, &[], Some(d.threads), 0);
    e.add(&THREADS_MAX, &[], Some(d.threads_max), 0);
    e.add(&FILE_DESCRIPTORS, &[], Some(d.file_descriptors), 0);
    e.add(&SOCKETS, &[], Some(d.sockets), 0);
    for dev in &d.devices {
        let device = [dev.device.as_str()];
        // As cAdvisor: the byte counts for each device of the bytes table, the operation
        // counts for each of the operations table.
        if !dev.bytes.is_empty() {
            e.add(&FS_READS_BYTES, &device, Some(dev.read_bytes()), 0);
            e.add(&FS_WRITES_BYTES, &device, Some(dev.write_bytes()), 0);
        }
        if !dev.ios.is_empty() {
            e.add(&FS_READS, &device, Some(dev.reads()), 0);
            e.add(&FS_WRITES, &device, Some(dev.writes()), 0);
        }
        let (major, minor) = (dev.major.to_string(), dev.minor.to_string());
        for (op, value) in &dev.bytes {
            let labels = [dev.device.as_str(), &major, &minor, op];
            e.add(&BLKIO_DEVICE_USAGE, &labels, Some(*value), 0);
        }
    }
}

/// A pod's metrics: its network as `container="POD"`, and each of `containers` (its
/// running ones, whose stats are in `stats.containers`, matched by id).
pub(crate) fn pod_metrics(
    pod: &SandboxRecord,
    containers: &[ContainerRecord],
    stats: &PodStats,
    fs: Option<FsCapacity>,
    now_ns: i64,
) -> PodMetrics {
    let base = [
        "POD".to_string(),
        pod.id.clone(),
        String::new(),
        kube_name("POD", pod, pod.config.attempt),
        pod.config.namespace.clone(),
        pod.config.name.clone(),
    ];
    let mut e = Emitter {
        base: &base,
        out: Vec::new(),
    };
    for i in stats.network.iter().flat_map(|n| n.all()) {
        let name = [i.name.as_str()];
        e.add(&NET_RX_BYTES, &name, Some(i.rx_bytes), 0);
        e.add(&NET_RX_PACKETS, &name, Some(i.rx_packets), 0);
        e.add(&NET_RX_DROPPED, &name, Some(i.rx_dropped), 0);
        e.add(&NET_RX_ERRORS, &name, Some(i.rx_errors), 0);
        e.add(&NET_TX_BYTES, &name, Some(i.tx_bytes), 0);
        e.add(&NET_TX_PACKETS, &name, Some(i.tx_packets), 0);
        e.add(&NET_TX_DROPPED, &name, Some(i.tx_dropped), 0);
        e.add(&NET_TX_ERRORS, &name, Some(i.tx_errors), 0);
    }
    let containers = stats
        .containers
        .iter()
        .filter_map(|s| {
            let record = containers.iter().find(|c| c.id == s.id)?;
            Some(container_metrics(pod, record, s, fs, now_ns))
        })
        .collect();
    PodMetrics {
        pod_id: pod.id.clone(),
        metrics: e.out,
        containers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::detail::DeviceIo;
    use crate::stats::network::{InterfaceUsage, NetworkUsage};
    use crate::stats::{CpuUsage, LayerUsage, MemoryUsage, ProcessUsage, SwapUsage};
    use std::collections::{HashMap, HashSet};

    fn pod_record() -> SandboxRecord {
        crate::stats::tests::pod_record("pod0123", None)
    }

    fn container_record(id: &str) -> ContainerRecord {
        crate::stats::tests::container_record(id, "app", 1, 5_000_000_000)
    }

    fn full_stats(id: &str) -> ContainerStats {
        ContainerStats {
            id: id.into(),
            cpu: CpuUsage {
                timestamp: 1,
                usage_core_ns: Some(3_500_000_000),
                usage_nano_cores: Some(10),
                user_ns: Some(2_000_000_000),
                system_ns: Some(1_500_000_000),
                periods: Some(5),
                throttled_periods: Some(1),
                throttled_ns: Some(1),
            },
            memory: MemoryUsage {
                timestamp: 1,
                usage_bytes: Some(100),
                working_set_bytes: Some(90),
                available_bytes: None,
                rss_bytes: Some(60),
                cache_bytes: Some(40),
                page_faults: Some(50),
                major_page_faults: Some(5),
                limit_bytes: None,
                oom_kills: Some(0),
            },
            swap: Some(SwapUsage {
                timestamp: 1,
                usage_bytes: Some(7),
                available_bytes: None,
                limit_bytes: None,
            }),
            writable_layer: Some(LayerUsage {
                timestamp: 99,
                mountpoint: "/var/lib/corral/containers".into(),
                used_bytes: 4096,
                inodes_used: 3,
            }),
            processes: ProcessUsage {
                timestamp: 1,
                count: Some(2),
            },
            detail: Some(Detail {
                memory_max_usage_bytes: 150,
                memory_failcnt: 3,
                memory_kernel_bytes: 8,
                memory_mapped_file_bytes: 9,
                swap_limit_bytes: 0,
                cpu_period_us: 100_000,
                cpu_shares: 1024,
                threads: 5,
                threads_max: 0,
                file_descriptors: 12,
                sockets: 2,
                devices: vec![DeviceIo {
                    major: 8,
                    minor: 0,
                    device: "/dev/sda".into(),
                    bytes: vec![("Read".into(), 4096), ("Write".into(), 512)],
                    ios: vec![("Read".into(), 2), ("Write".into(), 1)],
                }],
            }),
        }
    }

    fn sample() -> PodMetrics {
        let pod = pod_record();
        let records = vec![container_record("c1")];
        let iface = |name: &str| InterfaceUsage {
            name: name.into(),
            rx_bytes: 1000,
            ..Default::default()
        };
        let stats = PodStats {
            id: pod.id.clone(),
            network: Some(NetworkUsage {
                timestamp: 1,
                default_interface: Some(iface("eth0")),
                interfaces: vec![iface("net1")],
            }),
            containers: vec![full_stats("c1"), full_stats("not-a-record")],
            ..Default::default()
        };
        let fs = FsCapacity {
            capacity_bytes: 1 << 30,
            inodes_total: 1000,
            inodes_free: 900,
        };
        pod_metrics(&pod, &records, &stats, Some(fs), 7_500_000_000)
    }

    #[test]
    fn every_metric_matches_its_descriptor() {
        let by_name: HashMap<&str, &Descriptor> =
            descriptors().iter().map(|d| (d.name, d)).collect();
        assert_eq!(by_name.len(), descriptors().len(), "duplicate names");
        let m = sample();
        let all = m
            .metrics
            .iter()
            .chain(m.containers.iter().flat_map(|c| &c.metrics));
        let mut names = HashSet::new();
        for metric in all {
            let d = by_name
                .get(metric.name)
                .unwrap_or_else(|| panic!("no descriptor for {}", metric.name));
            assert_eq!(metric.label_values.len(), d.label_keys.len(), "{}", d.name);
            assert_eq!(metric.kind, d.kind, "{}", d.name);
            names.insert(metric.name);
        }
        // With every figure present, every descriptor is used.
        for d in descriptors() {
            assert!(names.contains(d.name), "{} never produced", d.name);
        }
    }

    #[test]
    fn labels_values_and_units() {
        let m = sample();
        assert_eq!(m.pod_id, "pod0123");
        // Only containers with a record; the stray stats entry is dropped.
        assert_eq!(m.containers.len(), 1);
        let c = &m.containers[0];
        assert_eq!(c.container_id, "c1");
        let get = |name: &str| c.metrics.iter().find(|x| x.name == name).unwrap();
        let cpu = get("container_cpu_usage_seconds_total");
        assert_eq!(
            cpu.label_values,
            [
                "app",
                "c1",
                "registry/app:1",
                "k8s_app_web_prod_uid-1_1",
                "prod",
                "web",
                "total"
            ]
        );
        assert_eq!(cpu.value, 3);
        assert_eq!(cpu.timestamp, 0);
        assert_eq!(get("container_cpu_user_seconds_total").value, 2);
        assert_eq!(get("container_memory_working_set_bytes").value, 90);
        // Unlimited: 0, as cAdvisor says it.
        assert_eq!(get("container_spec_memory_limit_bytes").value, 0);
        assert_eq!(get("container_start_time_seconds").value, 5);
        assert_eq!(get("container_last_seen").value, 7);
        let fs = get("container_fs_usage_bytes");
        assert_eq!((fs.value, fs.timestamp), (4096, 99));
        let faults: Vec<(&str, u64)> = c
            .metrics
            .iter()
            .filter(|x| x.name == "container_memory_failures_total")
            .map(|x| (x.label_values[6].as_str(), x.value))
            .collect();
        assert_eq!(faults, [("pgfault", 45), ("pgmajfault", 5)]);
        // The detail's figures, 0s included.
        assert_eq!(get("container_memory_max_usage_bytes").value, 150);
        assert_eq!(get("container_spec_cpu_shares").value, 1024);
        assert_eq!(get("container_spec_memory_swap_limit_bytes").value, 0);
        assert_eq!(get("container_threads_max").value, 0);
        assert_eq!(get("container_sockets").value, 2);
        let reads = get("container_fs_reads_bytes_total");
        assert_eq!(reads.label_values[6], "/dev/sda");
        assert_eq!(reads.value, 4096);
        assert_eq!(get("container_fs_writes_total").value, 1);
        let blkio: Vec<(&[String], u64)> = c
            .metrics
            .iter()
            .filter(|x| x.name == "container_blkio_device_usage_total")
            .map(|x| (&x.label_values[6..], x.value))
            .collect();
        assert_eq!(blkio.len(), 2);
        assert_eq!(blkio[0].0, ["/dev/sda", "8", "0", "Read"]);
        assert_eq!(blkio[1].0, ["/dev/sda", "8", "0", "Write"]);
        assert_eq!((blkio[0].1, blkio[1].1), (4096, 512));

        // The network is the pod's, one series per interface.
        let rx: Vec<&Metric> = m
            .metrics
            .iter()
            .filter(|x| x.name == "container_network_receive_bytes_total")
            .collect();
        assert_eq!(rx.len(), 2);
        assert_eq!(
            rx[0].label_values,
            [
                "POD",
                "pod0123",
                "",
                "k8s_POD_web_prod_uid-1_2",
                "prod",
                "web",
                "eth0"
            ]
        );
        assert_eq!(rx[1].label_values[6], "net1");
        assert_eq!(rx[0].kind, MetricKind::Counter);
    }

    #[test]
    fn without_swap_accounting_swap_is_0() {
        let pod = pod_record();
        let record = container_record("c1");
        let mut stats = full_stats("c1");
        stats.swap = None;
        let m = container_metrics(&pod, &record, &stats, None, 1);
        let swap = m.metrics.iter().find(|x| x.name == "container_memory_swap");
        assert_eq!(swap.map(|x| x.value), Some(0));
    }

    #[test]
    fn absent_figures_make_no_metric() {
        let pod = pod_record();
        let record = container_record("c1");
        let stats = ContainerStats {
            id: "c1".into(),
            ..Default::default()
        };
        let m = container_metrics(&pod, &record, &stats, None, 1_000_000_000);
        let names: Vec<&str> = m.metrics.iter().map(|x| x.name).collect();
        assert_eq!(
            names,
            ["container_start_time_seconds", "container_last_seen"]
        );
    }
}
