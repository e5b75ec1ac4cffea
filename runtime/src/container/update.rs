//! UpdateContainerResources: new limits for a created or running container, live.
//!
//! The request is merged over the container's current limits (a field left at zero keeps
//! its value, as containerd's `WithResources` does; hugepage limits by page size and
//! `unified` by key), the merged whole is written to the container's cgroup (so that the
//! v1 memory/memsw order is decided against the whole, see `cgroups::v1::swap_first`),
//! `oom_score_adj` is written for each of the container's processes, and then the record
//! and the bundle's `config.json` are updated, so ContainerStatus reports what is in force.
//!
//! An exited container is refused (FailedPrecondition), as CRI-O does: its cgroup is gone,
//! and a limit that nothing enforces would only be a line in a record. (containerd accepts
//! and updates the stored spec alone.)

use std::io;
use std::path::Path;

use oci_spec::runtime::Spec;

use super::{spec, ContainerRecord, ContainerState, Containers};
use crate::cgroups::{Cgroup, CgroupError, Resources};
use crate::error::{Error, Result};

/// The request field prefix of a cgroup error's field (`linux.resources.cpu_quota`), and
/// what UpdateContainerResourcesRequest calls it (`linux.cpu_quota`).
const CGROUP_FIELD_PREFIX: &str = "linux.resources.";
const UPDATE_FIELD_PREFIX: &str = "linux.";
const F_OOM: &str = "linux.oom_score_adj";

/// What an UpdateContainerResources asks for, in runtime terms; zero fields are unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceUpdate {
    pub resources: Resources,
    /// [-1000, 1000]; None keeps the current value.
    pub oom_score_adj: Option<i32>,
}

impl Containers {
    /// Applies `update` to a created or running container and records it. NotFound for an
    /// unknown id, FailedPrecondition for an exited container, InvalidArgument naming the
    /// `linux.*` field for a bad value (nothing is written then).
    pub async fn update_resources(
        &self,
        id: &str,
        update: ResourceUpdate,
    ) -> Result<ContainerRecord> {
        if let Some(adj) = update.oom_score_adj {
            check_oom_score_adj(adj)?;
        }
        let record = self.get(id)?;
        // Serialised with start, stop and remove of this container.
        let _guard = self.locks.lock(&record.id).await;
        let record = self.get(&record.id)?;
        let span = tracing::info_span!("container", pod = %record.pod_id, container = %record.id);
        let _e = span.enter();
        if !matches!(
            record.state,
            ContainerState::Created | ContainerState::Running
        ) {
            return Err(exited(&record));
        }
        let merged = merge(record.config.resources.as_ref(), &update.resources);
        let oom_score_adj = update.oom_score_adj.or(record.config.oom_score_adj);

        let cg = Cgroup::new(&record.cgroup)?;
        {
            let merged = merged.clone();
            let adj = update.oom_score_adj;
            tokio::task::spawn_blocking(move || -> Result<()> {
                cg.apply(&merged)?;
                if let Some(adj) = adj {
                    for pid in cg.pids()? {
                        set_oom_score_adj(pid, adj)?;
                    }
                }
                Ok(())
            })
            .await
            .map_err(|e| Error::Internal(format!("cgroup task: {e}")))?
            .map_err(|e| match e {
                // The container exited (and its cgroup went) since the state was read.
                Error::Cgroup(CgroupError::NotFound { .. }) => exited(&record),
                e => update_field(e),
            })?;
        }

        // The exit watcher writes records too: take the newest under its lock and change
        // only the limits, so an exit recorded meanwhile is kept.
        let record = {
            let _t = self
                .ledger
                .transitions
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let mut fresh = self
                .db
                .get_container(&record.id)?
                .ok_or_else(|| Error::NotFound {
                    what: format!("container {:?}", record.id),
                })?;
            fresh.config.resources = Some(merged.clone());
            fresh.config.oom_score_adj = oom_score_adj;
            self.db.put_container(&fresh)?;
            fresh
        };
        let spec_file = record.spec_file();
        tokio::task::spawn_blocking(move || rewrite_spec(&spec_file, &merged, oom_score_adj))
            .await
            .map_err(|e| Error::Internal(format!("spec task: {e}")))??;
        tracing::info!("container resources updated");
        Ok(record)
    }
}

fn exited(record: &ContainerRecord) -> Error {
    Error::FailedPrecondition(format!(
        "container {} is {:?}: only a created or running container's resources can be updated",
        record.id, record.state
    ))
}

/// A cgroup error names `linux.resources.<x>` (the create request's spelling); the update
/// request's field is `linux.<x>`.
fn update_field(e: Error) -> Error {
    match e {
        Error::Cgroup(CgroupError::InvalidResource { field, reason }) => {
            let field = match field.strip_prefix(CGROUP_FIELD_PREFIX) {
                Some(rest) => format!("{UPDATE_FIELD_PREFIX}{rest}"),
                None => field.to_string(),
            };
            Error::InvalidArgument { field, reason }
        }
        e => e,
    }
}

pub(crate) fn check_oom_score_adj(adj: i32) -> Result<()> {
    if (-1000..=1000).contains(&adj) {
        Ok(())
    } else {
        Err(Error::invalid(
            F_OOM,
            format!("{adj} is outside [-1000, 1000]"),
        ))
    }
}

/// The new limits over the current ones: each field the update sets (non-zero, non-empty)
/// replaces the current one; hugepage limits are replaced per page size and `unified`
/// keys per key.
pub(crate) fn merge(current: Option<&Resources>, update: &Resources) -> Resources {
    let cur = current.cloned().unwrap_or_default();
    fn pick<T: Clone>(new: &Option<T>, old: Option<T>, set: impl Fn(&T) -> bool) -> Option<T> {
        new.clone().filter(|v| set(v)).or(old)
    }
    // In their first-given order, as ContainerStatus reported them before.
    let mut hugepages = cur.hugepage_limits;
    for (size, limit) in &update.hugepage_limits {
        match hugepages.iter_mut().find(|(s, _)| s == size) {
            Some(entry) => entry.1 = *limit,
            None => hugepages.push((size.clone(), *limit)),
        }
    }
    let mut unified = cur.unified;
    unified.extend(update.unified.clone());
    Resources {
        cpu_shares: pick(&update.cpu_shares, cur.cpu_shares, |v| *v != 0),
        cpu_quota: pick(&update.cpu_quota, cur.cpu_quota, |v| *v != 0),
        cpu_period: pick(&update.cpu_period, cur.cpu_period, |v| *v != 0),
        memory_limit: pick(&update.memory_limit, cur.memory_limit, |v| *v != 0),
        memory_swap_limit: pick(&update.memory_swap_limit, cur.memory_swap_limit, |v| {
            *v != 0
        }),
        pids_limit: pick(&update.pids_limit, cur.pids_limit, |v| *v != 0),
        cpuset_cpus: pick(&update.cpuset_cpus, cur.cpuset_cpus, |v| !v.is_empty()),
        cpuset_mems: pick(&update.cpuset_mems, cur.cpuset_mems, |v| !v.is_empty()),
        hugepage_limits: hugepages,
        unified,
    }
}

/// Writes `/proc/<pid>/oom_score_adj`. A process that has exited meanwhile is skipped.
/// Lowering the value below the process's `oom_score_adj_min` needs CAP_SYS_RESOURCE; a
/// corrald without it gets EACCES and then sets the lowest value it may, its own (what
/// its children would inherit), with a warning.
fn set_oom_score_adj(pid: i32, adj: i32) -> Result<()> {
    let path = format!("/proc/{pid}/oom_score_adj");
    match std::fs::write(&path, adj.to_string()) {
        Ok(()) => Ok(()),
        Err(e) if gone(&e) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) => {
            let own = std::fs::read_to_string("/proc/self/oom_score_adj")
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
                .unwrap_or(0);
            let clamped = adj.max(own);
            tracing::warn!(
                pid,
                asked = adj,
                set = clamped,
                "not allowed to lower oom_score_adj that far; clamped to corrald's own"
            );
            match std::fs::write(&path, clamped.to_string()) {
                Err(e) if gone(&e) => Ok(()),
                other => other.map_err(Error::io("writing", &path)),
            }
        }
        Err(e) => Err(Error::io("writing", &path)(e)),
    }
}

fn gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
}

/// Replaces the bundle's `linux.resources` (keeping its device rules) and
/// `process.oomScoreAdj`, atomically (write + rename).
fn rewrite_spec(path: &Path, r: &Resources, oom_score_adj: Option<i32>) -> Result<()> {
    let text = std::fs::read(path).map_err(Error::io("reading", path))?;
    let mut oci: Spec = serde_json::from_slice(&text)
        .map_err(|e| Error::Internal(format!("parsing {}: {e}", path.display())))?;
    let mut linux = oci.linux().clone().unwrap_or_default();
    let devices = linux
        .resources()
        .as_ref()
        .and_then(|r| r.devices().clone())
        .unwrap_or_default();
    linux.set_resources(Some(spec::resources(Some(r), devices)?));
    oci.set_linux(Some(linux));
    if let Some(process) = oci.process().clone() {
        let mut process = process;
        process.set_oom_score_adj(oom_score_adj);
        oci.set_process(Some(process));
    }
    let json = serde_json::to_vec_pretty(&oci)
        .map_err(|e| Error::Internal(format!("encoding the OCI spec: {e}")))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, json).map_err(Error::io("writing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(Error::io("renaming", &tmp))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::error::ErrorKind;

    fn current() -> Resources {
        Resources {
            cpu_shares: Some(512),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            memory_limit: Some(64 << 20),
            memory_swap_limit: Some(64 << 20),
            cpuset_cpus: Some("0".into()),
            hugepage_limits: vec![("1GB".into(), 0), ("2MB".into(), 0)],
            unified: BTreeMap::from([("memory.high".into(), "50M".into())]),
            ..Default::default()
        }
    }

    #[test]
    fn unset_fields_keep_their_value() {
        let update = Resources {
            cpu_shares: Some(0),
            cpu_quota: Some(20_000),
            memory_limit: Some(128 << 20),
            memory_swap_limit: Some(128 << 20),
            cpuset_cpus: Some(String::new()),
            cpuset_mems: Some("0".into()),
            hugepage_limits: vec![("2MB".into(), 4 << 21), ("64KB".into(), 0)],
            unified: BTreeMap::from([("memory.low".into(), "1M".into())]),
            ..Default::default()
        };
        let got = merge(Some(&current()), &update);
        assert_eq!(
            got,
            Resources {
                cpu_shares: Some(512),
                cpu_quota: Some(20_000),
                cpu_period: Some(100_000),
                memory_limit: Some(128 << 20),
                memory_swap_limit: Some(128 << 20),
                pids_limit: None,
                cpuset_cpus: Some("0".into()),
                cpuset_mems: Some("0".into()),
                hugepage_limits: vec![
                    ("1GB".into(), 0),
                    ("2MB".into(), 4 << 21),
                    ("64KB".into(), 0)
                ],
                unified: BTreeMap::from([
                    ("memory.high".into(), "50M".into()),
                    ("memory.low".into(), "1M".into()),
                ]),
            }
        );
        // Nothing before: the update is the whole.
        assert_eq!(merge(None, &update).cpu_shares, None);
        assert_eq!(merge(None, &update).cpu_quota, Some(20_000));
        // An empty update changes nothing.
        assert_eq!(merge(Some(&current()), &Resources::default()), current());
    }

    #[test]
    fn oom_score_adj_range() {
        for ok in [-1000, -998, 0, 1000] {
            check_oom_score_adj(ok).unwrap();
        }
        for bad in [-1001, 1001, i32::MAX] {
            assert_eq!(
                check_oom_score_adj(bad).unwrap_err().kind(),
                ErrorKind::InvalidArgument {
                    field: F_OOM.into()
                }
            );
        }
    }

    #[test]
    fn cgroup_fields_are_renamed_for_the_update_request() {
        let e = update_field(Error::Cgroup(CgroupError::InvalidResource {
            field: "linux.resources.cpuset_cpus",
            reason: "x".into(),
        }));
        assert_eq!(
            e.kind(),
            ErrorKind::InvalidArgument {
                field: "linux.cpuset_cpus".into()
            }
        );
        let e = update_field(Error::Cgroup(CgroupError::InvalidResource {
            field: "pid",
            reason: "x".into(),
        }));
        assert_eq!(
            e.kind(),
            ErrorKind::InvalidArgument {
                field: "pid".into()
            }
        );
    }

    #[test]
    fn the_bundle_spec_gets_the_new_limits_and_keeps_its_devices() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let mut oci = Spec::default();
        let mut linux = oci.linux().clone().unwrap_or_default();
        let mut rule = oci_spec::runtime::LinuxDeviceCgroup::default();
        rule.set_allow(false).set_access(Some("rwm".into()));
        linux.set_resources(Some(spec::resources(Some(&current()), vec![rule]).unwrap()));
        oci.set_linux(Some(linux));
        std::fs::write(&path, serde_json::to_vec(&oci).unwrap()).unwrap();

        let new = merge(
            Some(&current()),
            &Resources {
                cpu_quota: Some(20_000),
                ..Default::default()
            },
        );
        rewrite_spec(&path, &new, Some(500)).unwrap();
        let got: Spec = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let res = got.linux().as_ref().unwrap().resources().clone().unwrap();
        let cpu = res.cpu().clone().unwrap();
        assert_eq!(cpu.quota(), Some(20_000));
        assert_eq!(cpu.shares(), Some(512));
        assert_eq!(res.devices().as_ref().map(Vec::len), Some(1));
        assert_eq!(
            res.memory().as_ref().and_then(|m| m.limit()),
            Some(64 << 20)
        );
        assert_eq!(got.process().as_ref().unwrap().oom_score_adj(), Some(500));
    }
}
