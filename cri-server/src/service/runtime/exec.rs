use crate::service::CriService;
use crate::status::CriError;
use cri_server::streaming::tokens::Pending;

impl CriService {
    /// A single-use URL of the streaming server that runs `cmd` in the container with
    /// its stdio streamed (`kubectl exec`, `crictl exec -it`).
    pub(crate) async fn exec(
        &self,
        mut req: proto::ExecRequest,
    ) -> Result<proto::ExecResponse, CriError> {
        if req.container_id.is_empty() {
            return Err(CriError::invalid("container_id", "required"));
        }
        if req.cmd.is_empty() || req.cmd[0].is_empty() {
            return Err(CriError::invalid("cmd", "required"));
        }
        crate::convert::limits::exec_cmd(&req.cmd)?;
        check_stdio(req.tty, req.stdin, req.stdout, req.stderr)?;
        req.container_id = self.running_container(&req.container_id)?;
        Ok(proto::ExecResponse {
            url: self.stream_url(Pending::Exec(req))?,
        })
    }
}

/// The CRI's rules for a streamed stdio, as kubelet's streaming library checks them.
pub(super) fn check_stdio(
    tty: bool,
    stdin: bool,
    stdout: bool,
    stderr: bool,
) -> Result<(), CriError> {
    if tty && stderr {
        return Err(CriError::invalid(
            "stderr",
            "tty and stderr cannot both be true: a terminal has one output stream",
        ));
    }
    if !stdin && !stdout && !stderr {
        return Err(CriError::invalid(
            "stdin",
            "one of stdin, stdout and stderr must be set",
        ));
    }
    Ok(())
}
