//! Resource limits, and their translation into cgroup file writes for v1 and v2.
//!
//! Translation is pure: [`plan_v1`] and [`plan_v2`] turn [`Resources`] into an ordered list
//! of [`Write`]s and reject bad values before anything is written. Values follow the
//! OCI/runc conventions: a zero means "not set" (as the CRI sends it), a negative limit
//! means unlimited.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{CgroupError, Result};

const F_SHARES: &str = "linux.resources.cpu_shares";
const F_QUOTA: &str = "linux.resources.cpu_quota";
const F_PERIOD: &str = "linux.resources.cpu_period";
const F_MEMORY: &str = "linux.resources.memory_limit_in_bytes";
const F_SWAP: &str = "linux.resources.memory_swap_limit_in_bytes";
const F_PIDS: &str = "linux.resources.pids_limit";
const F_CPUS: &str = "linux.resources.cpuset_cpus";
const F_MEMS: &str = "linux.resources.cpuset_mems";
pub(crate) const F_HUGEPAGES: &str = "linux.resources.hugepage_limits";
pub(crate) const F_UNIFIED: &str = "linux.resources.unified";

/// Limits for a pod or container cgroup, in cgroup v1 terms (as the CRI and OCI give them).
/// Serialized in container records (every field defaults, so records stay readable as
/// fields are added).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    /// v1 `cpu.shares`; v2 `cpu.weight` after conversion. 0 = not set.
    pub cpu_shares: Option<u64>,
    /// CFS quota in µs per period; ≤ 0 with a period given means no quota. 0 alone = not set.
    pub cpu_quota: Option<i64>,
    /// CFS period in µs. 0 = not set.
    pub cpu_period: Option<u64>,
    /// Bytes; negative = unlimited, 0 = not set.
    pub memory_limit: Option<i64>,
    /// Memory plus swap, in bytes (v1 `memsw` semantics); negative = unlimited, 0 = not set.
    pub memory_swap_limit: Option<i64>,
    /// Negative = unlimited, 0 = not set.
    pub pids_limit: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    /// (page size as the kernel names it, "2MB" or "1GB"; limit in bytes).
    pub hugepage_limits: Vec<(String, u64)>,
    /// cgroup v2 files to write verbatim, after everything else (`memory.high` → `"1G"`).
    pub unified: BTreeMap<String, String>,
}

/// Which hierarchy a write goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// The v1 hierarchy that holds this controller.
    V1(&'static str),
    /// The cgroup2 tree, where this controller must be enabled (`"cgroup"`: core files).
    Unified(String),
}

/// One file write: `value` into `file` of the cgroup's directory in `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Write {
    pub target: Target,
    pub file: String,
    pub value: String,
    /// The request field this came from, for errors.
    pub field: &'static str,
    /// What a missing file means.
    pub absent: Absent,
}

/// What [`super::Cgroup::apply`] does when a write's file is missing although its
/// controller is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Absent {
    /// An error naming the field: the kernel cannot enforce what was asked.
    Fail,
    /// Nothing to do: a "no swap" or "unlimited swap" setting on a kernel without swap
    /// accounting asks for nothing the kernel must enforce.
    Ignore,
    /// Skipped with a warning, once: a huge page size this host does not have (kubelet
    /// sends a limit for every size it knows of).
    Warn,
}

impl Write {
    fn v1(controller: &'static str, file: &str, value: impl ToString, field: &'static str) -> Self {
        Write {
            target: Target::V1(controller),
            file: file.to_string(),
            value: value.to_string(),
            field,
            absent: Absent::Fail,
        }
    }

    fn v2(controller: &str, file: &str, value: impl ToString, field: &'static str) -> Self {
        Write {
            target: Target::Unified(controller.to_string()),
            file: file.to_string(),
            value: value.to_string(),
            field,
            absent: Absent::Fail,
        }
    }

    fn optional(mut self, yes: bool) -> Self {
        if yes {
            self.absent = Absent::Ignore;
        }
        self
    }

    fn warn_if_absent(mut self) -> Self {
        self.absent = Absent::Warn;
        self
    }
}

/// runc's conversion of v1 `cpu.shares` [2, 262144] to v2 `cpu.weight` [1, 10000].
pub(crate) fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// v2 `cpu.max` ("$QUOTA $PERIOD", "max" for no quota), or nothing when neither is set.
pub(crate) fn cpu_max(quota: Option<i64>, period: Option<u64>) -> Option<String> {
    let quota = quota.filter(|q| *q != 0);
    let period = period.filter(|p| *p != 0);
    if quota.is_none() && period.is_none() {
        return None;
    }
    let mut s = match quota {
        Some(q) if q > 0 => q.to_string(),
        _ => "max".to_string(),
    };
    if let Some(p) = period {
        s.push(' ');
        s.push_str(&p.to_string());
    }
    Some(s)
}

/// A v2 limit: a byte or count value, "max" when negative.
fn v2_limit(v: i64) -> String {
    if v < 0 {
        "max".to_string()
    } else {
        v.to_string()
    }
}

/// v1 memory+swap (`memsw`) to v2 `memory.swap.max` (swap alone), as runc does.
/// Returns None when there is nothing to write; -1 means "max".
pub(crate) fn swap_to_v2(memsw: Option<i64>, memory: Option<i64>) -> Result<Option<i64>> {
    let memsw = memsw.unwrap_or(0);
    let memory = memory.unwrap_or(0);
    // Unlimited memory with swap unset: unlimited swap too, as on v1.
    if memory < 0 && memsw == 0 {
        return Ok(Some(-1));
    }
    match memsw {
        0 => Ok(None),
        s if s < 0 => Ok(Some(-1)),
        _ if memory <= 0 => Err(invalid(
            F_SWAP,
            "a swap limit needs a memory limit".to_string(),
        )),
        s if s < memory => Err(invalid(
            F_SWAP,
            format!("memory+swap {s} is below the memory limit {memory}"),
        )),
        s => Ok(Some(s - memory)),
    }
}

fn invalid(field: &'static str, reason: String) -> CgroupError {
    CgroupError::InvalidResource { field, reason }
}

fn check_cpuset(field: &'static str, v: &str) -> Result<()> {
    if v.bytes()
        .all(|b| b.is_ascii_digit() || b == b',' || b == b'-')
    {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{v:?} is not a cpu/node list like 0-3,7"),
        ))
    }
}

fn check_page_size(size: &str) -> Result<()> {
    let ok = !size.is_empty()
        && size.len() <= 16
        && size.bytes().all(|b| b.is_ascii_alphanumeric())
        && size.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(invalid(
            F_HUGEPAGES,
            format!("page size {size:?} is not like 2MB or 1GB"),
        ))
    }
}

/// A unified key names a file in the cgroup's own directory: `<controller>.<name>`.
/// Returns the controller.
fn unified_controller(key: &str) -> Result<&str> {
    let valid_chars = key
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
    match key.split_once('.') {
        Some((controller, rest)) if valid_chars && !controller.is_empty() && !rest.is_empty() => {
            Ok(controller)
        }
        _ => Err(invalid(
            F_UNIFIED,
            format!("{key:?} is not a cgroup v2 file name like memory.high"),
        )),
    }
}

fn cpuset_writes(
    r: &Resources,
    target: impl Fn(&str, &str, &'static str) -> Write,
) -> Result<Vec<Write>> {
    let mut out = Vec::new();
    for (value, file, field) in [
        (&r.cpuset_cpus, "cpuset.cpus", F_CPUS),
        (&r.cpuset_mems, "cpuset.mems", F_MEMS),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            check_cpuset(field, v)?;
            out.push(target(file, v, field));
        }
    }
    Ok(out)
}

fn unified_writes(r: &Resources) -> Result<Vec<Write>> {
    r.unified
        .iter()
        .map(|(k, v)| Ok(Write::v2(unified_controller(k)?, k, v, F_UNIFIED)))
        .collect()
}

fn hugetlb_v2(r: &Resources) -> Result<Vec<Write>> {
    r.hugepage_limits
        .iter()
        .map(|(size, limit)| {
            check_page_size(size)?;
            Ok(Write::v2(
                "hugetlb",
                &format!("hugetlb.{size}.max"),
                limit,
                F_HUGEPAGES,
            )
            .warn_if_absent())
        })
        .collect()
}

/// The writes for a cgroup2 tree.
pub(crate) fn plan_v2(r: &Resources) -> Result<Vec<Write>> {
    let mut out = Vec::new();
    if let Some(shares) = r.cpu_shares.filter(|s| *s != 0) {
        out.push(Write::v2(
            "cpu",
            "cpu.weight",
            shares_to_weight(shares),
            F_SHARES,
        ));
    }
    if let Some(max) = cpu_max(r.cpu_quota, r.cpu_period) {
        let field = if r.cpu_quota.unwrap_or(0) != 0 {
            F_QUOTA
        } else {
            F_PERIOD
        };
        out.push(Write::v2("cpu", "cpu.max", max, field));
    }
    if let Some(m) = r.memory_limit.filter(|m| *m != 0) {
        out.push(Write::v2("memory", "memory.max", v2_limit(m), F_MEMORY));
    }
    if let Some(swap) = swap_to_v2(r.memory_swap_limit, r.memory_limit)? {
        out.push(
            Write::v2("memory", "memory.swap.max", v2_limit(swap), F_SWAP).optional(swap <= 0),
        );
    }
    if let Some(p) = r.pids_limit.filter(|p| *p != 0) {
        out.push(Write::v2("pids", "pids.max", v2_limit(p), F_PIDS));
    }
    out.extend(cpuset_writes(r, |file, v, field| {
        Write::v2("cpuset", file, v, field)
    })?);
    out.extend(hugetlb_v2(r)?);
    out.extend(unified_writes(r)?);
    Ok(out)
}

/// The writes for v1 hierarchies.
///
/// `hugetlb_on_unified`: a hybrid host whose hugetlb controller is on the cgroup2 side.
/// `swap_first`: write `memory.memsw.limit_in_bytes` before `memory.limit_in_bytes`
/// (when raising limits: the kernel wants memsw ≥ memory at every step).
/// `unified` keys go to the cgroup2 side; on a legacy host they fail there.
pub(crate) fn plan_v1(
    r: &Resources,
    hugetlb_on_unified: bool,
    swap_first: bool,
) -> Result<Vec<Write>> {
    let mut out = Vec::new();
    if let Some(shares) = r.cpu_shares.filter(|s| *s != 0) {
        out.push(Write::v1("cpu", "cpu.shares", shares, F_SHARES));
    }
    if let Some(p) = r.cpu_period.filter(|p| *p != 0) {
        out.push(Write::v1("cpu", "cpu.cfs_period_us", p, F_PERIOD));
    }
    if let Some(q) = r.cpu_quota.filter(|q| *q != 0) {
        out.push(Write::v1("cpu", "cpu.cfs_quota_us", q.max(-1), F_QUOTA));
    }

    let memory = r.memory_limit.filter(|m| *m != 0);
    let mut memsw = r.memory_swap_limit.filter(|s| *s != 0);
    if memory.is_some_and(|m| m < 0) && memsw.is_none() {
        memsw = Some(-1);
    }
    if let (Some(m), Some(s)) = (memory, memsw) {
        if m > 0 && s > 0 && s < m {
            return Err(invalid(
                F_SWAP,
                format!("memory+swap {s} is below the memory limit {m}"),
            ));
        }
    }
    let mem_write =
        memory.map(|m| Write::v1("memory", "memory.limit_in_bytes", m.max(-1), F_MEMORY));
    // Without swap accounting there is no memsw file; "no swap beyond memory" or
    // "unlimited" then asks for nothing the kernel must enforce.
    let swap_write = memsw.map(|s| {
        Write::v1("memory", "memory.memsw.limit_in_bytes", s.max(-1), F_SWAP)
            .optional(s < 0 || Some(s) == memory)
    });
    if swap_first {
        out.extend(swap_write);
        out.extend(mem_write);
    } else {
        out.extend(mem_write);
        out.extend(swap_write);
    }

    if let Some(p) = r.pids_limit.filter(|p| *p != 0) {
        out.push(Write::v1("pids", "pids.max", v2_limit(p), F_PIDS));
    }
    out.extend(cpuset_writes(r, |file, v, field| {
        Write::v1("cpuset", file, v, field)
    })?);
    if hugetlb_on_unified {
        out.extend(hugetlb_v2(r)?);
    } else {
        for (size, limit) in &r.hugepage_limits {
            check_page_size(size)?;
            out.push(
                Write::v1(
                    "hugetlb",
                    &format!("hugetlb.{size}.limit_in_bytes"),
                    limit,
                    F_HUGEPAGES,
                )
                .warn_if_absent(),
            );
        }
    }
    out.extend(unified_writes(r)?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_to_weight_matches_runc() {
        for (shares, weight) in [
            (0, 1),
            (2, 1),
            (1024, 39),
            (512, 20),
            (100, 4),
            (262_144, 10_000),
            (1_000_000, 10_000),
        ] {
            assert_eq!(shares_to_weight(shares), weight, "shares {shares}");
        }
    }

    #[test]
    fn cpu_max_strings() {
        for (quota, period, want) in [
            (None, None, None),
            (Some(0), Some(0), None),
            (Some(50_000), Some(100_000), Some("50000 100000")),
            (Some(-1), Some(100_000), Some("max 100000")),
            (Some(0), Some(100_000), Some("max 100000")),
            (Some(20_000), None, Some("20000")),
            (Some(-1), None, Some("max")),
        ] {
            assert_eq!(
                cpu_max(quota, period).as_deref(),
                want,
                "{quota:?} {period:?}"
            );
        }
    }

    #[test]
    fn swap_translation() {
        const M: i64 = 64 << 20;
        let ok = [
            (None, None, None),
            (None, Some(M), None),
            (Some(M), Some(M), Some(0)),
            (Some(3 * M), Some(M), Some(2 * M)),
            (Some(-1), Some(M), Some(-1)),
            (None, Some(-1), Some(-1)),
            (Some(-1), Some(-1), Some(-1)),
        ];
        for (memsw, memory, want) in ok {
            assert_eq!(
                swap_to_v2(memsw, memory).unwrap(),
                want,
                "{memsw:?} {memory:?}"
            );
        }
        for (memsw, memory) in [(Some(M), None), (Some(M), Some(-1)), (Some(M), Some(2 * M))] {
            let err = swap_to_v2(memsw, memory).unwrap_err();
            assert!(
                matches!(err, CgroupError::InvalidResource { field: F_SWAP, .. }),
                "{memsw:?} {memory:?}: {err}"
            );
        }
    }

    fn files(plan: &[Write]) -> Vec<(String, String)> {
        plan.iter()
            .map(|w| (w.file.clone(), w.value.clone()))
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn sample() -> Resources {
        Resources {
            cpu_shares: Some(512),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            memory_limit: Some(64 << 20),
            memory_swap_limit: Some(128 << 20),
            pids_limit: Some(50),
            cpuset_cpus: Some("0-1".into()),
            cpuset_mems: Some("0".into()),
            hugepage_limits: vec![("2MB".into(), 4 << 21)],
            unified: BTreeMap::from([("memory.high".into(), "50M".into())]),
        }
    }

    #[test]
    fn v2_plan() {
        let plan = plan_v2(&sample()).unwrap();
        assert_eq!(
            files(&plan),
            pairs(&[
                ("cpu.weight", "20"),
                ("cpu.max", "50000 100000"),
                ("memory.max", "67108864"),
                ("memory.swap.max", "67108864"),
                ("pids.max", "50"),
                ("cpuset.cpus", "0-1"),
                ("cpuset.mems", "0"),
                ("hugetlb.2MB.max", "8388608"),
                ("memory.high", "50M"),
            ])
        );
        assert!(plan.iter().all(|w| matches!(w.target, Target::Unified(_))));
        for w in &plan {
            let want = if w.field == F_HUGEPAGES {
                Absent::Warn
            } else {
                Absent::Fail
            };
            assert_eq!(w.absent, want, "{}", w.file);
        }
    }

    #[test]
    fn v1_plan() {
        let plan = plan_v1(&sample(), false, false).unwrap();
        assert_eq!(
            files(&plan),
            pairs(&[
                ("cpu.shares", "512"),
                ("cpu.cfs_period_us", "100000"),
                ("cpu.cfs_quota_us", "50000"),
                ("memory.limit_in_bytes", "67108864"),
                ("memory.memsw.limit_in_bytes", "134217728"),
                ("pids.max", "50"),
                ("cpuset.cpus", "0-1"),
                ("cpuset.mems", "0"),
                ("hugetlb.2MB.limit_in_bytes", "8388608"),
                ("memory.high", "50M"),
            ])
        );
        assert_eq!(plan[0].target, Target::V1("cpu"));
        assert_eq!(plan[9].target, Target::Unified("memory".into()));
        // Raising limits: memsw first.
        let plan = plan_v1(&sample(), false, true).unwrap();
        assert_eq!(plan[3].file, "memory.memsw.limit_in_bytes");
        assert_eq!(plan[4].file, "memory.limit_in_bytes");
        // Hybrid with hugetlb on the cgroup2 side.
        let plan = plan_v1(&sample(), true, false).unwrap();
        let huge = plan.iter().find(|w| w.field == F_HUGEPAGES).unwrap();
        assert_eq!(huge.target, Target::Unified("hugetlb".into()));
        assert_eq!(huge.file, "hugetlb.2MB.max");
    }

    #[test]
    fn unset_and_unlimited_values() {
        type Files = &'static [(&'static str, &'static str)];
        // (resources, v2 writes, v1 writes)
        let cases: &[(Resources, Files, Files)] = &[
            (Resources::default(), &[], &[]),
            (
                Resources {
                    cpu_shares: Some(0),
                    cpu_quota: Some(0),
                    cpu_period: Some(0),
                    memory_limit: Some(0),
                    memory_swap_limit: Some(0),
                    pids_limit: Some(0),
                    cpuset_cpus: Some(String::new()),
                    ..Default::default()
                },
                &[],
                &[],
            ),
            (
                Resources {
                    memory_limit: Some(-1),
                    pids_limit: Some(-1),
                    cpu_quota: Some(-1),
                    cpu_period: Some(100_000),
                    ..Default::default()
                },
                &[
                    ("cpu.max", "max 100000"),
                    ("memory.max", "max"),
                    ("memory.swap.max", "max"),
                    ("pids.max", "max"),
                ],
                &[
                    ("cpu.cfs_period_us", "100000"),
                    ("cpu.cfs_quota_us", "-1"),
                    ("memory.limit_in_bytes", "-1"),
                    ("memory.memsw.limit_in_bytes", "-1"),
                    ("pids.max", "max"),
                ],
            ),
        ];
        for (r, v2, v1) in cases {
            assert_eq!(files(&plan_v2(r).unwrap()), pairs(v2), "v2 {r:?}");
            assert_eq!(
                files(&plan_v1(r, false, false).unwrap()),
                pairs(v1),
                "v1 {r:?}"
            );
        }
    }

    #[test]
    fn swap_files_optional_only_when_no_swap_is_asked() {
        const M: i64 = 64 << 20;
        for (memsw, optional) in [(M, true), (-1, true), (2 * M, false)] {
            let r = Resources {
                memory_limit: Some(M),
                memory_swap_limit: Some(memsw),
                ..Default::default()
            };
            for plan in [plan_v1(&r, false, false).unwrap(), plan_v2(&r).unwrap()] {
                let w = plan.iter().find(|w| w.field == F_SWAP).unwrap();
                let want = if optional {
                    Absent::Ignore
                } else {
                    Absent::Fail
                };
                assert_eq!(w.absent, want, "{memsw} {}", w.file);
            }
        }
    }

    #[test]
    fn bad_values_are_rejected_naming_the_field() {
        let cases = [
            (
                Resources {
                    cpuset_cpus: Some("0-1\nmemory".into()),
                    ..Default::default()
                },
                F_CPUS,
            ),
            (
                Resources {
                    cpuset_mems: Some("all".into()),
                    ..Default::default()
                },
                F_MEMS,
            ),
            (
                Resources {
                    hugepage_limits: vec![("../../x".into(), 1)],
                    ..Default::default()
                },
                F_HUGEPAGES,
            ),
            (
                Resources {
                    hugepage_limits: vec![("".into(), 1)],
                    ..Default::default()
                },
                F_HUGEPAGES,
            ),
            (
                Resources {
                    unified: BTreeMap::from([("../cgroup.procs".into(), "1".into())]),
                    ..Default::default()
                },
                F_UNIFIED,
            ),
            (
                Resources {
                    unified: BTreeMap::from([("memory".into(), "1".into())]),
                    ..Default::default()
                },
                F_UNIFIED,
            ),
            (
                Resources {
                    memory_limit: Some(128 << 20),
                    memory_swap_limit: Some(64 << 20),
                    ..Default::default()
                },
                F_SWAP,
            ),
        ];
        for (r, field) in cases {
            for res in [
                plan_v2(&r),
                plan_v1(&r, false, false),
                plan_v1(&r, true, false),
            ] {
                match res {
                    Err(CgroupError::InvalidResource { field: f, .. }) => {
                        assert_eq!(f, field, "{r:?}")
                    }
                    other => panic!("{r:?}: expected an error on {field}, got {other:?}"),
                }
            }
        }
    }
}
