use crate::service::CriService;
use crate::status::CriError;
use cri_server::streaming::tokens::Pending;

impl CriService {
    /// A single-use URL of the streaming server attached to the container's stdio
    /// (`kubectl attach`, `crictl attach`).
    pub(crate) async fn attach(
        &self,
        mut req: proto::AttachRequest,
    ) -> Result<proto::AttachResponse, CriError> {
        if req.container_id.is_empty() {
            return Err(CriError::invalid("container_id", "required"));
        }
        super::exec::check_stdio(req.tty, req.stdin, req.stdout, req.stderr)?;
        req.container_id = self.running_container(&req.container_id)?;
        Ok(proto::AttachResponse {
            url: self.stream_url(Pending::Attach(req))?,
        })
    }
}
