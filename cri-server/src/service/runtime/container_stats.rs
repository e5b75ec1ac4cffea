use crate::convert::stats::to_container_stats;
use crate::service::CriService;
use crate::status::CriError;

impl CriService {
    /// One container's stats, whatever its state: a container that is not running has
    /// what its cgroup still holds (nothing, once the cgroup is gone) and its writable
    /// layer. Unknown id: NotFound.
    pub(crate) async fn container_stats(
        &self,
        req: proto::ContainerStatsRequest,
    ) -> Result<proto::ContainerStatsResponse, CriError> {
        if req.container_id.is_empty() {
            return Err(CriError::invalid("container_id", "required"));
        }
        let svc = self.clone();
        let stats = blocking(move || {
            let record = svc.containers().get(&req.container_id)?;
            let stats = svc.stats_collector().container(&record);
            Ok(to_container_stats(&record, &stats))
        })
        .await?;
        Ok(proto::ContainerStatsResponse { stats: Some(stats) })
    }
}

/// Runs `f` (store reads, cgroup and /proc files, a `du` walk) on a blocking thread: one
/// task per call, however many containers it covers.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CriError> + Send + 'static,
) -> Result<T, CriError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CriError::Runtime(runtime::Error::Internal(format!("stats task: {e}"))))?
}
