use std::time::Duration;

use crate::service::CriService;
use crate::status::CriError;

impl CriService {
    /// Idempotent: an unknown or exited container is success. `timeout` is the grace
    /// period in seconds between the stop signal and SIGKILL; 0 kills at once.
    pub(crate) async fn stop_container(
        &self,
        req: proto::StopContainerRequest,
    ) -> Result<proto::StopContainerResponse, CriError> {
        if req.container_id.is_empty() {
            return Err(CriError::invalid("container_id", "required"));
        }
        let grace = Duration::from_secs(u64::try_from(req.timeout).unwrap_or(0));
        self.containers().stop(&req.container_id, grace).await?;
        Ok(proto::StopContainerResponse {})
    }
}
