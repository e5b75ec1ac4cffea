use std::collections::HashSet;

use runtime::container::ContainerRecord;

use super::container_stats::blocking;
use crate::convert::stats::to_container_stats;
use crate::service::CriService;
use crate::status::CriError;

impl CriService {
    /// Running containers only, as containerd answers (kubelet asks for the live ones).
    /// Filters: id (full or prefix), pod id (full or prefix), label selector (all labels
    /// must match). Every container is read in one blocking task.
    pub(crate) async fn list_container_stats(
        &self,
        req: proto::ListContainerStatsRequest,
    ) -> Result<proto::ListContainerStatsResponse, CriError> {
        let filter = req.filter.unwrap_or_default();
        let svc = self.clone();
        let stats = blocking(move || {
            let all = svc.containers().list()?;
            let collector = svc.stats_collector();
            // What a removed container left in the collector goes now: this call sees
            // every container, not only those the filter picks.
            collector.retain_containers(&all.iter().map(|c| c.id.as_str()).collect::<HashSet<_>>());
            let selected: Vec<ContainerRecord> = all
                .into_iter()
                .filter(|c| c.is_running())
                .filter(|c| filter.id.is_empty() || c.id.starts_with(&filter.id))
                .filter(|c| {
                    filter.pod_sandbox_id.is_empty() || c.pod_id.starts_with(&filter.pod_sandbox_id)
                })
                .filter(|c| {
                    filter
                        .label_selector
                        .iter()
                        .all(|(k, v)| c.config.labels.get(k) == Some(v))
                })
                .collect();
            let stats = collector.containers(&selected);
            Ok(selected
                .iter()
                .zip(&stats)
                .map(|(r, s)| to_container_stats(r, s))
                .collect())
        })
        .await?;
        Ok(proto::ListContainerStatsResponse { stats })
    }
}
