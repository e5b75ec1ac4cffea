//! PLACEHOLDER (the stats helper replaces this file).
use crate::service::CriService;
use crate::status::CriError;

impl CriService {
    pub(crate) async fn container_stats(
        &self,
        _req: proto::ContainerStatsRequest,
    ) -> Result<proto::ContainerStatsResponse, CriError> {
        Err(CriError::Unimplemented("ContainerStats"))
    }
}
