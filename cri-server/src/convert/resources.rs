//! CRI `LinuxContainerResources` ↔ runtime limits: for CreateContainer, RunPodSandbox and
//! UpdateContainerResources (in), and ContainerStatus (out). CRI's zero means "not set" for
//! every field. Errors name the field under the prefix the request uses
//! (`config.linux.resources`, or `linux` for an update).

use runtime::cgroups::Resources;

use crate::status::CriError;

/// The kernel's CFS bounds (µs): a period in [1 ms, 1 s], a quota of at least 1 ms.
const MIN_CFS_US: i64 = 1_000;
const MAX_CFS_PERIOD_US: i64 = 1_000_000;

fn invalid(prefix: &str, name: &str, reason: String) -> CriError {
    CriError::from(runtime::Error::invalid(format!("{prefix}.{name}"), reason))
}

/// CRI resources → cgroup limits, shape-checked. Values the kernel refuses outright (a
/// negative weight, a CFS period out of range) are refused here, naming the field.
pub fn resources(r: &proto::LinuxContainerResources, prefix: &str) -> Result<Resources, CriError> {
    let positive = |v: i64, name: &str| -> Result<Option<u64>, CriError> {
        match v {
            0 => Ok(None),
            v if v > 0 => Ok(Some(v as u64)),
            v => Err(invalid(prefix, name, format!("{v} is negative"))),
        }
    };
    if r.cpu_period != 0 && !(MIN_CFS_US..=MAX_CFS_PERIOD_US).contains(&r.cpu_period) {
        return Err(invalid(
            prefix,
            "cpu_period",
            format!(
                "{} µs is outside [{MIN_CFS_US}, {MAX_CFS_PERIOD_US}]",
                r.cpu_period
            ),
        ));
    }
    if r.cpu_quota > 0 && r.cpu_quota < MIN_CFS_US {
        return Err(invalid(
            prefix,
            "cpu_quota",
            format!(
                "{} µs is below the kernel's minimum {MIN_CFS_US}",
                r.cpu_quota
            ),
        ));
    }
    let hugepage_limits = r
        .hugepage_limits
        .iter()
        .map(|h| (h.page_size.clone(), h.limit))
        .collect();
    Ok(Resources {
        cpu_shares: positive(r.cpu_shares, "cpu_shares")?,
        cpu_quota: Some(r.cpu_quota).filter(|q| *q != 0),
        cpu_period: positive(r.cpu_period, "cpu_period")?,
        memory_limit: Some(r.memory_limit_in_bytes).filter(|m| *m != 0),
        memory_swap_limit: Some(r.memory_swap_limit_in_bytes).filter(|m| *m != 0),
        // The CRI has no pids limit per container (kubelet sets it on the pod's cgroup).
        pids_limit: None,
        cpuset_cpus: Some(r.cpuset_cpus.clone()).filter(|c| !c.is_empty()),
        cpuset_mems: Some(r.cpuset_mems.clone()).filter(|c| !c.is_empty()),
        hugepage_limits,
        unified: r
            .unified
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    })
}

/// `oom_score_adj`: [-1000, 1000], 0 = not set.
pub fn oom_score_adj(v: i64, prefix: &str) -> Result<Option<i32>, CriError> {
    match v {
        0 => Ok(None),
        -1000..=1000 => Ok(Some(v as i32)),
        v => Err(invalid(
            prefix,
            "oom_score_adj",
            format!("{v} is outside [-1000, 1000]"),
        )),
    }
}

/// What ContainerStatus.resources reports: the limits in force (zero where unset).
pub fn to_proto(r: Option<&Resources>, oom_score_adj: Option<i32>) -> proto::ContainerResources {
    let r = r.cloned().unwrap_or_default();
    proto::ContainerResources {
        linux: Some(proto::LinuxContainerResources {
            cpu_period: r
                .cpu_period
                .map_or(0, |v| i64::try_from(v).unwrap_or(i64::MAX)),
            cpu_quota: r.cpu_quota.unwrap_or(0),
            cpu_shares: r
                .cpu_shares
                .map_or(0, |v| i64::try_from(v).unwrap_or(i64::MAX)),
            memory_limit_in_bytes: r.memory_limit.unwrap_or(0),
            oom_score_adj: oom_score_adj.map_or(0, i64::from),
            cpuset_cpus: r.cpuset_cpus.unwrap_or_default(),
            cpuset_mems: r.cpuset_mems.unwrap_or_default(),
            hugepage_limits: r
                .hugepage_limits
                .into_iter()
                .map(|(page_size, limit)| proto::HugepageLimit { page_size, limit })
                .collect(),
            unified: r.unified.into_iter().collect(),
            memory_swap_limit_in_bytes: r.memory_swap_limit.unwrap_or(0),
        }),
        windows: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(e: CriError) -> String {
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{}", e.message());
        let msg = e.message();
        msg.strip_prefix("invalid ")
            .and_then(|m| m.split(':').next())
            .unwrap_or_default()
            .to_string()
    }

    #[test]
    fn bad_values_name_their_field_under_the_prefix() {
        let cases: &[(proto::LinuxContainerResources, &str)] = &[
            (
                proto::LinuxContainerResources {
                    cpu_shares: -2,
                    ..Default::default()
                },
                "linux.cpu_shares",
            ),
            (
                proto::LinuxContainerResources {
                    cpu_period: 10,
                    ..Default::default()
                },
                "linux.cpu_period",
            ),
            (
                proto::LinuxContainerResources {
                    cpu_period: 2_000_000,
                    ..Default::default()
                },
                "linux.cpu_period",
            ),
            (
                proto::LinuxContainerResources {
                    cpu_quota: 999,
                    ..Default::default()
                },
                "linux.cpu_quota",
            ),
        ];
        for (r, field) in cases {
            assert_eq!(
                field_of(resources(r, "linux").unwrap_err()),
                *field,
                "{r:?}"
            );
        }
        assert_eq!(
            field_of(oom_score_adj(1001, "linux").unwrap_err()),
            "linux.oom_score_adj"
        );
        // No quota (-1) and kernel-range values pass.
        let ok = resources(
            &proto::LinuxContainerResources {
                cpu_quota: -1,
                cpu_period: 100_000,
                ..Default::default()
            },
            "linux",
        )
        .unwrap();
        assert_eq!((ok.cpu_quota, ok.cpu_period), (Some(-1), Some(100_000)));
        assert_eq!(oom_score_adj(-998, "linux").unwrap(), Some(-998));
        assert_eq!(oom_score_adj(0, "linux").unwrap(), None);
    }

    #[test]
    fn round_trip_through_the_status() {
        let cri = proto::LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            memory_limit_in_bytes: 64 << 20,
            oom_score_adj: 0,
            cpuset_cpus: "0".into(),
            cpuset_mems: "0".into(),
            hugepage_limits: vec![proto::HugepageLimit {
                page_size: "2MB".into(),
                limit: 0,
            }],
            unified: [("memory.high".to_string(), "50M".to_string())].into(),
            memory_swap_limit_in_bytes: 64 << 20,
        };
        let r = resources(&cri, "linux").unwrap();
        let back = to_proto(Some(&r), Some(300));
        assert_eq!(
            back.linux,
            Some(proto::LinuxContainerResources {
                oom_score_adj: 300,
                ..cri
            })
        );
        let empty = to_proto(None, None).linux.unwrap_or_default();
        assert_eq!(empty, proto::LinuxContainerResources::default());
    }
}
