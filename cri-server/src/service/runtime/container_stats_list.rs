//! PLACEHOLDER (the stats helper replaces this file).
use crate::service::CriService;
use crate::status::CriError;

impl CriService {
    pub(crate) async fn list_container_stats(
        &self,
        _req: proto::ListContainerStatsRequest,
    ) -> Result<proto::ListContainerStatsResponse, CriError> {
        Err(CriError::Unimplemented("ListContainerStats"))
    }
}
