//! RemoveContainer: a running container is killed first; then the shim forgets it, and
//! the cgroup, bundle, writable layer and record go. Idempotent: an unknown id is success,
//! and a remove that failed half-way can be repeated. The log file stays (kubelet owns it).

use std::path::Path;
use std::time::Duration;

use super::{ContainerState, Containers};
use crate::error::{Error, Result};
use crate::shim_client::{PodShim, ShimError};

impl Containers {
    pub async fn remove(&self, id: &str) -> Result<()> {
        let Some(record) = self.find(id)? else {
            return Ok(());
        };
        let _guard = self.locks.lock(&record.id).await;
        let Some(record) = self.find(&record.id)? else {
            return Ok(());
        };
        let span = tracing::info_span!("container", pod = %record.pod_id, container = %record.id);
        let _e = span.enter();
        let id = record.id.clone();
        let pod_id_of_removed = record.pod_id.clone();
        let (bundle, layer_dir, pod_dir, cgroup) = (
            record.bundle.clone(),
            record.layer_dir.clone(),
            record.pod_dir.clone(),
            record.cgroup.clone(),
        );
        if matches!(
            record.state,
            ContainerState::Created | ContainerState::Running
        ) {
            self.stop_locked(record, Duration::ZERO).await?;
        }
        match PodShim::new(&pod_dir).forget(&id).await {
            Ok(()) | Err(ShimError::NotRunning { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        super::stop::release_cgroup(&cgroup).await?;
        let dirs = [bundle, layer_dir];
        tokio::task::spawn_blocking(move || -> Result<()> {
            for dir in &dirs {
                remove_dir(dir)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| Error::Internal(format!("remove task: {e}")))??;
        self.db.remove_container(&id)?;
        self.ledger.events.publish(
            &id,
            &pod_id_of_removed,
            crate::events::ContainerEventKind::Deleted,
        );
        tracing::info!("container removed");
        Ok(())
    }

    /// Remove every container of a pod (RemovePodSandbox).
    pub async fn remove_pod(&self, pod_id: &str) -> Result<()> {
        let ids: Vec<String> = self
            .db
            .list_containers()?
            .into_iter()
            .filter(|c| c.pod_id == pod_id)
            .map(|c| c.id)
            .collect();
        for id in ids {
            self.remove(&id).await?;
        }
        Ok(())
    }
}

/// Remove a dir tree; one already gone is success. The overlay is mounted only inside the
/// container's own mount namespace, so nothing here is a mount point on the host. The
/// writable layer holds whatever the container wrote, of any depth: removed fd-relative.
pub(super) fn remove_dir(dir: &Path) -> Result<()> {
    crate::fstree::remove_tree(dir).map_err(Error::io("removing", dir))
}
