use std::collections::HashMap;

use crate::service::CriService;
use crate::status::CriError;

impl CriService {
    /// RuntimeReady is true while we serve; NetworkReady is whether the pod bridge is up, or
    /// in CNI mode whether a network config is there and its plugins' STATUS says ready.
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
            match self.sandboxes().network_status().await {
                Ok(()) => proto::RuntimeCondition {
                    r#type: "NetworkReady".into(),
                    status: true,
                    reason: String::new(),
                    message: String::new(),
                },
                Err((reason, why)) => proto::RuntimeCondition {
                    r#type: "NetworkReady".into(),
                    status: false,
                    reason: reason.into(),
                    message: why,
                },
            },
        ];
        let mut info = HashMap::new();
        if req.verbose {
            let config = serde_json::to_string(self.config())
                .map_err(|e| ::runtime::Error::Internal(format!("encoding config: {e}")))?;
            info.insert("config".to_string(), config);
            // Which profiles a container may ask for on this node.
            let apparmor =
                tokio::task::spawn_blocking(::runtime::container::apparmor::host_enabled)
                    .await
                    .unwrap_or(false);
            let (apparmor, seccomp) = security_info(apparmor);
            info.insert("apparmor".to_string(), apparmor);
            info.insert("seccomp".to_string(), seccomp);
            let userns = match self.sandboxes().user_namespaces() {
                Ok(()) => serde_json::json!({"supported": true}),
                Err(why) => serde_json::json!({"supported": false, "reason": why}),
            };
            info.insert("userNamespaces".to_string(), userns.to_string());
        }
        Ok(proto::StatusResponse {
            status: Some(proto::RuntimeStatus { conditions }),
            info,
            // The default handler (the built-in executor): rro via mount_setattr(2); user
            // namespaces where the start-up probe found idmapped mounts for them.
            runtime_handlers: vec![proto::RuntimeHandler {
                name: String::new(),
                features: Some(proto::RuntimeHandlerFeatures {
                    recursive_read_only_mounts: true,
                    user_namespaces: self.sandboxes().user_namespaces().is_ok(),
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

/// The verbose Status entries for AppArmor and seccomp (JSON objects, as "config").
fn security_info(apparmor_enabled: bool) -> (String, String) {
    let apparmor = if apparmor_enabled {
        serde_json::json!({
            "enabled": true,
            "profiles": "Localhost profiles loaded in the kernel; RuntimeDefault is unconfined",
        })
    } else {
        serde_json::json!({
            "enabled": false,
            "reason": "AppArmor is unavailable on this node: Localhost profiles are refused, \
                       RuntimeDefault and Unconfined run unconfined",
        })
    };
    let seccomp = serde_json::json!({
        "enabled": true,
        "profiles": ["RuntimeDefault (built in)", "Localhost (OCI JSON)", "Unconfined"],
    });
    (apparmor.to_string(), seccomp.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn security_info_says_whether_apparmor_is_there() {
        let (off, seccomp) = super::security_info(false);
        let off: serde_json::Value = serde_json::from_str(&off).expect("json");
        assert_eq!(off["enabled"], false);
        assert!(off["reason"]
            .as_str()
            .is_some_and(|r| r.contains("unavailable")));
        let (on, _) = super::security_info(true);
        let on: serde_json::Value = serde_json::from_str(&on).expect("json");
        assert_eq!(on["enabled"], true);
        let seccomp: serde_json::Value = serde_json::from_str(&seccomp).expect("json");
        assert_eq!(seccomp["enabled"], true);
    }
}
