use std::collections::HashMap;

use crate::convert::container_status::to_status;
use crate::service::CriService;
use crate::status::CriError;

impl CriService {
    pub(crate) async fn container_status(
        &self,
        req: proto::ContainerStatusRequest,
    ) -> Result<proto::ContainerStatusResponse, CriError> {
        if req.container_id.is_empty() {
            return Err(CriError::invalid("container_id", "required"));
        }
        let record = self.containers().get(&req.container_id)?;
        let mut info = HashMap::new();
        if req.verbose {
            let spec: serde_json::Value = self
                .containers()
                .spec_json(&record)
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or_default();
            // The pod's user namespace maps, when it has one (also in the spec's `linux`).
            let linux = &spec["linux"];
            let userns = (!linux["uidMappings"].is_null()).then(|| {
                serde_json::json!({
                    "uidMappings": linux["uidMappings"],
                    "gidMappings": linux["gidMappings"],
                })
            });
            let verbose = serde_json::json!({
                "userNamespace": userns,
                "pid": record.pid,
                "sandboxID": record.pod_id,
                "bundle": record.bundle,
                "cgroup": record.cgroup,
                "runtimeSpec": spec,
                "config": record.config,
            });
            info.insert("info".to_string(), verbose.to_string());
        }
        Ok(proto::ContainerStatusResponse {
            status: Some(to_status(&record)),
            info,
        })
    }
}
