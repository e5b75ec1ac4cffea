//! PLACEHOLDER (the stats helper replaces this file).
use crate::service::CriService;
use crate::status::CriError;

impl CriService {
    pub(crate) async fn list_pod_sandbox_metrics(
        &self,
        _req: proto::ListPodSandboxMetricsRequest,
    ) -> Result<proto::ListPodSandboxMetricsResponse, CriError> {
        Err(CriError::Unimplemented("ListPodSandboxMetrics"))
    }
}
