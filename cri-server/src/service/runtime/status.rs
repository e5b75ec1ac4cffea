use std::collections::HashMap;

use crate::service::CriService;
use crate::status::CriError;

impl CriService {
    /// RuntimeReady is true while we serve; NetworkReady says plainly that pod networking has
    /// not landed, so kubelet does not schedule pods that would fail.
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
            proto::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: false,
                reason: "NetworkNotImplemented".into(),
                message: "pod networking is not available in this build of corral".into(),
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
            runtime_handlers: Vec::new(),
            features: Some(proto::RuntimeFeatures {
                supplemental_groups_policy: false,
            }),
        })
    }
}
