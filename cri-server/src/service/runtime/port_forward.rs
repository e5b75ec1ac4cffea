use crate::service::CriService;
use crate::status::CriError;
use cri_server::streaming::tokens::Pending;
use runtime::sandbox::SandboxState;

/// Ports one PortForward request may name.
const MAX_PORTS: usize = 64;

impl CriService {
    /// A single-use URL of the streaming server forwarding connections to ports of the
    /// pod's own network namespace (`kubectl port-forward`).
    pub(crate) async fn port_forward(
        &self,
        mut req: proto::PortForwardRequest,
    ) -> Result<proto::PortForwardResponse, CriError> {
        if req.pod_sandbox_id.is_empty() {
            return Err(CriError::invalid("pod_sandbox_id", "required"));
        }
        if req.port.len() > MAX_PORTS {
            return Err(CriError::invalid(
                "port",
                format!("{} ports, at most {MAX_PORTS}", req.port.len()),
            ));
        }
        if let Some(p) = req.port.iter().find(|p| !(1..=65535).contains(*p)) {
            return Err(CriError::invalid(
                "port",
                format!("{p} is not a port: want 1 to 65535"),
            ));
        }
        let pod = self.sandboxes().get(&req.pod_sandbox_id)?;
        if pod.state != SandboxState::Ready {
            return Err(CriError::Runtime(runtime::Error::FailedPrecondition(format!(
                "pod sandbox {} is not ready",
                pod.id
            ))));
        }
        req.pod_sandbox_id = pod.id;
        Ok(proto::PortForwardResponse {
            url: self.stream_url(Pending::PortForward(req))?,
        })
    }
}
