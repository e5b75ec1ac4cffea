//! StopContainer: the stop signal (the image's StopSignal, else SIGTERM), SIGKILL once the
//! grace period has passed (at once for a timeout of 0), then whatever the container left
//! in its cgroup. Idempotent: an unknown or exited container is success.

use std::time::Duration;

use super::{ContainerRecord, ContainerState, Containers};
use crate::cgroups::Cgroup;
use crate::error::{Error, Result};
use crate::shim_client::{PodShim, ShimError};

/// How long a SIGKILLed init may take to be reaped and recorded.
const KILL_WAIT: Duration = Duration::from_secs(10);

impl Containers {
    pub async fn stop(&self, id: &str, timeout: Duration) -> Result<()> {
        let Some(record) = self.find(id)? else {
            return Ok(());
        };
        let _guard = self.locks.lock(&record.id).await;
        let Some(record) = self.find(&record.id)? else {
            return Ok(());
        };
        self.stop_locked(record, timeout).await
    }

    pub(super) async fn stop_locked(
        &self,
        record: ContainerRecord,
        timeout: Duration,
    ) -> Result<()> {
        let span = tracing::info_span!("container", pod = %record.pod_id, container = %record.id);
        let _e = span.enter();
        if matches!(
            record.state,
            ContainerState::Created | ContainerState::Running
        ) {
            let shim = PodShim::new(&record.pod_dir);
            let graceful = record.state == ContainerState::Running && !timeout.is_zero();
            let mut exited = false;
            if graceful {
                tolerate_gone(shim.kill(&record.id, record.stop_signal).await)?;
                exited = match shim.wait(&record.id, timeout).await {
                    Ok(_) => true,
                    Err(ShimError::Timeout { .. }) => false,
                    Err(e) => tolerate_gone::<()>(Err(e)).map(|_| true)?,
                };
            }
            if !exited {
                tolerate_gone(shim.kill(&record.id, libc::SIGKILL).await)?;
                if let Err(e) = shim.wait(&record.id, KILL_WAIT).await {
                    tolerate_gone::<()>(Err(e))?;
                }
            }
            tracing::info!("container stopped");
        }
        // What the container's processes left (children in a shared PID namespace).
        release_cgroup(&record.cgroup).await?;
        // Re-read: the exit file is in by now (or the shim is gone, which refresh handles).
        if let Some(r) = self.db.get_container(&record.id)? {
            self.ledger.refresh(r, true)?;
        }
        Ok(())
    }

    /// Stop every container of a pod at once (StopPodSandbox), each with `timeout`.
    pub async fn stop_pod(&self, pod_id: &str, timeout: Duration) -> Result<()> {
        let ids: Vec<String> = self
            .db
            .list_containers()?
            .into_iter()
            .filter(|c| c.pod_id == pod_id)
            .map(|c| c.id)
            .collect();
        let stops = ids.iter().map(|id| self.stop(id, timeout));
        for result in futures::future::join_all(stops).await {
            result?;
        }
        Ok(())
    }
}

/// A shim that is gone has nothing left to stop: its exit files, or their absence, say
/// the rest.
fn tolerate_gone<T: Default>(r: std::result::Result<T, ShimError>) -> Result<T> {
    match r {
        Err(ShimError::NotRunning { .. }) => Ok(T::default()),
        Err(ShimError::Refused {
            code: crate::shim::protocol::ErrorCode::NotFound,
            ..
        }) => Ok(T::default()),
        other => other.map_err(Error::from),
    }
}

/// Kill what is left in a container's cgroup and delete it; idempotent.
pub(super) async fn release_cgroup(path: &str) -> Result<()> {
    let cg = Cgroup::new(path)?;
    tokio::task::spawn_blocking(move || -> Result<()> {
        if cg.exists() {
            cg.kill_all()?;
            cg.delete()?;
        }
        super::create::default_parent_cleanup();
        Ok(())
    })
    .await
    .map_err(|e| Error::Internal(format!("cgroup task: {e}")))?
}
