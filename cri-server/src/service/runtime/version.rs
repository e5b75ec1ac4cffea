use crate::service::CriService;
use crate::status::CriError;

/// The CRI API version string kubelet expects from every runtime.
const KUBE_API_VERSION: &str = "0.1.0";

impl CriService {
    pub(crate) async fn version(
        &self,
        _req: proto::VersionRequest,
    ) -> Result<proto::VersionResponse, CriError> {
        Ok(proto::VersionResponse {
            version: KUBE_API_VERSION.into(),
            runtime_name: "corral".into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: "v1".into(),
        })
    }
}
