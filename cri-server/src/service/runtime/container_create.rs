use crate::convert::container::container_config;
use crate::service::CriService;
use crate::status::CriError;

impl CriService {
    pub(crate) async fn create_container(
        &self,
        req: proto::CreateContainerRequest,
    ) -> Result<proto::CreateContainerResponse, CriError> {
        if req.pod_sandbox_id.is_empty() {
            return Err(CriError::invalid("pod_sandbox_id", "required"));
        }
        let config = req
            .config
            .as_ref()
            .ok_or_else(|| CriError::invalid("config", "required"))?;
        let config = container_config(config)?;
        let pod = self.sandboxes().get(&req.pod_sandbox_id)?;
        let record = self
            .containers()
            .create(&pod, self.images(), config)
            .await?;
        Ok(proto::CreateContainerResponse {
            container_id: record.id,
        })
    }
}
