//! `corral-shim`: the per-pod monitor (DESIGN.md, Process model).
//!
//! One small single-threaded process per pod, with no async runtime: started by corrald at
//! RunPodSandbox, it forks away into its own session ([`daemon`]), becomes the pod's
//! subreaper, starts the pause when the pod shares its PID namespace ([`pause`]), and
//! serves corrald over `<dir>/shim.sock` ([`protocol`], [`server`]) while it reaps every
//! child and records each tracked exit ([`reaper`], [`exit_file`]). It holds each
//! container's stdio and writes its CRI log ([`cri_log`]), and runs ExecSync's processes
//! with their output captured in memory ([`exec`]), and streamed execs and attach sessions
//! whose fds go to corrald ([`stream`]). It outlives corrald; a restarted
//! corrald reattaches through [`crate::shim_client::connect`].
//!
//! Children the shim forks inherit its blocked signal mask (SIGCHLD, SIGTERM, SIGINT),
//! ignored SIGPIPE and `oom_score_adj`; a container init must reset all three before it
//! execs the user's process.
//!
//! Only [`daemon`] and [`pause`] (which fork) and [`sys`] (poll, _exit, the fds received
//! with `SCM_RIGHTS`, TIOCSWINSZ) may use `unsafe`.

pub mod args;
mod container;
pub mod cri_log;
#[allow(unsafe_code)]
mod daemon;
mod exec;
pub mod exit_file;
#[allow(unsafe_code)]
pub mod init;
#[allow(unsafe_code)]
pub(crate) mod pause;
pub mod protocol;
mod pty;
mod reaper;
mod server;
mod stream;
#[allow(unsafe_code)]
pub(crate) mod sys;
pub mod time;

pub use daemon::main;

/// One line of the shim's own diagnostics on its stderr (`--log`, else /dev/null).
fn log(message: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let line = format!(
        "{} corral-shim[{}]: {message}\n",
        time::now_rfc3339_nano(),
        std::process::id()
    );
    let _ = std::io::stderr().write_all(line.as_bytes());
}
