//! RemovePodSandbox: stop if needed, then forget the pod and its state dir.

use super::Sandboxes;
use crate::error::{Error, Result};

impl Sandboxes {
    /// Idempotent: an unknown id is success.
    pub async fn remove(&self, id: &str) -> Result<()> {
        let Some(record) = self.find(id)? else {
            return Ok(());
        };
        self.stop(&record.id).await?;
        let _guard = self.locks.lock(&record.id).await;
        if record.dir.exists() {
            std::fs::remove_dir_all(&record.dir).map_err(Error::io("removing", &record.dir))?;
        }
        self.db.remove_sandbox(&record.id)?;
        tracing::info!(pod = %record.id, "pod sandbox removed");
        Ok(())
    }
}
