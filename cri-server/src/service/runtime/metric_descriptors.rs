use crate::convert::stats::to_descriptor;
use crate::service::CriService;
use crate::status::CriError;

impl CriService {
    /// Every metric ListPodSandboxMetrics may return, with its label keys.
    pub(crate) async fn list_metric_descriptors(
        &self,
        _req: proto::ListMetricDescriptorsRequest,
    ) -> Result<proto::ListMetricDescriptorsResponse, CriError> {
        Ok(proto::ListMetricDescriptorsResponse {
            descriptors: runtime::stats::descriptors()
                .iter()
                .map(to_descriptor)
                .collect(),
        })
    }
}
