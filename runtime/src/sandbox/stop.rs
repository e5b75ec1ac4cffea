//! StopPodSandbox: stop every process of the pod (through its shim), release the network
//! and the namespaces, unmount shm, delete the pod's own cgroup (never its parent). Idempotent, and callable again after
//! a failure half-way: each step succeeds when there is nothing left to release.

use super::{files, SandboxRecord, SandboxState, Sandboxes};
use crate::error::{Error, Result};

/// How long the pod's processes get between SIGTERM and SIGKILL when the pod is stopped.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

impl Sandboxes {
    /// An unknown id is success (api.proto: kubelet calls Stop several times).
    pub async fn stop(&self, id: &str) -> Result<()> {
        let Some(record) = self.find(id)? else {
            return Ok(());
        };
        let _guard = self.locks.lock(&record.id).await;
        // Re-read under the lock: a concurrent stop or remove may have won.
        let Some(mut record) = self.find(&record.id)? else {
            return Ok(());
        };
        self.release(&record).await?;
        if record.state != SandboxState::NotReady {
            record.state = SandboxState::NotReady;
            self.db.put_sandbox(&record)?;
            tracing::info!(pod = %record.id, "pod sandbox stopped");
        }
        Ok(())
    }

    pub(super) async fn release(&self, record: &SandboxRecord) -> Result<()> {
        if crate::shim_client::is_alive(&record.dir) {
            let shim = crate::shim_client::connect(&record.dir).await?;
            shim.shutdown(STOP_GRACE).await?;
        } else if record.dir.exists() {
            // The shim died on its own: kill the pause it may have left, unmount its pidns.
            crate::shim_client::release(&record.dir).await?;
        }
        // Only the pod's own cgroup: the parent belongs to kubelet, and other pods may share it.
        if let Some(cg) = record.cgroup.clone() {
            super::cgroup::blocking(move || cg.release()).await?;
        }
        if let Some(net) = &self.network {
            let netns = record.netns.as_deref().filter(|p| p.exists());
            net.teardown_pod(&record.id, netns).await?;
        }
        files::unmount_shm(&record.shm_dir())?;
        let dir = record.dir.clone();
        if dir.exists() {
            tokio::task::spawn_blocking(move || network::release_namespaces(&dir))
                .await
                .map_err(|e| Error::Internal(format!("namespace task: {e}")))??;
        }
        Ok(())
    }
}
