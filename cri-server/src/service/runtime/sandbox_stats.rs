//! PLACEHOLDER (the stats helper replaces this file).
use crate::service::CriService;
use crate::status::CriError;

impl CriService {
    pub(crate) async fn pod_sandbox_stats(
        &self,
        _req: proto::PodSandboxStatsRequest,
    ) -> Result<proto::PodSandboxStatsResponse, CriError> {
        Err(CriError::Unimplemented("PodSandboxStats"))
    }
}
