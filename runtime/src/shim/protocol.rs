//! The wire protocol between corrald and `corral-shim`.
//!
//! Newline-delimited JSON over the unix socket `<dir>/shim.sock`: each request is one line,
//! each answer is one line, in order, several requests per connection and several
//! connections at once. A request is an object tagged by `op`:
//!
//! ```text
//! {"op":"ping"}                    -> {"ok":true,"pid":41,"pause_pid":42}
//! {"op":"status"}                  -> {"ok":true,"pid":41,"pod_id":"..","pause_pid":42,"processes":[..]}
//! {"op":"shutdown","grace_ms":500} -> {"ok":true}            (then the shim exits)
//! anything that fails              -> {"ok":false,"error":"..","kind":"invalid_argument","field":"op"}
//! ```
//!
//! Success answers are `{"ok":true}` merged with the op's reply struct ([`PingReply`],
//! [`StatusReply`], [`Empty`]); failures are [`ErrorReply`]. A reader looks at `ok` first,
//! then decodes the rest as the reply type of the op it sent; unknown fields are ignored
//! both ways, so either side may add optional fields without breaking the other.
//!
//! Container operations, keyed by the container id the shim tracks in its process table
//! ([`ProcessStatus::id`]):
//!
//! ```text
//! {"op":"create_container",..CreateContainer} -> {"ok":true,"pid":77}   (blocked before execve)
//! {"op":"start_container","id":".."}           -> {"ok":true}            (execve done)
//! {"op":"kill","id":"..","signal":15}          -> {"ok":true}
//! {"op":"wait","id":".."}                      -> ExitStatus, deferred until the exit
//! {"op":"exec",..Exec}                         -> ExecReply, deferred until the exit or timeout
//! {"op":"reopen_log","id":".."}                -> {"ok":true}
//! {"op":"forget","id":".."}                    -> {"ok":true}            (drop an exited one)
//! ```
//!
//! Streaming (kubectl/crictl exec -it and attach): the data never flows through the shim.
//! It makes the pipes (or the pty) and passes corrald's ends over this socket with
//! `SCM_RIGHTS`, attached to the sendmsg that carries the first byte of the answer line;
//! `fds` names them in the order they arrive. The connection then stays open and owns the
//! stream: when it closes, a streamed exec still running is SIGKILLed (its whole process
//! tree) and an attacher is removed.
//!
//! ```text
//! {"op":"exec",..Exec,"stream":{"stdin":true,"stdout":true,"stderr":true}}
//!     -> {"ok":true,"pid":N,"fds":["stdin","stdout","stderr"]}       at once (StreamReply)
//!     -> {"ok":true,"pid":N,"fds":["pty"]}                          with process.terminal
//!     -> {"ok":true,"pid":N,"fds":[],"exit_code":127,"message":".."}  cannot be executed
//! {"op":"wait","id":<exec id>}     (same connection) -> ExitStatus at its exit
//! {"op":"attach","id":"..","stdin":true,"stdout":true,"stderr":true}
//!     -> {"ok":true,"fds":["stdin","stdout","stderr"],"tty":false,"stdin_once":true}
//! {"op":"close_stdin","id":".."}                     -> {"ok":true}
//! ```
//!
//! A streamed exec's fds are corrald's ends of fresh pipes (only the streams asked for; the
//! others are /dev/null), or the pty master once as `pty` (stdin written to it, output read
//! from it, resized with TIOCSWINSZ). A command that is missing (127) or not executable
//! (126) is a success answer with `exit_code`, `message` and no fds; nothing more is owed
//! (no `wait` is needed, and its record goes once it is reaped). `timeout_ms` and `max_output` do not apply to a
//! streamed exec. Its exit is kept until the owning connection has been answered a `wait`
//! (or closes); streamed execs are bounded per pod ([`MAX_STREAMS`]).
//!
//! `attach` (to a running container, else `failed_precondition`) answers `stdin` (a dup of
//! the shim's write end of the container's stdin pipe, or of the pty master for a tty;
//! absent, not an error, when the container was made without stdin or its stdin was
//! closed), and `stdout`/`stderr` (read ends of new pipes; a tty has only `stdout`). Every
//! output chunk the shim reads afterwards goes to the CRI log and, without blocking, to each
//! attacher's pipe (1 MiB where the kernel allows it); a chunk that does not fit is dropped
//! for that attacher only, and an attacher whose reader has gone (EPIPE) is removed. The
//! pipes close (EOF for the reader) once the container has exited and its output has been
//! drained. Attach sessions are bounded per pod ([`MAX_STREAMS`]). The fds share their open
//! file description with the shim's: the pty master must stay O_NONBLOCK.
//!
//! `close_stdin` closes the shim's own write end of the container's stdin pipe (StdinOnce:
//! once every attacher's dup is closed too, the container reads end of file); later
//! attaches get no stdin. For a tty it only marks stdin closed: the pty carries the output.
//!
//! An op may defer its answer (as `shutdown` does); the shim keeps serving other
//! connections meanwhile, and answers on one connection stay in request order.
//!
//! Failures per op (`kind`): an unknown id is `not_found` (but `forget` of one is
//! success); `create_container` of an id in use is `already_exists`; `start_container` of a
//! started or exited container, `reopen_log` of an exited one, `forget` of a live one, an
//! `exec` in a container that is not running, and container ops while the shim stops are
//! `failed_precondition`; a bad spec or request field is `invalid_argument` with `field`.
//! `wait` answers once the container's output has been read into its log and its exit
//! file written (with `oom_killed` decided); `exec` answers at the process's exit with
//! what its pipes held then (a backgrounded child keeping them open is not waited for), or
//! with `timed_out` once its timeout has SIGKILLed it and its descendants.
//!
//! The same JSON line is the shim's readiness report on its ready pipe: a ping answer on
//! success, an [`ErrorReply`] on failure.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The socket the shim listens on, inside its pod state dir.
pub const SOCKET_FILE: &str = "shim.sock";
/// The shim's pid, written atomically once it is about to serve.
pub const PID_FILE: &str = "shim.pid";
/// Pins the pod's PID namespace (a bind mount of the pause's `/proc/<pid>/ns/pid`).
pub const PIDNS_FILE: &str = "pidns";
/// Environment variable naming the fd the shim reports readiness on (default: 1).
pub const READY_FD_ENV: &str = "CORRAL_SHIM_READY_FD";
/// The process name (`/proc/<pid>/comm`) of every shim.
pub const SHIM_COMM: &str = "corral-shim";
/// The process name of the pause.
pub const PAUSE_COMM: &str = "corral-pause";
/// The longest request or answer line either side accepts. An exec carries its process:
/// the container's environment and the command, each up to 1 MiB as the CRI layer bounds
/// them (cri-server's convert/limits.rs), JSON-escaped (up to 6 bytes a byte): 16 MiB.
pub const MAX_LINE: usize = 16 << 20;
/// The longest answer corrald accepts: an exec's two capped outputs, base64, plus slack.
pub const MAX_ANSWER: usize = 48 << 20;
/// ExecSync's cap on each of stdout and stderr, as kubelet's.
pub const MAX_EXEC_OUTPUT: usize = 16 << 20;
/// The [`ProcessStatus::id`] of the pause.
pub const PAUSE_ID: &str = "pause";
/// Streamed execs, and attach sessions, each at most this many per pod at a time.
pub const MAX_STREAMS: usize = 64;

/// One request line. New operations are new variants; the tag is the `op` field.
// One request lives at a time, briefly: boxing the large variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Liveness and identity: answers [`PingReply`].
    Ping,
    /// The process table: answers [`StatusReply`].
    Status,
    /// Stop the pod's processes and exit: SIGTERM everything the shim started, SIGKILL
    /// what is left after `grace_ms`, unpin the PID namespace, answer [`Empty`], exit.
    Shutdown {
        #[serde(default)]
        grace_ms: u64,
    },
    /// Make a container's init, blocked right before `execve`: answers [`CreateReply`].
    CreateContainer(CreateContainer),
    /// Release a created container's init into `execve`: answers [`Empty`] once the exec
    /// happened, or the reason it failed.
    StartContainer { id: String },
    /// Send `signal` to a container's init (or an exec's process): answers [`Empty`]; a
    /// process that has already exited is success.
    Kill { id: String, signal: i32 },
    /// Answer the process's [`ExitStatus`] once it has exited (at once if it has).
    Wait { id: String },
    /// Run a process inside a running container, capture its output: answers [`ExecReply`]
    /// when it exits or its timeout kills it. With [`Exec::stream`]: answers
    /// [`StreamReply`] at once, with fds.
    Exec(Exec),
    /// Reopen the container's CRI log file (after kubelet rotated it): answers [`Empty`].
    ReopenLog { id: String },
    /// Drop an exited process from the table (the container was removed): answers [`Empty`].
    Forget { id: String },
    /// Stream a running container's stdio: answers [`AttachReply`] with fds.
    Attach(Attach),
    /// Close the shim's write end of the container's stdin: answers [`Empty`].
    CloseStdin { id: String },
}

impl Request {
    /// The op name, as it appears on the wire.
    pub fn op(&self) -> &'static str {
        match self {
            Request::Ping => "ping",
            Request::Status => "status",
            Request::Shutdown { .. } => "shutdown",
            Request::CreateContainer(_) => "create_container",
            Request::StartContainer { .. } => "start_container",
            Request::Kill { .. } => "kill",
            Request::Wait { .. } => "wait",
            Request::Exec(_) => "exec",
            Request::ReopenLog { .. } => "reopen_log",
            Request::Forget { .. } => "forget",
            Request::Attach(_) => "attach",
            Request::CloseStdin { .. } => "close_stdin",
        }
    }
}

/// Everything the shim needs to make a container's init.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateContainer {
    /// The container id; the key of every later op.
    pub id: String,
    /// The bundle dir: `config.json` (the OCI runtime spec corrald wrote) and the empty
    /// `rootfs` dir the overlay is mounted on, inside the container's own mount namespace.
    pub bundle: PathBuf,
    /// The overlay that becomes the root filesystem.
    pub rootfs: RootfsMount,
    /// Where the exit is recorded ([`ExitStatus`] as JSON, written atomically).
    pub exit_file: PathBuf,
    /// The CRI log file; its parent dirs are made if missing. None: output is discarded.
    #[serde(default)]
    pub log_path: Option<PathBuf>,
    /// The pod's log directory, which `log_path` starts with: the file is opened beneath
    /// it, never through a symlink out of it (nor when reopened). None: `log_path` is
    /// opened as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_dir: Option<PathBuf>,
    #[serde(default)]
    pub tty: bool,
    /// Keep a pipe on the container's stdin (for attach); /dev/null otherwise.
    #[serde(default)]
    pub stdin: bool,
    #[serde(default)]
    pub stdin_once: bool,
    /// `cgroup.procs` files (one per v1 hierarchy, or the one v2 file) the init is written
    /// into before it runs anything of the container's.
    #[serde(default)]
    pub cgroup_procs: Vec<PathBuf>,
    /// The container's `memory.events` (v2) or `memory.oom_control` (v1): its `oom_kill`
    /// count, read at create and at exit, tells whether the OOM killer ended it.
    #[serde(default)]
    pub oom_file: Option<PathBuf>,
}

/// An overlay: `lower` dirs topmost first (may be a single dir, then no upper is needed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootfsMount {
    pub lower: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    /// Mount the overlay read-only (CRI readonly_rootfs).
    #[serde(default)]
    pub readonly: bool,
}

/// Answer to [`Request::CreateContainer`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateReply {
    /// The init's host pid.
    pub pid: i32,
}

/// A process to run inside a running container (ExecSync).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exec {
    /// The exec's own id, unique within the shim while it runs.
    pub id: String,
    pub container_id: String,
    /// The OCI process to run: the container's own (user, capabilities, no_new_privs, env,
    /// cwd, rlimits) with the exec's args; the container's seccomp profile applies too.
    pub process: oci_spec::runtime::Process,
    /// 0: no timeout. When it passes, the process and every descendant get SIGKILL and
    /// the answer has `timed_out`.
    #[serde(default)]
    pub timeout_ms: u64,
    /// Each of stdout and stderr is cut at this many bytes (kubelet: 16 MiB).
    pub max_output: usize,
    /// Stream instead of capturing: answered at once with fds ([`StreamReply`]). Absent:
    /// ExecSync's capture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<Streams>,
}

/// Which stdio streams are wanted, for a streamed exec or an attach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Streams {
    #[serde(default)]
    pub stdin: bool,
    #[serde(default)]
    pub stdout: bool,
    #[serde(default)]
    pub stderr: bool,
}

/// Answer to a streamed [`Request::Exec`]; the fds come with it (`SCM_RIGHTS`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamReply {
    /// The exec's host pid.
    pub pid: i32,
    /// The names of the fds attached, in order: `stdin`, `stdout`, `stderr`, or `pty`.
    #[serde(default)]
    pub fds: Vec<String>,
    /// Set when the command could not be executed (127 missing, 126 not executable):
    /// there are no fds and no exit to wait for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why the command could not be executed, as a shell would say it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Stream a running container's stdio.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attach {
    /// The container id.
    pub id: String,
    #[serde(flatten)]
    pub streams: Streams,
}

/// Answer to [`Request::Attach`]; the fds come with it (`SCM_RIGHTS`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachReply {
    /// The names of the fds attached, in order: `stdin`, `stdout`, `stderr`.
    #[serde(default)]
    pub fds: Vec<String>,
    /// The container has a terminal: its output is one raw stream (`stdout`).
    #[serde(default)]
    pub tty: bool,
    /// The container's stdin is to be closed after the first attach's stdin ends.
    #[serde(default)]
    pub stdin_once: bool,
}

/// Answer to [`Request::Exec`]. Output is base64 so that any bytes survive JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecReply {
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
    #[serde(default)]
    pub timed_out: bool,
}

/// A success answer: `{"ok":true}` merged with the op's reply.
#[derive(Debug, Serialize)]
pub struct Success<'a, T: Serialize> {
    pub ok: bool,
    #[serde(flatten)]
    pub reply: &'a T,
}

impl<'a, T: Serialize> Success<'a, T> {
    pub fn new(reply: &'a T) -> Self {
        Success { ok: true, reply }
    }
}

/// A reply with nothing to say beyond `ok`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// Answer to [`Request::Ping`] (and the readiness report).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingReply {
    /// The shim's pid.
    pub pid: i32,
    /// The pause's host pid, when the pod shares its PID namespace and the pause is alive.
    pub pause_pid: Option<i32>,
}

/// Answer to [`Request::Status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReply {
    pub pid: i32,
    pub pod_id: String,
    pub pause_pid: Option<i32>,
    /// True once a shutdown (or SIGTERM) has begun.
    #[serde(default)]
    pub stopping: bool,
    /// Every process the shim started and tracks, live or exited.
    pub processes: Vec<ProcessStatus>,
}

/// One tracked process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessStatus {
    /// [`PAUSE_ID`] for the pause; a container or exec id later.
    pub id: String,
    /// Host pid.
    pub pid: i32,
    /// Where the exit is recorded on disk, if anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_file: Option<std::path::PathBuf>,
    /// None while the process runs.
    pub exit: Option<ExitStatus>,
    /// For a container: whether StartContainer has released it into `execve`.
    #[serde(default)]
    pub started: bool,
}

/// How a process ended; also the content of an exit file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    pub pid: i32,
    /// The exit code, or 128 + the signal that killed it.
    pub exit_code: i32,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// RFC 3339 UTC with nanoseconds.
    pub finished_at: String,
    /// The kernel's OOM killer ended it (the cgroup's `oom_kill` count grew while it ran).
    #[serde(default)]
    pub oom_killed: bool,
}

/// A failure answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// Always false.
    pub ok: bool,
    pub error: String,
    pub kind: ErrorCode,
    /// The request field at fault, for [`ErrorCode::InvalidArgument`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ErrorReply {
    pub fn new(kind: ErrorCode, error: impl Into<String>) -> Self {
        ErrorReply {
            ok: false,
            error: error.into(),
            kind,
            field: None,
        }
    }

    pub fn invalid(field: impl Into<String>, error: impl Into<String>) -> Self {
        ErrorReply {
            field: Some(field.into()),
            ..ErrorReply::new(ErrorCode::InvalidArgument, error)
        }
    }
}

/// The kind of a failure, mirroring `crate::ErrorKind` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    Unavailable,
    /// Also what an unknown code from a newer shim decodes as.
    #[serde(other)]
    Internal,
}

/// Encode a success answer as one line (with its newline).
pub fn encode_success<T: Serialize>(reply: &T) -> Vec<u8> {
    let mut line = serde_json::to_vec(&Success::new(reply))
        .unwrap_or_else(|e| encode_error(&ErrorReply::new(ErrorCode::Internal, e.to_string())));
    if line.last() != Some(&b'\n') {
        line.push(b'\n');
    }
    line
}

/// Encode a failure answer as one line (with its newline).
pub fn encode_error(err: &ErrorReply) -> Vec<u8> {
    let mut line = serde_json::to_vec(err).unwrap_or_else(|_| {
        br#"{"ok":false,"error":"unencodable error","kind":"internal"}"#.to_vec()
    });
    line.push(b'\n');
    line
}

/// Decode one answer line as the reply of the op that was sent.
pub fn decode_answer<T: serde::de::DeserializeOwned>(line: &[u8]) -> Result<T, AnswerError> {
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| AnswerError::Malformed(e.to_string()))?;
    match value.get("ok").and_then(|ok| ok.as_bool()) {
        Some(true) => {
            serde_json::from_value(value).map_err(|e| AnswerError::Malformed(e.to_string()))
        }
        Some(false) => Err(AnswerError::Refused(
            serde_json::from_value(value).map_err(|e| AnswerError::Malformed(e.to_string()))?,
        )),
        None => Err(AnswerError::Malformed("answer has no boolean `ok`".into())),
    }
}

/// Why an answer line did not decode into a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerError {
    /// Not JSON, or not the reply shape expected.
    Malformed(String),
    /// The shim answered `ok: false`.
    Refused(ErrorReply),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_on_the_wire() {
        let cases: &[(&str, Request)] = &[
            (r#"{"op":"ping"}"#, Request::Ping),
            (r#"{"op":"status"}"#, Request::Status),
            (
                r#"{"op":"shutdown","grace_ms":250}"#,
                Request::Shutdown { grace_ms: 250 },
            ),
            (r#"{"op":"shutdown"}"#, Request::Shutdown { grace_ms: 0 }),
            (
                r#"{"grace_ms":7,"op":"shutdown","later":1}"#,
                Request::Shutdown { grace_ms: 7 },
            ),
        ];
        for (line, want) in cases {
            let got: Request = serde_json::from_str(line).unwrap();
            assert_eq!(&got, want, "{line}");
            let again: Request =
                serde_json::from_slice(&serde_json::to_vec(want).unwrap()).unwrap();
            assert_eq!(&again, want);
        }
        let attach = Request::Attach(Attach {
            id: "c".into(),
            streams: Streams {
                stdin: true,
                stdout: true,
                stderr: false,
            },
        });
        let line = serde_json::to_string(&attach).unwrap();
        assert_eq!(
            line,
            r#"{"op":"attach","id":"c","stdin":true,"stdout":true,"stderr":false}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), attach);
        let short: Request = serde_json::from_str(r#"{"op":"attach","id":"c"}"#).unwrap();
        assert_eq!(
            short,
            Request::Attach(Attach {
                id: "c".into(),
                streams: Streams::default()
            })
        );
        let close: Request = serde_json::from_str(r#"{"op":"close_stdin","id":"c"}"#).unwrap();
        assert_eq!(close, Request::CloseStdin { id: "c".into() });
        assert_eq!(close.op(), "close_stdin");

        // An ExecSync request is what it was: no `stream` key.
        let mut exec = Exec {
            id: "e".into(),
            container_id: "c".into(),
            process: oci_spec::runtime::Process::default(),
            timeout_ms: 0,
            max_output: 5,
            stream: None,
        };
        let line = serde_json::to_string(&Request::Exec(exec.clone())).unwrap();
        assert!(!line.contains("stream"), "{line}");
        exec.stream = Some(Streams {
            stdin: false,
            stdout: true,
            stderr: true,
        });
        let line = serde_json::to_string(&Request::Exec(exec.clone())).unwrap();
        assert!(
            line.contains(r#""stream":{"stdin":false,"stdout":true,"stderr":true}"#),
            "{line}"
        );
        assert_eq!(
            serde_json::from_str::<Request>(&line).unwrap(),
            Request::Exec(exec)
        );

        for bad in [
            r#"{"op":"frobnicate"}"#,
            r#"{"no":"op"}"#,
            "[1]",
            "ping",
            r#"{"op":"shutdown","grace_ms":-1}"#,
        ] {
            assert!(serde_json::from_str::<Request>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn answers_on_the_wire() {
        let ping = PingReply {
            pid: 5,
            pause_pid: None,
        };
        let line = encode_success(&ping);
        assert_eq!(line, b"{\"ok\":true,\"pid\":5,\"pause_pid\":null}\n");
        assert_eq!(decode_answer::<PingReply>(&line).unwrap(), ping);
        assert_eq!(encode_success(&Empty {}), b"{\"ok\":true}\n");
        assert_eq!(decode_answer::<Empty>(b"{\"ok\":true}").unwrap(), Empty {});

        let started = StreamReply {
            pid: 9,
            fds: vec!["stdin".into(), "stdout".into()],
            exit_code: None,
            message: None,
        };
        let line = encode_success(&started);
        assert_eq!(
            line,
            b"{\"ok\":true,\"pid\":9,\"fds\":[\"stdin\",\"stdout\"]}\n"
        );
        assert_eq!(decode_answer::<StreamReply>(&line).unwrap(), started);
        let missing = StreamReply {
            pid: 9,
            fds: Vec::new(),
            exit_code: Some(127),
            message: Some("exec: \"x\": no such file or directory".into()),
        };
        assert_eq!(
            decode_answer::<StreamReply>(&encode_success(&missing)).unwrap(),
            missing
        );
        let attached = AttachReply {
            fds: vec!["stdout".into()],
            tty: true,
            stdin_once: false,
        };
        assert_eq!(
            encode_success(&attached),
            b"{\"ok\":true,\"fds\":[\"stdout\"],\"tty\":true,\"stdin_once\":false}\n"
        );

        let err = ErrorReply::invalid("op", "unknown op");
        let line = encode_error(&err);
        assert_eq!(
            decode_answer::<Empty>(&line),
            Err(AnswerError::Refused(err))
        );
        let newer = br#"{"ok":false,"error":"x","kind":"resource_exhausted"}"#;
        match decode_answer::<Empty>(newer) {
            Err(AnswerError::Refused(e)) => assert_eq!(e.kind, ErrorCode::Internal),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decode_answer::<Empty>(b"{}"),
            Err(AnswerError::Malformed(_))
        ));
        assert!(matches!(
            decode_answer::<PingReply>(b"{\"ok\":true}"),
            Err(AnswerError::Malformed(_))
        ));
    }
}
