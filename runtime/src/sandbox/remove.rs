//! RemovePodSandbox: stop if needed, then forget the pod and its state dir.

use super::Sandboxes;
use crate::error::{Error, Result};

impl Sandboxes {
    /// Idempotent: an unknown id is success.
    pub async fn remove(&self, id: &str) -> Result<()> {
        let Some(record) = self.find(id)? else {
            return Ok(());
        };
        match self.stop(&record.id).await {
            Ok(()) => {}
            // A plugin whose DEL keeps failing must not make the pod unremovable: its
            // attachment stays in the CNI cache, and each start-up's GC tries its DEL
            // again. What leaks until then is said here.
            Err(e) if e.is_cni_plugin_failure() => {
                let ips: Vec<_> = record.ip.iter().chain(&record.additional_ips).collect();
                tracing::error!(pod = %record.id, ?ips, error = %e,
                    "removing a pod whose CNI DEL failed: its addresses stay allocated until a DEL succeeds (retried at start-up)");
            }
            Err(e) => return Err(e),
        }
        let _guard = self.locks.lock(&record.id).await;
        if record.dir.exists() {
            std::fs::remove_dir_all(&record.dir).map_err(Error::io("removing", &record.dir))?;
        }
        self.db.remove_sandbox(&record.id)?;
        tracing::info!(pod = %record.id, "pod sandbox removed");
        Ok(())
    }
}
