//! PLACEHOLDER (the stats helper replaces this file).
use crate::service::CriService;
use crate::status::CriError;

impl CriService {
    pub(crate) async fn list_metric_descriptors(
        &self,
        _req: proto::ListMetricDescriptorsRequest,
    ) -> Result<proto::ListMetricDescriptorsResponse, CriError> {
        Err(CriError::Unimplemented("ListMetricDescriptors"))
    }
}
