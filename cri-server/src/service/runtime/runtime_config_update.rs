use crate::service::CriService;
use crate::status::CriError;

impl CriService {
    /// kubelet sends the node's pod CIDR; new pods take their addresses from it.
    pub(crate) async fn update_runtime_config(
        &self,
        req: proto::UpdateRuntimeConfigRequest,
    ) -> Result<proto::UpdateRuntimeConfigResponse, CriError> {
        let cidr = req
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        if !cidr.is_empty() {
            self.sandboxes().set_pod_cidr(&cidr).await?;
            tracing::info!(%cidr, "pod CIDR updated");
        }
        Ok(proto::UpdateRuntimeConfigResponse {})
    }
}
