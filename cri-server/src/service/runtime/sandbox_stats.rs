use super::container_stats::blocking;
use crate::convert::stats::to_pod_stats;
use crate::service::CriService;
use crate::status::CriError;

impl CriService {
    /// One pod's stats (its cgroup, network and running containers), whatever its state.
    /// Unknown id: NotFound.
    pub(crate) async fn pod_sandbox_stats(
        &self,
        req: proto::PodSandboxStatsRequest,
    ) -> Result<proto::PodSandboxStatsResponse, CriError> {
        if req.pod_sandbox_id.is_empty() {
            return Err(CriError::invalid("pod_sandbox_id", "required"));
        }
        let svc = self.clone();
        let stats = blocking(move || {
            let pod = svc.sandboxes().get(&req.pod_sandbox_id)?;
            let containers = svc.containers().of_pod(&pod.id)?;
            let stats = svc.stats_collector().pod(&pod, &containers);
            Ok(to_pod_stats(&pod, &containers, &stats))
        })
        .await?;
        Ok(proto::PodSandboxStatsResponse { stats: Some(stats) })
    }
}
