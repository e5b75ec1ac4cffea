use crate::service::CriService;
use crate::status::CriError;

impl CriService {
    /// Idempotent: an unknown id is success; a running container is killed first.
    pub(crate) async fn remove_container(
        &self,
        req: proto::RemoveContainerRequest,
    ) -> Result<proto::RemoveContainerResponse, CriError> {
        if req.container_id.is_empty() {
            return Err(CriError::invalid("container_id", "required"));
        }
        self.containers().remove(&req.container_id).await?;
        Ok(proto::RemoveContainerResponse {})
    }
}
