use std::collections::HashSet;

use runtime::sandbox::{SandboxRecord, SandboxState};

use super::container_stats::blocking;
use crate::convert::stats::to_pod_stats;
use crate::service::CriService;
use crate::status::CriError;

impl CriService {
    /// Ready pods only. Filters: id (full or prefix), label selector (all labels must
    /// match). Every pod is read in one blocking task.
    pub(crate) async fn list_pod_sandbox_stats(
        &self,
        req: proto::ListPodSandboxStatsRequest,
    ) -> Result<proto::ListPodSandboxStatsResponse, CriError> {
        let filter = req.filter.unwrap_or_default();
        let svc = self.clone();
        let stats = blocking(move || {
            let pods = svc.sandboxes().list()?;
            let containers = svc.containers().list()?;
            let collector = svc.stats_collector();
            // This call sees every pod and container: forget the removed ones.
            collector.retain_pods(&pods.iter().map(|p| p.id.as_str()).collect::<HashSet<_>>());
            collector.retain_containers(
                &containers
                    .iter()
                    .map(|c| c.id.as_str())
                    .collect::<HashSet<_>>(),
            );
            let selected: Vec<SandboxRecord> = pods
                .into_iter()
                .filter(|p| p.state == SandboxState::Ready)
                .filter(|p| filter.id.is_empty() || p.id.starts_with(&filter.id))
                .filter(|p| {
                    filter
                        .label_selector
                        .iter()
                        .all(|(k, v)| p.config.labels.get(k) == Some(v))
                })
                .collect();
            let stats = collector.pods(&selected, &containers);
            Ok(selected
                .iter()
                .zip(&stats)
                .map(|(p, s)| to_pod_stats(p, &containers, s))
                .collect())
        })
        .await?;
        Ok(proto::ListPodSandboxStatsResponse { stats })
    }
}
