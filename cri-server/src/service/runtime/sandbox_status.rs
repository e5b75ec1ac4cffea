use std::collections::HashMap;

use crate::convert::sandbox::to_status;
use crate::service::CriService;
use crate::status::CriError;

impl CriService {
    pub(crate) async fn pod_sandbox_status(
        &self,
        req: proto::PodSandboxStatusRequest,
    ) -> Result<proto::PodSandboxStatusResponse, CriError> {
        let record = self.sandboxes().get(&req.pod_sandbox_id)?;
        let mut info = HashMap::new();
        if req.verbose {
            let verbose = serde_json::json!({
                "pid": record.pause_pid.or(record.shim_pid),
                "shimPid": record.shim_pid,
                "pausePid": record.pause_pid,
                "namespaces": {
                    "network": record.netns,
                    "ipc": record.ipcns,
                    "uts": record.utsns,
                },
                "cgroupParent": record.config.cgroup_parent,
                "cgroup": record.cgroup.as_ref().map(|c| &c.path),
                "network": {
                    "mode": self.sandboxes().network_mode(),
                    "ip": record.ip,
                    "additionalIps": record.additional_ips,
                    "hostNetwork": record.config.host_network(),
                    "portMappings": record.config.port_mappings,
                    "error": record.network_error,
                },
                "config": record.config,
            });
            info.insert("info".to_string(), verbose.to_string());
        }
        Ok(proto::PodSandboxStatusResponse {
            status: Some(to_status(&record, host_ip())),
            info,
            containers_statuses: Vec::new(),
            timestamp: 0,
        })
    }
}

/// The node's primary IPv4 address, reported for hostNetwork pods: the source address of
/// the default route (a UDP connect sends nothing).
pub(crate) fn host_ip() -> Option<String> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    Some(s.local_addr().ok()?.ip().to_string())
}
