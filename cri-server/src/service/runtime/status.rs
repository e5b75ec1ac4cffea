use std::collections::HashMap;

use crate::service::CriService;
use crate::status::CriError;

impl CriService {
    /// RuntimeReady is true while we serve; NetworkReady is whether the pod bridge is up.
    pub(crate) async fn runtime_status(
        &self,
        req: proto::StatusRequest,
    ) -> Result<proto::StatusResponse, CriError> {
        let conditions = vec![
            proto::RuntimeCondition {
                r#type: "RuntimeReady".into(),
                status: true,
                reason: String::new(),
                message: String::new(),
            },
            match self.sandboxes().network_status() {
                Ok(()) => proto::RuntimeCondition {
                    r#type: "NetworkReady".into(),
                    status: true,
                    reason: String::new(),
                    message: String::new(),
                },
                Err(why) => proto::RuntimeCondition {
                    r#type: "NetworkReady".into(),
                    status: false,
                    reason: "NetworkSetupFailed".into(),
                    message: format!("the pod bridge could not be set up: {why}"),
                },
            },
        ];
        let mut info = HashMap::new();
        if req.verbose {
            let config = serde_json::to_string(self.config())
                .map_err(|e| ::runtime::Error::Internal(format!("encoding config: {e}")))?;
            info.insert("config".to_string(), config);
        }
        Ok(proto::StatusResponse {
            status: Some(proto::RuntimeStatus { conditions }),
            info,
            // The default handler (the built-in executor): rro via mount_setattr(2).
            runtime_handlers: vec![proto::RuntimeHandler {
                name: String::new(),
                features: Some(proto::RuntimeHandlerFeatures {
                    recursive_read_only_mounts: true,
                    user_namespaces: false,
                }),
            }],
            // Strict is honoured (no /etc/group look-up) and ContainerStatus.user reports
            // the identity, which is what kubelet needs before it asks for Strict.
            features: Some(proto::RuntimeFeatures {
                supplemental_groups_policy: true,
            }),
        })
    }
}
