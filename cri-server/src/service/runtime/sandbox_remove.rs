use crate::service::CriService;
use crate::status::CriError;

impl CriService {
    /// Idempotent: an unknown id is success.
    pub(crate) async fn remove_pod_sandbox(
        &self,
        req: proto::RemovePodSandboxRequest,
    ) -> Result<proto::RemovePodSandboxResponse, CriError> {
        if req.pod_sandbox_id.is_empty() {
            return Err(CriError::invalid("pod_sandbox_id", "required"));
        }
        if let Some(pod) = self.sandboxes().find(&req.pod_sandbox_id)? {
            self.containers().remove_pod(&pod.id).await?;
        }
        self.sandboxes().remove(&req.pod_sandbox_id).await?;
        Ok(proto::RemovePodSandboxResponse {})
    }
}
