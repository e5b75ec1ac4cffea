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
        // As containerd: a privileged container only in a pod that kubelet admitted as
        // privileged (the request's sandbox config says so).
        if config.security.privileged && !sandbox_privileged(req.sandbox_config.as_ref()) {
            return Err(CriError::invalid(
                "config.linux.security_context.privileged",
                "no privileged container allowed in a sandbox that is not privileged \
                 (sandbox_config.linux.security_context.privileged)",
            ));
        }
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

fn sandbox_privileged(config: Option<&proto::PodSandboxConfig>) -> bool {
    config
        .and_then(|c| c.linux.as_ref())
        .and_then(|l| l.security_context.as_ref())
        .is_some_and(|sc| sc.privileged)
}

#[cfg(test)]
mod tests {
    use super::sandbox_privileged;

    #[test]
    fn only_a_privileged_sandbox_config_admits_privileged_containers() {
        let with = |privileged: bool| proto::PodSandboxConfig {
            linux: Some(proto::LinuxPodSandboxConfig {
                security_context: Some(proto::LinuxSandboxSecurityContext {
                    privileged,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(sandbox_privileged(Some(&with(true))));
        assert!(!sandbox_privileged(Some(&with(false))));
        assert!(!sandbox_privileged(Some(
            &proto::PodSandboxConfig::default()
        )));
        assert!(
            !sandbox_privileged(None),
            "no sandbox config: not privileged"
        );
    }
}
