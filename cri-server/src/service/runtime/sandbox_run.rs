use crate::convert::sandbox::sandbox_config;
use crate::service::CriService;
use crate::status::CriError;

impl CriService {
    pub(crate) async fn run_pod_sandbox(
        &self,
        req: proto::RunPodSandboxRequest,
    ) -> Result<proto::RunPodSandboxResponse, CriError> {
        let config = req
            .config
            .ok_or_else(|| CriError::invalid("config", "required"))?;
        let config = sandbox_config(config, req.runtime_handler)?;
        let record = self.sandboxes().run(config).await?;
        Ok(proto::RunPodSandboxResponse {
            pod_sandbox_id: record.id,
        })
    }
}
