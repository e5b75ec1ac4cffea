use crate::service::CriService;
use crate::status::CriError;

impl CriService {
    /// The container must be running (FailedPrecondition otherwise).
    pub(crate) async fn reopen_container_log(
        &self,
        req: proto::ReopenContainerLogRequest,
    ) -> Result<proto::ReopenContainerLogResponse, CriError> {
        if req.container_id.is_empty() {
            return Err(CriError::invalid("container_id", "required"));
        }
        self.containers().reopen_log(&req.container_id).await?;
        Ok(proto::ReopenContainerLogResponse {})
    }
}
