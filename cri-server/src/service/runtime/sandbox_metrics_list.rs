use runtime::sandbox::{SandboxRecord, SandboxState};

use super::container_stats::blocking;
use crate::convert::stats::to_pod_metrics;
use crate::service::CriService;
use crate::status::CriError;

impl CriService {
    /// The cAdvisor-style metrics of every ready pod and its running containers, read in
    /// one blocking task.
    pub(crate) async fn list_pod_sandbox_metrics(
        &self,
        _req: proto::ListPodSandboxMetricsRequest,
    ) -> Result<proto::ListPodSandboxMetricsResponse, CriError> {
        let svc = self.clone();
        let pod_metrics = blocking(move || {
            let pods = svc.sandboxes().list()?;
            let containers = svc.containers().list()?;
            let collector = svc.stats_collector();
            let ready: Vec<SandboxRecord> = pods
                .into_iter()
                .filter(|p| p.state == SandboxState::Ready)
                .collect();
            Ok(collector
                .pods_metrics(&ready, &containers)
                .into_iter()
                .map(to_pod_metrics)
                .collect())
        })
        .await?;
        Ok(proto::ListPodSandboxMetricsResponse { pod_metrics })
    }
}
