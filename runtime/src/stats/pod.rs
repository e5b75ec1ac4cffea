//! A pod's stats: its cgroup, its containers, its network.
//!
//! A pod with a `cgroup_parent` (every pod kubelet makes) is measured on that cgroup, which
//! holds its containers' cgroups and the pause: the kernel's totals are the pod's. A pod
//! without one (crictl's) has no cgroup of its own, so its figures are the sums of its
//! containers'; its CPU rate is the sum of theirs too, not a rate of the sum, which would
//! jump whenever a container joins or leaves the sum.

use super::container::{CgroupRead, ContainerStats};
use super::network::NetworkUsage;
use super::{CpuUsage, MemoryUsage, ProcessUsage};

/// What a pod has used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodStats {
    pub id: String,
    pub cpu: CpuUsage,
    pub memory: MemoryUsage,
    /// `None` for a host-network pod and a stopped one.
    pub network: Option<NetworkUsage>,
    pub processes: ProcessUsage,
    /// Its running containers.
    pub containers: Vec<ContainerStats>,
}

/// The pod's own cgroup, read: its figures as the kernel totals them.
pub(crate) fn from_cgroup(
    id: &str,
    read: &CgroupRead,
    usage_nano_cores: Option<u64>,
    network: Option<NetworkUsage>,
    containers: Vec<ContainerStats>,
) -> PodStats {
    PodStats {
        id: id.to_string(),
        cpu: read.cpu(usage_nano_cores),
        memory: read.memory(),
        network,
        processes: read.processes(),
        containers,
    }
}

/// A pod without a cgroup: the sums of its containers' figures. A figure is absent only
/// when no container has it. No limit applies to the sum, so neither limit nor available
/// memory is given.
pub(crate) fn summed(
    id: &str,
    timestamp: i64,
    network: Option<NetworkUsage>,
    containers: Vec<ContainerStats>,
) -> PodStats {
    let sum = |f: &dyn Fn(&ContainerStats) -> Option<u64>| -> Option<u64> {
        containers
            .iter()
            .filter_map(f)
            .fold(None, |acc: Option<u64>, v| {
                Some(acc.unwrap_or(0).saturating_add(v))
            })
    };
    let cpu = CpuUsage {
        timestamp,
        usage_core_ns: sum(&|c| c.cpu.usage_core_ns),
        usage_nano_cores: sum(&|c| c.cpu.usage_nano_cores),
        user_ns: sum(&|c| c.cpu.user_ns),
        system_ns: sum(&|c| c.cpu.system_ns),
        periods: sum(&|c| c.cpu.periods),
        throttled_periods: sum(&|c| c.cpu.throttled_periods),
        throttled_ns: sum(&|c| c.cpu.throttled_ns),
    };
    let memory = MemoryUsage {
        timestamp,
        usage_bytes: sum(&|c| c.memory.usage_bytes),
        working_set_bytes: sum(&|c| c.memory.working_set_bytes),
        available_bytes: None,
        rss_bytes: sum(&|c| c.memory.rss_bytes),
        cache_bytes: sum(&|c| c.memory.cache_bytes),
        page_faults: sum(&|c| c.memory.page_faults),
        major_page_faults: sum(&|c| c.memory.major_page_faults),
        limit_bytes: None,
        oom_kills: sum(&|c| c.memory.oom_kills),
    };
    let processes = ProcessUsage {
        timestamp,
        count: sum(&|c| c.processes.count),
    };
    PodStats {
        id: id.to_string(),
        cpu,
        memory,
        network,
        processes,
        containers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctr(id: &str, cpu: Option<u64>, rate: Option<u64>, ws: Option<u64>) -> ContainerStats {
        ContainerStats {
            id: id.into(),
            cpu: CpuUsage {
                usage_core_ns: cpu,
                usage_nano_cores: rate,
                ..Default::default()
            },
            memory: MemoryUsage {
                working_set_bytes: ws,
                limit_bytes: Some(100),
                ..Default::default()
            },
            processes: ProcessUsage {
                count: Some(1),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn sums_what_the_containers_have() {
        let p = summed(
            "pod",
            7,
            None,
            vec![
                ctr("a", Some(10), Some(100), Some(1000)),
                ctr("b", Some(5), None, None),
            ],
        );
        assert_eq!(p.id, "pod");
        assert_eq!(p.cpu.timestamp, 7);
        assert_eq!(p.cpu.usage_core_ns, Some(15));
        // Only a has a rate yet: the pod's is a's.
        assert_eq!(p.cpu.usage_nano_cores, Some(100));
        assert_eq!(p.memory.working_set_bytes, Some(1000));
        assert_eq!(p.memory.limit_bytes, None);
        assert_eq!(p.memory.available_bytes, None);
        assert_eq!(p.memory.rss_bytes, None);
        assert_eq!(p.processes.count, Some(2));
        assert_eq!(p.containers.len(), 2);
    }

    #[test]
    fn no_containers_no_figures() {
        let p = summed("pod", 1, None, Vec::new());
        assert_eq!(p.cpu.usage_core_ns, None);
        assert_eq!(p.memory.usage_bytes, None);
        assert_eq!(p.processes.count, None);
    }
}
