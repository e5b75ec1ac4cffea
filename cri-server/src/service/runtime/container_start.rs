use crate::service::CriService;
use crate::status::CriError;

impl CriService {
    pub(crate) async fn start_container(
        &self,
        req: proto::StartContainerRequest,
    ) -> Result<proto::StartContainerResponse, CriError> {
        if req.container_id.is_empty() {
            return Err(CriError::invalid("container_id", "required"));
        }
        self.containers().start(&req.container_id).await?;
        Ok(proto::StartContainerResponse {})
    }
}
