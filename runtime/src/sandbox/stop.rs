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
        let released = self.release(&record).await;
        let network_error = match &released {
            Err(e) if e.is_cni_plugin_failure() => Some(e.to_string()),
            _ => None,
        };
        if record.state != SandboxState::NotReady || record.network_error != network_error {
            // The processes are gone even when a plugin's DEL failed: the pod is not ready,
            // and its status says what is still held.
            if released.is_ok() || network_error.is_some() {
                record.state = SandboxState::NotReady;
            }
            record.network_error = network_error;
            self.db.put_sandbox(&record)?;
            tracing::info!(pod = %record.id, "pod sandbox stopped");
        }
        released
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
        let netns = record.netns.as_deref().filter(|p| p.exists());
        // A CNI plugin whose DEL fails must not keep the pod's other resources: they are
        // released, and the plugin's error returned at the end (kubelet retries the stop).
        let mut plugin_failure = None;
        match self.teardown_network(&record.id, netns).await {
            Ok(()) => {}
            Err(e) if e.is_cni_plugin_failure() => plugin_failure = Some(e),
            Err(e) => return Err(e),
        }
        files::unmount_shm(&record.shm_dir())?;
        let dir = record.dir.clone();
        if dir.exists() {
            tokio::task::spawn_blocking(move || network::release_namespaces(&dir))
                .await
                .map_err(|e| Error::Internal(format!("namespace task: {e}")))??;
        }
        plugin_failure.map_or(Ok(()), Err)
    }
}
