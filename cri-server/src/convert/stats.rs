//! runtime stats and metrics → the CRI stats messages. A figure the runtime could not read
//! (`None`) is left out of the message, never sent as a made-up 0: kubelet tells the two
//! apart (it computes `usage_nano_cores` itself when the runtime gives none).

use std::collections::{BTreeMap, HashMap};

use runtime::container::ContainerRecord;
use runtime::sandbox::SandboxRecord;
use runtime::stats::{
    ContainerMetrics, ContainerStats, CpuUsage, Descriptor, InterfaceUsage, LayerUsage,
    MemoryUsage, Metric, MetricKind, NetworkUsage, PodMetrics, PodStats, ProcessUsage, SwapUsage,
};

fn u64v(v: Option<u64>) -> Option<proto::UInt64Value> {
    v.map(|value| proto::UInt64Value { value })
}

fn map(m: &BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

pub fn container_attributes(r: &ContainerRecord) -> proto::ContainerAttributes {
    proto::ContainerAttributes {
        id: r.id.clone(),
        metadata: Some(proto::ContainerMetadata {
            name: r.config.name.clone(),
            attempt: r.config.attempt,
        }),
        labels: map(&r.config.labels),
        annotations: map(&r.config.annotations),
    }
}

pub fn sandbox_attributes(r: &SandboxRecord) -> proto::PodSandboxAttributes {
    proto::PodSandboxAttributes {
        id: r.id.clone(),
        metadata: Some(proto::PodSandboxMetadata {
            name: r.config.name.clone(),
            uid: r.config.uid.clone(),
            namespace: r.config.namespace.clone(),
            attempt: r.config.attempt,
        }),
        labels: map(&r.config.labels),
        annotations: map(&r.config.annotations),
    }
}

fn cpu(c: &CpuUsage) -> proto::CpuUsage {
    proto::CpuUsage {
        timestamp: c.timestamp,
        usage_core_nano_seconds: u64v(c.usage_core_ns),
        usage_nano_cores: u64v(c.usage_nano_cores),
    }
}

fn memory(m: &MemoryUsage) -> proto::MemoryUsage {
    proto::MemoryUsage {
        timestamp: m.timestamp,
        working_set_bytes: u64v(m.working_set_bytes),
        available_bytes: u64v(m.available_bytes),
        usage_bytes: u64v(m.usage_bytes),
        rss_bytes: u64v(m.rss_bytes),
        page_faults: u64v(m.page_faults),
        major_page_faults: u64v(m.major_page_faults),
    }
}

fn swap(s: &SwapUsage) -> proto::SwapUsage {
    proto::SwapUsage {
        timestamp: s.timestamp,
        swap_available_bytes: u64v(s.available_bytes),
        swap_usage_bytes: u64v(s.usage_bytes),
    }
}

fn layer(l: &LayerUsage) -> proto::FilesystemUsage {
    proto::FilesystemUsage {
        timestamp: l.timestamp,
        fs_id: Some(proto::FilesystemIdentifier {
            mountpoint: l.mountpoint.display().to_string(),
        }),
        used_bytes: u64v(Some(l.used_bytes)),
        inodes_used: u64v(Some(l.inodes_used)),
    }
}

fn process(p: &ProcessUsage) -> proto::ProcessUsage {
    proto::ProcessUsage {
        timestamp: p.timestamp,
        process_count: u64v(p.count),
    }
}

fn interface(i: &InterfaceUsage) -> proto::NetworkInterfaceUsage {
    proto::NetworkInterfaceUsage {
        name: i.name.clone(),
        rx_bytes: u64v(Some(i.rx_bytes)),
        rx_errors: u64v(Some(i.rx_errors)),
        tx_bytes: u64v(Some(i.tx_bytes)),
        tx_errors: u64v(Some(i.tx_errors)),
    }
}

fn network(n: &NetworkUsage) -> proto::NetworkUsage {
    proto::NetworkUsage {
        timestamp: n.timestamp,
        default_interface: n.default_interface.as_ref().map(interface),
        interfaces: n.interfaces.iter().map(interface).collect(),
    }
}

/// A container's stats, attributes from its record.
pub fn to_container_stats(r: &ContainerRecord, s: &ContainerStats) -> proto::ContainerStats {
    proto::ContainerStats {
        attributes: Some(container_attributes(r)),
        cpu: Some(cpu(&s.cpu)),
        memory: Some(memory(&s.memory)),
        writable_layer: s.writable_layer.as_ref().map(layer),
        swap: s.swap.as_ref().map(swap),
    }
}

/// A pod's stats; `containers` are the records of the containers in `s.containers` (matched
/// by id; stats without a record are left out).
pub fn to_pod_stats(
    pod: &SandboxRecord,
    containers: &[ContainerRecord],
    s: &PodStats,
) -> proto::PodSandboxStats {
    let containers = s
        .containers
        .iter()
        .filter_map(|cs| {
            let r = containers.iter().find(|c| c.id == cs.id)?;
            Some(to_container_stats(r, cs))
        })
        .collect();
    proto::PodSandboxStats {
        attributes: Some(sandbox_attributes(pod)),
        linux: Some(proto::LinuxPodSandboxStats {
            cpu: Some(cpu(&s.cpu)),
            memory: Some(memory(&s.memory)),
            network: s.network.as_ref().map(network),
            process: Some(process(&s.processes)),
            containers,
        }),
        windows: None,
    }
}

fn kind(k: MetricKind) -> i32 {
    (match k {
        MetricKind::Counter => proto::MetricType::Counter,
        MetricKind::Gauge => proto::MetricType::Gauge,
    }) as i32
}

pub fn to_descriptor(d: &Descriptor) -> proto::MetricDescriptor {
    proto::MetricDescriptor {
        name: d.name.to_string(),
        help: d.help.to_string(),
        label_keys: d.label_keys.iter().map(|k| k.to_string()).collect(),
    }
}

fn metric(m: Metric) -> proto::Metric {
    proto::Metric {
        name: m.name.to_string(),
        timestamp: m.timestamp,
        metric_type: kind(m.kind),
        label_values: m.label_values,
        value: u64v(Some(m.value)),
    }
}

fn container_metrics(c: ContainerMetrics) -> proto::ContainerMetrics {
    proto::ContainerMetrics {
        container_id: c.container_id,
        metrics: c.metrics.into_iter().map(metric).collect(),
    }
}

pub fn to_pod_metrics(p: PodMetrics) -> proto::PodSandboxMetrics {
    proto::PodSandboxMetrics {
        pod_sandbox_id: p.pod_id,
        metrics: p.metrics.into_iter().map(metric).collect(),
        container_metrics: p.containers.into_iter().map(container_metrics).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_figures_stay_absent() {
        let s = ContainerStats {
            id: "c".into(),
            cpu: CpuUsage {
                timestamp: 5,
                usage_core_ns: Some(10),
                ..Default::default()
            },
            ..Default::default()
        };
        let c = cpu(&s.cpu);
        assert_eq!(c.timestamp, 5);
        assert_eq!(c.usage_core_nano_seconds.map(|v| v.value), Some(10));
        assert!(c.usage_nano_cores.is_none());
        let m = memory(&s.memory);
        assert!(m.working_set_bytes.is_none() && m.available_bytes.is_none());
    }

    #[test]
    fn descriptors_and_metrics_keep_their_labels() {
        let d = runtime::stats::descriptors()
            .iter()
            .find(|d| d.name == "container_network_receive_bytes_total")
            .map(to_descriptor)
            .expect("network descriptor");
        assert_eq!(d.label_keys.last().map(String::as_str), Some("interface"));
        let m = metric(Metric {
            name: "container_processes",
            kind: MetricKind::Gauge,
            timestamp: 0,
            label_values: vec!["a".into(), "b".into()],
            value: 3,
        });
        assert_eq!(m.metric_type, proto::MetricType::Gauge as i32);
        assert_eq!(m.label_values, ["a", "b"]);
        assert_eq!(m.value.map(|v| v.value), Some(3));
    }
}
