//! Start-up reconciliation: records against what is on disk and alive.
//!
//! - A Ready pod whose shim is gone (killed, or the node rebooted and /run was emptied) is
//!   NotReady: its processes are gone, so kubelet must recreate it.
//! - A pod dir with no record is what a RunPodSandbox killed half-way left: released.

use std::collections::HashSet;

use super::{files, SandboxState, Sandboxes};
use crate::error::Result;

impl Sandboxes {
    pub(super) async fn recover(&self) -> Result<()> {
        let records = self.db.list_sandboxes()?;
        let known: HashSet<_> = records.iter().map(|r| r.dir.clone()).collect();
        for mut r in records {
            if r.state == SandboxState::Ready && !crate::shim_client::is_alive(&r.dir) {
                tracing::warn!(pod = %r.id, "shim gone while corrald was down: pod is not ready");
                r.state = SandboxState::NotReady;
                self.db.put_sandbox(&r)?;
            }
        }
        let Ok(entries) = std::fs::read_dir(&self.pods_dir) else {
            return Ok(());
        };
        for dir in entries.flatten().map(|e| e.path()) {
            if known.contains(&dir) {
                continue;
            }
            tracing::warn!(dir = %dir.display(), "releasing an unrecorded pod dir");
            if crate::shim_client::is_alive(&dir) {
                if let Ok(shim) = crate::shim_client::connect(&dir).await {
                    let _ = shim.shutdown(std::time::Duration::from_secs(1)).await;
                }
            } else {
                let _ = crate::shim_client::release(&dir).await;
            }
            let _ = files::unmount_shm(&dir.join("shm"));
            let d = dir.clone();
            let _ = tokio::task::spawn_blocking(move || network::release_namespaces(&d)).await;
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::error!(dir = %dir.display(), error = %e, "removing an unrecorded pod dir");
            }
        }
        Ok(())
    }
}
