//! Start-up reconciliation: records against what is on disk and alive.
//!
//! - A Ready pod whose shim is gone (killed, or the node rebooted and /run was emptied) is
//!   NotReady: its processes are gone, so kubelet must recreate it.
//! - A pod dir with no record is what a RunPodSandbox killed half-way left: released by the
//!   intent it wrote before making anything (shim, address and rules, cgroup, shm,
//!   namespaces), all at once so that start-up stays short.
//! - An address that no pod owns (a run killed between its allocation and its dir's
//!   removal by a rollback) is released with its rules and veth.

use std::collections::HashSet;
use std::path::PathBuf;

use super::{cgroup, files, PodIntent, SandboxState, Sandboxes};
use crate::error::Result;

impl Sandboxes {
    pub(super) async fn recover(&self) -> Result<()> {
        let records = self.db.list_sandboxes()?;
        let known: HashSet<_> = records.iter().map(|r| r.dir.clone()).collect();
        let mut owners: HashSet<String> = records.iter().map(|r| r.id.clone()).collect();
        for mut r in records {
            if r.state == SandboxState::Ready && !crate::shim_client::is_alive(&r.dir) {
                tracing::warn!(pod = %r.id, "shim gone while corrald was down: pod is not ready");
                r.state = SandboxState::NotReady;
                self.db.put_sandbox(&r)?;
            }
        }
        let orphans: Vec<PathBuf> = std::fs::read_dir(&self.pods_dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|d| !known.contains(d))
                    .collect()
            })
            .unwrap_or_default();
        let intents: Vec<Option<PodIntent>> =
            orphans.iter().map(|d| crate::intent::read(d)).collect();
        owners.extend(intents.iter().flatten().map(|i| i.id.clone()));
        let releases = orphans
            .into_iter()
            .zip(intents)
            .map(|(dir, intent)| self.release_orphan(dir, intent));
        futures::future::join_all(releases).await;

        if let Some(super::PodNetwork::Cni(c)) = &self.network {
            c.gc(&owners).await;
        }
        if let Some(super::PodNetwork::Native(net)) = &self.network {
            for id in net.attached_pods()? {
                if !owners.contains(&id) {
                    tracing::warn!(pod = %id, "releasing an address no pod owns");
                    if let Err(e) = net.teardown_pod(&id, None).await {
                        tracing::error!(pod = %id, error = %e, "releasing an address");
                    }
                }
            }
        }
        Ok(())
    }

    /// Releases everything a pod dir without a record may hold. Never fails: what can't be
    /// released is logged, and the dir stays for the next start-up to try again.
    async fn release_orphan(&self, dir: PathBuf, intent: Option<PodIntent>) {
        tracing::warn!(dir = %dir.display(), pod = ?intent.as_ref().map(|i| &i.id), "releasing an unrecorded pod dir");
        if crate::shim_client::is_alive(&dir) {
            if let Ok(shim) = crate::shim_client::connect(&dir).await {
                let _ = shim.shutdown(std::time::Duration::from_secs(1)).await;
            }
        } else {
            let _ = crate::shim_client::release(&dir).await;
        }
        let mut clean = true;
        if let Some(intent) = &intent {
            let netns = dir.join("net");
            let netns = netns.exists().then_some(netns.as_path());
            if let Err(e) = self.teardown_network(&intent.id, netns).await {
                tracing::error!(pod = %intent.id, error = %e, "releasing an unrecorded pod's network");
                clean = false;
            }
        }
        if let Some(cg) = intent.and_then(|i| i.cgroup) {
            if let Err(e) = cgroup::blocking(move || cg.release()).await {
                tracing::error!(dir = %dir.display(), error = %e, "releasing an unrecorded pod's cgroup");
                clean = false;
            }
        }
        if let Err(e) = files::unmount_shm(&dir.join("shm")) {
            tracing::error!(dir = %dir.display(), error = %e, "unmounting an unrecorded pod's shm");
            clean = false;
        }
        let d = dir.clone();
        match tokio::task::spawn_blocking(move || network::release_namespaces(&d)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(dir = %dir.display(), error = %e, "releasing an unrecorded pod's namespaces");
                clean = false;
            }
            Err(e) => {
                tracing::error!(error = %e, "namespace task");
                clean = false;
            }
        }
        if clean {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::error!(dir = %dir.display(), error = %e, "removing an unrecorded pod dir");
            }
        }
    }
}
