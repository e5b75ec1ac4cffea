use crate::service::CriService;
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
        self.sandboxes().stop(&req.pod_sandbox_id).await?;
        Ok(proto::StopPodSandboxResponse {})
    }
}
