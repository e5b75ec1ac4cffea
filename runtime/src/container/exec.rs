//! ExecSync and ReopenContainerLog: requests the pod's shim serves for a running
//! container. The shim spawns the exec process (never corrald: it is multi-threaded), in
//! the container's namespaces and cgroup, with the container's own user, capabilities,
//! no_new_privs, env and working dir from its OCI spec.

use std::time::Duration;

use base64::Engine;

use super::{ContainerRecord, Containers};
use crate::error::{Error, Result};
use crate::shim::protocol::{Exec, MAX_EXEC_OUTPUT};
use crate::shim_client::PodShim;

/// What an exec printed and how it ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

/// How long past its own timeout an exec call may take (draining, answering).
const EXEC_SLACK: Duration = Duration::from_secs(10);
/// The bound on an exec with no timeout: a probe that never ends must not pin a call
/// forever.
const EXEC_UNBOUNDED: Duration = Duration::from_secs(24 * 3600);

impl Containers {
    /// Run `cmd` in the running container `id`; `timeout` zero means none.
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput> {
        if cmd.is_empty() || cmd[0].is_empty() {
            return Err(Error::invalid("cmd", "empty command"));
        }
        let record = self.running(id)?;
        let span = tracing::debug_span!("exec", pod = %record.pod_id, container = %record.id);
        let _e = span.enter();
        let process = exec_process(&record, cmd, false).await?;
        let exec = Exec {
            id: format!("exec-{}", hex::encode(rand::random::<[u8; 8]>())),
            container_id: record.id.clone(),
            process,
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            max_output: MAX_EXEC_OUTPUT,
            stream: None,
        };
        let limit = if timeout.is_zero() {
            EXEC_UNBOUNDED
        } else {
            timeout + EXEC_SLACK
        };
        let reply = PodShim::new(&record.pod_dir).exec(exec, limit).await?;
        if reply.timed_out {
            return Err(Error::DeadlineExceeded(format!(
                "command {cmd:?} timed out after {timeout:?}"
            )));
        }
        let decode = |s: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| Error::Internal(format!("exec output from the shim: {e}")))
        };
        Ok(ExecOutput {
            stdout: decode(&reply.stdout)?,
            stderr: decode(&reply.stderr)?,
            exit_code: reply.exit_code,
        })
    }

    /// Reopen the container's log file, after kubelet has moved the old one away.
    pub async fn reopen_log(&self, id: &str) -> Result<()> {
        let record = self.running(id)?;
        PodShim::new(&record.pod_dir)
            .reopen_log(&record.id)
            .await
            .map_err(Error::from)
    }

    /// The container, which must be running (FailedPrecondition otherwise).
    pub(super) fn running(&self, id: &str) -> Result<ContainerRecord> {
        let record = self.get(id)?;
        if !record.is_running() {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not running ({:?})",
                record.id, record.state
            )));
        }
        Ok(record)
    }
}

/// The process an exec runs in the container of `record`: the container's own (user,
/// capabilities, no_new_privs, env, cwd, rlimits, AppArmor; its seccomp and cgroup come
/// with the container) with `cmd` as its args, on a terminal when `tty`.
pub(super) async fn exec_process(
    record: &ContainerRecord,
    cmd: &[String],
    tty: bool,
) -> Result<oci_spec::runtime::Process> {
    let spec_path = record.spec_file();
    let read_path = spec_path.clone();
    let bytes = tokio::task::spawn_blocking(move || std::fs::read(&read_path))
        .await
        .map_err(|e| Error::Internal(format!("reading the spec: {e}")))?
        .map_err(Error::io("reading", &spec_path))?;
    let spec: oci_spec::runtime::Spec = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Internal(format!("{}: {e}", spec_path.display())))?;
    let mut process = spec
        .process()
        .clone()
        .ok_or_else(|| Error::Internal("the container's spec has no process".into()))?;
    process.set_args(Some(cmd.to_vec()));
    process.set_terminal(Some(tty));
    Ok(process)
}
