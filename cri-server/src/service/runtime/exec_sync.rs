use std::time::Duration;

use crate::service::CriService;
use crate::status::CriError;

impl CriService {
    /// A command in a running container (kubelet's exec probes); `timeout` in seconds, 0
    /// for none; a timeout answers DeadlineExceeded.
    pub(crate) async fn exec_sync(
        &self,
        req: proto::ExecSyncRequest,
    ) -> Result<proto::ExecSyncResponse, CriError> {
        if req.container_id.is_empty() {
            return Err(CriError::invalid("container_id", "required"));
        }
        if req.cmd.is_empty() {
            return Err(CriError::invalid("cmd", "required"));
        }
        crate::convert::limits::exec_cmd(&req.cmd)?;
        let timeout = Duration::from_secs(u64::try_from(req.timeout).unwrap_or(0));
        let out = self
            .containers()
            .exec_sync(&req.container_id, &req.cmd, timeout)
            .await?;
        Ok(proto::ExecSyncResponse {
            stdout: out.stdout,
            stderr: out.stderr,
            exit_code: out.exit_code,
        })
    }
}
