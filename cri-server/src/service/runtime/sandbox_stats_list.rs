//! PLACEHOLDER (the stats helper replaces this file).
use crate::service::CriService;
use crate::status::CriError;

impl CriService {
    pub(crate) async fn list_pod_sandbox_stats(
        &self,
        _req: proto::ListPodSandboxStatsRequest,
    ) -> Result<proto::ListPodSandboxStatsResponse, CriError> {
        Err(CriError::Unimplemented("ListPodSandboxStats"))
    }
}
