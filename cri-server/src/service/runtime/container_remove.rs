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
        if let Some(record) = self.containers().find(&req.container_id)? {
            self.containers().remove(&record.id).await?;
            self.stats_collector().forget_container(&record.id);
        }
        Ok(proto::RemoveContainerResponse {})
    }
}
