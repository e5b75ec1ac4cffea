//! The pod's own cgroup: `<cgroup_parent>/<pod id>`, holding the pod's shim and pause, beside
//! the containers' cgroups (`<cgroup_parent>/<container id>`).
//!
//! `cgroup_parent` belongs to its caller: kubelet makes `kubepods/<qos>/pod<uid>` and writes
//! the pod-level limits there itself, and crictl users often give many pods one parent. So
//! Corral kills and removes only the cgroups it made below it, never the parent, and pods
//! that share a parent stay independent. The one exception is a parent that did not exist
//! when the pod ran (a crictl-style client naming a fresh path): Corral made it, so the
//! pod's limits are written there, and it is removed once empty (an `rmdir`, which the
//! kernel refuses while anything else uses it).
//!
//! Pods without a parent get `/corral/<pod id>`, as their containers get `/corral/<id>`.

use serde::{Deserialize, Serialize};

use crate::cgroups::{Cgroup, Resources, DEFAULT_PARENT};
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodCgroup {
    /// `<parent>/<pod id>`: the shim and the pause.
    pub path: String,
    /// `cgroup_parent`, or [`DEFAULT_PARENT`].
    pub parent: String,
    /// The parent did not exist before this pod ran: Corral made it, may write the pod's
    /// limits there, and removes it once nothing uses it.
    pub owns_parent: bool,
}

impl PodCgroup {
    /// The cgroup a pod gets (no I/O but an existence check of the parent).
    pub(super) fn plan(pod_id: &str, cgroup_parent: Option<&str>) -> Result<PodCgroup> {
        let parent = cgroup_parent
            .unwrap_or(DEFAULT_PARENT)
            .trim_end_matches('/')
            .to_string();
        let owns_parent = cgroup_parent.is_some() && !Cgroup::new(&parent)?.exists();
        Ok(PodCgroup {
            path: format!("{parent}/{pod_id}"),
            parent,
            owns_parent,
        })
    }

    /// The pod's cgroup, by handle.
    pub fn cgroup(&self) -> Result<Cgroup> {
        Ok(Cgroup::new(&self.path)?)
    }

    /// Makes the cgroup (and a missing parent); the pod's limits go to the parent only
    /// when Corral made it. Blocking.
    pub(super) fn make(&self, resources: Option<&Resources>) -> Result<()> {
        let cg = self.cgroup()?;
        cg.create()?;
        if let (true, Some(r)) = (self.owns_parent, resources) {
            Cgroup::new(&self.parent)?.apply(r)?;
        } else if resources.is_some() {
            tracing::debug!(parent = %self.parent, "pod limits left to the parent's owner");
        }
        Ok(())
    }

    /// Kills what is left in the pod's cgroup and removes it, then the parent if Corral
    /// made it and nothing uses it any more. Idempotent. Blocking.
    pub(super) fn release(&self) -> Result<()> {
        let cg = self.cgroup()?;
        if cg.exists() {
            cg.kill_all()?;
            cg.delete()?;
        }
        if self.owns_parent || self.parent == DEFAULT_PARENT {
            Cgroup::new(&self.parent)?.delete_if_unused();
        }
        Ok(())
    }
}

/// Runs a blocking cgroup step off the async workers (kills and deletes wait for the kernel).
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("cgroup task: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pod_cgroup_is_a_child_of_the_parent() {
        let c = PodCgroup::plan("abc", Some("/corral-test-no-such-parent/pod1/")).unwrap();
        assert_eq!(c.path, "/corral-test-no-such-parent/pod1/abc");
        assert_eq!(c.parent, "/corral-test-no-such-parent/pod1");
        assert!(c.owns_parent, "a parent that doesn't exist is made by us");
        let d = PodCgroup::plan("abc", None).unwrap();
        assert_eq!(d.path, format!("{DEFAULT_PARENT}/abc"));
        assert!(
            !d.owns_parent,
            "the shared default parent is never the pod's"
        );
        assert!(PodCgroup::plan("abc", Some("/../x")).is_err());
    }
}
