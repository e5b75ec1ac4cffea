//! Running one plugin binary: the CNI_* environment, the config on stdin, the result or
//! error JSON on stdout. Each run happens on a blocking thread (the plugin is a separate
//! process given `CNI_NETNS`: nothing here enters a namespace), with a deadline after which
//! the plugin is killed, and with its output bounded.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::error::{Error, Result};

/// A plugin's stdout larger than this is refused (a result is a few KiB).
pub const MAX_OUTPUT_BYTES: u64 = 1 << 20;
/// What of a plugin's stderr is kept for the error.
const MAX_STDERR_BYTES: u64 = 16 << 10;

/// The CNI operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Add,
    Del,
    Check,
    Status,
    Gc,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Add => "ADD",
            Op::Del => "DEL",
            Op::Check => "CHECK",
            Op::Status => "STATUS",
            Op::Gc => "GC",
        }
    }
}

/// The attachment a call is about (absent for STATUS and GC).
#[derive(Clone, Debug)]
pub struct Target {
    pub container_id: String,
    pub netns: Option<PathBuf>,
    pub ifname: String,
    /// `CNI_ARGS`: `K=V;K=V`.
    pub args: String,
}

/// Finds and runs plugins.
#[derive(Clone, Debug)]
pub struct Exec {
    pub bin_dirs: Vec<PathBuf>,
    pub timeout: Duration,
}

impl Exec {
    /// The plugin's binary: the first bin dir that has an executable file of that name.
    pub fn find(&self, kind: &str) -> Result<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        for dir in &self.bin_dirs {
            let path = dir.join(kind);
            if let Ok(meta) = std::fs::metadata(&path) {
                if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                    return Ok(path);
                }
            }
        }
        Err(Error::Plugin {
            plugin: kind.to_string(),
            op: "find".into(),
            message: format!(
                "no executable {kind:?} in {}",
                self.bin_dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
    }

    /// Runs plugin `kind` for `op` with `stdin`; its stdout when it succeeds, else the
    /// error it reported (code, message, details) with its stderr.
    pub async fn run(
        &self,
        kind: &str,
        op: Op,
        target: Option<&Target>,
        stdin: Vec<u8>,
    ) -> Result<Vec<u8>> {
        let path = self.find(kind)?;
        let mut cmd = Command::new(&path);
        // The daemon's environment stays (plugins such as portmap run iptables from PATH);
        // the CNI_* variables are the call's only.
        cmd.env("CNI_COMMAND", op.as_str())
            .env("CNI_PATH", join_paths(&self.bin_dirs))
            .env_remove("CNI_CONTAINERID")
            .env_remove("CNI_NETNS")
            .env_remove("CNI_IFNAME")
            .env_remove("CNI_ARGS");
        if let Some(t) = target {
            cmd.env("CNI_CONTAINERID", &t.container_id)
                .env("CNI_IFNAME", &t.ifname)
                .env("CNI_ARGS", &t.args);
            if let Some(netns) = &t.netns {
                cmd.env("CNI_NETNS", netns);
            }
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let timeout = self.timeout;
        let kind = kind.to_string();
        let started = std::time::Instant::now();
        let out = tokio::task::spawn_blocking(move || run_blocking(cmd, stdin, timeout))
            .await
            .map_err(|e| Error::Internal(format!("plugin task: {e}")))?;
        let fail = |message: String| Error::Plugin {
            plugin: kind.clone(),
            op: op.as_str().into(),
            message,
        };
        let out = out.map_err(fail)?;
        tracing::debug!(plugin = %kind, op = op.as_str(), ms = started.elapsed().as_millis() as u64, ok = out.success, "CNI plugin ran");
        if out.success {
            return Ok(out.stdout);
        }
        Err(fail(describe_failure(&out)))
    }
}

struct Output {
    success: bool,
    status: String,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

fn run_blocking(
    mut cmd: Command,
    stdin: Vec<u8>,
    timeout: Duration,
) -> std::result::Result<Output, String> {
    let mut child = cmd.spawn().map_err(|e| format!("cannot run: {e}"))?;
    let (Some(mut child_in), Some(child_out), Some(child_err)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        let _ = child.wait();
        return Err("pipes missing".into());
    };
    // Each pipe on a thread of its own: a plugin that doesn't read its stdin, or writes
    // much to stderr, can't block the others; the deadline covers them all.
    std::thread::spawn(move || {
        let _ = child_in.write_all(&stdin);
    });
    let stderr = std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut pipe = child_err;
        let _ = (&mut pipe).take(MAX_STDERR_BYTES).read_to_end(&mut kept);
        // Drain the rest so the plugin never blocks on a full pipe.
        let _ = std::io::copy(&mut pipe, &mut std::io::sink());
        kept
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let r = child_out.take(MAX_OUTPUT_BYTES + 1).read_to_end(&mut out);
        let _ = tx.send(r.map(|_| out));
    });
    let stdout = match rx.recv_timeout(timeout) {
        Ok(Ok(out)) if out.len() as u64 > MAX_OUTPUT_BYTES => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("output larger than {MAX_OUTPUT_BYTES} bytes"));
        }
        Ok(Ok(out)) => out,
        Ok(Err(e)) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("reading its output: {e}"));
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("timed out after {}s; killed", timeout.as_secs()));
        }
    };
    let status = child.wait().map_err(|e| format!("waiting: {e}"))?;
    let stderr = stderr.join().unwrap_or_default();
    Ok(Output {
        success: status.success(),
        status: status.to_string(),
        stdout,
        stderr,
    })
}

/// The spec's error result. Our own struct rather than `rscni_types::types::ErrorResult`:
/// that one's conversion replaces a well-known code's message with its generic text,
/// and the plugin's own message is what an operator needs.
#[derive(serde::Deserialize)]
struct PluginError {
    code: u32,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    details: String,
}

/// The plugin's error JSON (code, msg, details) when it wrote one, its exit status, and
/// the end of its stderr.
fn describe_failure(out: &Output) -> String {
    let mut s = match serde_json::from_slice::<PluginError>(&out.stdout) {
        Ok(e) if e.details.is_empty() => format!("error code {}: {}", e.code, clean(&e.msg)),
        Ok(e) => format!(
            "error code {}: {}: {}",
            e.code,
            clean(&e.msg),
            clean(&e.details)
        ),
        Err(_) if out.stdout.is_empty() => format!("failed ({})", out.status),
        Err(_) => format!(
            "failed ({}) with output {:?}",
            out.status,
            clean(&String::from_utf8_lossy(&out.stdout))
        ),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stderr = stderr.trim();
    if !stderr.is_empty() {
        s.push_str("; stderr: ");
        s.push_str(&clean(stderr));
    }
    s
}

/// Bounded, printable text for a gRPC message.
fn clean(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
        .collect();
    if s.len() > 4096 {
        let mut end = 4096;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s
    }
}

fn join_paths(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

/// Writes an executable script (tests).
#[cfg(test)]
pub(crate) fn script(dir: &std::path::Path, name: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(dir: &std::path::Path) -> Exec {
        Exec {
            bin_dirs: vec![dir.join("missing"), dir.to_path_buf()],
            timeout: Duration::from_secs(2),
        }
    }

    fn target() -> Target {
        Target {
            container_id: "abc".into(),
            netns: Some("/run/netns/x".into()),
            ifname: "eth0".into(),
            args: "IgnoreUnknown=1;K8S_POD_NAME=p".into(),
        }
    }

    #[tokio::test]
    async fn env_stdin_and_stdout() {
        let dir = tempfile::tempdir().expect("tmp");
        script(
            dir.path(),
            "echoer",
            r#"read -r conf; printf '{"cmd":"%s","id":"%s","netns":"%s","if":"%s","args":"%s","path":"%s","conf":%s}' "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_NETNS" "$CNI_IFNAME" "$CNI_ARGS" "$CNI_PATH" "$conf""#,
        );
        let out = exec(dir.path())
            .run("echoer", Op::Add, Some(&target()), b"{\"a\":1}\n".to_vec())
            .await
            .expect("run");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["cmd"], "ADD");
        assert_eq!(v["id"], "abc");
        assert_eq!(v["netns"], "/run/netns/x");
        assert_eq!(v["if"], "eth0");
        assert_eq!(v["args"], "IgnoreUnknown=1;K8S_POD_NAME=p");
        assert!(v["path"].as_str().is_some_and(|p| p.contains(':')));
        assert_eq!(v["conf"]["a"], 1);
    }

    #[tokio::test]
    async fn errors_carry_the_plugins_json_and_stderr() {
        let dir = tempfile::tempdir().expect("tmp");
        script(
            dir.path(),
            "failer",
            r#"cat >/dev/null; echo 'bridge went away' >&2; echo '{"cniVersion":"1.0.0","code":11,"msg":"try again","details":"busy"}'; exit 1"#,
        );
        let err = exec(dir.path())
            .run("failer", Op::Del, Some(&target()), b"{}".to_vec())
            .await
            .expect_err("fails");
        let msg = err.to_string();
        assert!(msg.contains("failer DEL"), "{msg}");
        assert!(msg.contains("code 11"), "{msg}");
        assert!(msg.contains("try again: busy"), "{msg}");
        assert!(msg.contains("bridge went away"), "{msg}");

        let err = exec(dir.path())
            .run("nothere", Op::Add, None, Vec::new())
            .await
            .expect_err("missing");
        assert!(err.to_string().contains("no executable"), "{err}");
    }

    #[tokio::test]
    async fn hangs_and_floods_are_cut_off() {
        let dir = tempfile::tempdir().expect("tmp");
        script(dir.path(), "hang", "exec sleep 30");
        let t = std::time::Instant::now();
        let err = exec(dir.path())
            .run("hang", Op::Add, None, Vec::new())
            .await
            .expect_err("timeout");
        assert!(err.to_string().contains("timed out"), "{err}");
        assert!(t.elapsed() < Duration::from_secs(10));
        script(dir.path(), "flood", "exec yes");
        let err = exec(dir.path())
            .run("flood", Op::Add, None, Vec::new())
            .await
            .expect_err("flood");
        assert!(err.to_string().contains("larger than"), "{err}");
    }
}
