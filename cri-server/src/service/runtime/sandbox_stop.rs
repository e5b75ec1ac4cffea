use crate::service::CriService;

/// The grace a pod's still-running containers get when the pod is stopped: none. kubelet
/// stops them itself first, with the pod's own grace period; what is left is killed at
/// once, as the CRI asks and containerd does.
const CONTAINER_STOP_GRACE: std::time::Duration = std::time::Duration::ZERO;
use crate::status::CriError;

impl CriService {
    /// Idempotent: an unknown id is success (api.proto: kubelet calls it more than once).
    pub(crate) async fn stop_pod_sandbox(
        &self,
        req: proto::StopPodSandboxRequest,
    ) -> Result<proto::StopPodSandboxResponse, CriError> {
        if req.pod_sandbox_id.is_empty() {
            return Err(CriError::invalid("pod_sandbox_id", "required"));
        }
        // The containers first: each with a short grace, and their cgroups gone before the
        // pod's cgroup is deleted.
        if let Some(pod) = self.sandboxes().find(&req.pod_sandbox_id)? {
            self.containers()
                .stop_pod(&pod.id, CONTAINER_STOP_GRACE)
                .await?;
        }
        self.sandboxes().stop(&req.pod_sandbox_id).await?;
        Ok(proto::StopPodSandboxResponse {})
    }
}
