//! What the shim test files share: a pod (a running shim in a temp dir) with a static
//! busybox image, containers made over the shim's socket protocol, and small checks.
//! Each test file uses its own part of it.
#![allow(dead_code)]

use std::cell::Cell;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::{
    get_default_mounts, LinuxBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, Process,
    ProcessBuilder, RootBuilder, Spec,
};
use runtime::shim::protocol::{
    CreateContainer, Exec, ExecReply, ExitStatus, Request, RootfsMount, StatusReply,
};
use runtime::shim_client::{self, ShimSpec};
use serde_json::Value;

/// Where Debian's busybox-static puts its static binary.
pub const BUSYBOX: &str = "/bin/busybox";
pub const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "sleep", "true", "false", "printf", "head", "yes", "kill", "ps", "id",
    "tr", "stty",
];

/// Why this test cannot run here, if it cannot.
pub fn skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root".into());
    }
    if !fs::read(BUSYBOX).is_ok_and(|elf| is_static_elf64(&elf)) {
        return Some(format!("needs a static {BUSYBOX} (busybox-static)"));
    }
    None
}

/// A little-endian ELF64 file without a PT_INTERP program header (no dynamic loader).
pub fn is_static_elf64(elf: &[u8]) -> bool {
    if !elf.starts_with(b"\x7fELF\x02\x01") {
        return false;
    }
    let le = |at: usize, len: usize| -> Option<usize> {
        let bytes = elf.get(at..at + len)?;
        Some(bytes.iter().rev().fold(0usize, |n, b| n << 8 | *b as usize))
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) = (le(0x20, 8), le(0x36, 2), le(0x38, 2))
    else {
        return false;
    };
    const PT_INTERP: usize = 3;
    (0..phnum).all(|i| le(phoff + i * phentsize, 4).is_some_and(|t| t != PT_INTERP))
}

#[macro_export]
macro_rules! needs_root_and_busybox {
    () => {
        if let Some(why) = $crate::support::skip_reason() {
            eprintln!("skipping: {why}");
            return;
        }
    };
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A pod state dir, a busybox image and the shim serving them; Drop shuts the shim down
/// (SIGKILL if it does not answer).
pub struct Pod {
    pub tmp: tempfile::TempDir,
    pub shim: Cell<Option<i32>>,
}

impl Pod {
    /// A running shim for a pod of its own (no shared PID namespace).
    pub fn start() -> Pod {
        let base = Path::new("/run/corral-test");
        let tmp = fs::create_dir_all(base)
            .and_then(|()| tempfile::Builder::new().prefix("ctr-").tempdir_in(base))
            .unwrap();
        let pod = Pod {
            tmp,
            shim: Cell::new(None),
        };
        fs::create_dir(pod.state()).unwrap();
        make_image(&pod.image());
        let spec = ShimSpec {
            pod_id: format!(
                "pod-{}",
                pod.tmp.path().file_name().unwrap().to_string_lossy()
            ),
            dir: pod.state(),
            log: Some(pod.tmp.path().join("shim.log")),
            ..ShimSpec::default()
        };
        let handle = rt().block_on(shim_client::spawn(&spec)).expect("spawn");
        pod.shim.set(Some(handle.pid()));
        pod
    }

    pub fn state(&self) -> PathBuf {
        self.tmp.path().join("state")
    }

    pub fn image(&self) -> PathBuf {
        self.tmp.path().join("image")
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.state())
    }

    /// Bundle, overlay dirs, exit file and log path for container `id`.
    pub fn container(&self, id: &str, args: &[&str]) -> Ctr {
        let dir = self.tmp.path().join("containers").join(id);
        for sub in ["bundle/rootfs", "upper", "work"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        Ctr {
            id: id.to_string(),
            dir: dir.clone(),
            process: process(args, false),
            pid_ns: true,
            req: CreateContainer {
                id: id.to_string(),
                bundle: dir.join("bundle"),
                rootfs: RootfsMount {
                    lower: vec![self.image()],
                    upper: dir.join("upper"),
                    work: dir.join("work"),
                    readonly: false,
                },
                exit_file: dir.join("exit"),
                log_path: Some(self.tmp.path().join("logs").join(id).join("0.log")),
                log_dir: Some(self.tmp.path().join("logs")),
                tty: false,
                stdin: false,
                stdin_once: false,
                cgroup_procs: Vec::new(),
                oom_file: None,
            },
        }
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        // Shown for a failing test (libtest captures it otherwise).
        if let Ok(log) = fs::read_to_string(self.tmp.path().join("shim.log")) {
            println!("--- shim log ---\n{log}");
        }
        let Some(pid) = self.shim.get() else {
            return;
        };
        let stopped = UnixStream::connect(self.state().join("shim.sock")).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.write_all(b"{\"op\":\"shutdown\",\"grace_ms\":0}\n")?;
            let mut answer = String::new();
            BufReader::new(s).read_line(&mut answer)?;
            Ok(answer.contains("\"ok\":true"))
        });
        if !matches!(stopped, Ok(true)) && comm_of(pid).as_deref() == Some("corral-shim") {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// One container's files and its create request.
pub struct Ctr {
    pub id: String,
    pub dir: PathBuf,
    pub process: Process,
    /// A PID namespace of its own (else the host's: a signal from the host reaches a
    /// process that is not a namespace's init without a handler of its own).
    pub pid_ns: bool,
    pub req: CreateContainer,
}

impl Ctr {
    pub fn log(&self) -> PathBuf {
        self.req.log_path.clone().unwrap()
    }

    /// Write config.json and ask the shim to create the container; the raw answer.
    pub fn create(&self, client: &mut Client) -> Value {
        let mut namespaces = vec![LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Mount)
            .build()
            .unwrap()];
        if self.pid_ns {
            namespaces.push(
                LinuxNamespaceBuilder::default()
                    .typ(LinuxNamespaceType::Pid)
                    .build()
                    .unwrap(),
            );
        }
        let linux = LinuxBuilder::default()
            .namespaces(namespaces)
            .masked_paths(Vec::<String>::new())
            .readonly_paths(Vec::<String>::new())
            .build()
            .unwrap();
        let mut spec = Spec::default();
        spec.set_hostname(None);
        spec.set_root(Some(RootBuilder::default().path("rootfs").build().unwrap()));
        spec.set_process(Some(self.process.clone()));
        spec.set_mounts(Some(get_default_mounts().into_iter().take(3).collect()));
        spec.set_linux(Some(linux));
        fs::write(
            self.req.bundle.join("config.json"),
            serde_json::to_vec_pretty(&spec).unwrap(),
        )
        .unwrap();
        client.call(&Request::CreateContainer(self.req.clone()))
    }

    /// Create and start; the init's pid.
    pub fn run(&self, client: &mut Client) -> i32 {
        let created = ok(self.create(client));
        let pid = created["pid"].as_i64().expect("a pid") as i32;
        ok(client.call(&Request::StartContainer {
            id: self.id.clone(),
        }));
        pid
    }
}

pub fn process(args: &[&str], terminal: bool) -> Process {
    ProcessBuilder::default()
        .args(args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
        .env(vec!["PATH=/bin".to_string()])
        .cwd("/")
        .terminal(terminal)
        .no_new_privileges(false)
        .build()
        .unwrap()
}

/// The image: a static busybox and its applets, plus the mount points.
pub fn make_image(dir: &Path) {
    for sub in ["bin", "proc", "dev", "tmp", "etc"] {
        fs::create_dir_all(dir.join(sub)).unwrap();
    }
    fs::copy(BUSYBOX, dir.join("bin/busybox")).unwrap();
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
}

/// One connection to the shim, speaking JSON lines.
pub struct Client {
    pub writer: UnixStream,
    pub reader: BufReader<UnixStream>,
}

impl Client {
    pub fn connect(dir: &Path) -> Client {
        let stream = UnixStream::connect(dir.join("shim.sock")).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    pub fn send(&mut self, request: &Request) {
        let mut line = serde_json::to_vec(request).unwrap();
        line.push(b'\n');
        self.writer.write_all(&line).unwrap();
    }

    pub fn recv(&mut self) -> Value {
        let mut answer = String::new();
        self.reader.read_line(&mut answer).expect("an answer");
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{answer:?}: {e}"))
    }

    pub fn call(&mut self, request: &Request) -> Value {
        self.send(request);
        self.recv()
    }

    pub fn wait(&mut self, id: &str) -> ExitStatus {
        let answer = ok(self.call(&Request::Wait { id: id.into() }));
        serde_json::from_value(answer).unwrap()
    }

    pub fn status(&mut self) -> StatusReply {
        serde_json::from_value(ok(self.call(&Request::Status))).unwrap()
    }

    pub fn exec(&mut self, container: &str, id: &str, args: &[&str], timeout_ms: u64) -> Value {
        self.call(&exec_request(container, id, args, timeout_ms))
    }
}

pub fn exec_request(container: &str, id: &str, args: &[&str], timeout_ms: u64) -> Request {
    Request::Exec(Exec {
        id: id.into(),
        container_id: container.into(),
        process: process(args, false),
        timeout_ms,
        max_output: 16 << 20,
        stream: None,
    })
}

pub fn ok(answer: Value) -> Value {
    assert_eq!(answer["ok"], true, "{answer}");
    answer
}

pub fn refused(answer: Value, kind: &str) -> Value {
    assert_eq!(answer["ok"], false, "{answer}");
    assert_eq!(answer["kind"], kind, "{answer}");
    answer
}

pub fn exec_reply(answer: Value) -> (ExecReply, String, String) {
    let reply: ExecReply = serde_json::from_value(ok(answer)).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let text = |s: &str| String::from_utf8(b64.decode(s).unwrap()).unwrap();
    let (out, err) = (text(&reply.stdout), text(&reply.stderr));
    (reply, out, err)
}

pub fn comm_of(pid: i32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim_end().to_string())
}

/// Alive and not a zombie.
pub fn running(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| Some(s.rsplit_once(')')?.1.trim_start().chars().next()? != 'Z'))
        .unwrap_or(false)
}

/// One CRI log line: (stream, tag, text), its timestamp checked.
pub fn parse_log_line(line: &str) -> (String, String, String) {
    let mut parts = line.splitn(4, ' ');
    let (ts, stream, tag) = (
        parts.next().unwrap(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let text = parts
        .next()
        .unwrap_or_else(|| panic!("short line {line:?}"));
    // 2006-01-02T15:04:05.999999999Z
    let shape: String = ts
        .chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    assert_eq!(
        shape, "9999-99-99T99:99:99.999999999Z",
        "timestamp of {line:?}"
    );
    assert!(stream == "stdout" || stream == "stderr", "{line:?}");
    assert!(tag == "F" || tag == "P", "{line:?}");
    (stream.to_string(), tag.to_string(), text.to_string())
}

pub fn log_lines(path: &Path) -> Vec<(String, String, String)> {
    let text = fs::read_to_string(path).unwrap_or_default();
    assert!(text.is_empty() || text.ends_with('\n'), "{text:?}");
    text.lines().map(parse_log_line).collect()
}

pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn full(stream: &str, text: &str) -> (String, String, String) {
    (stream.into(), "F".into(), text.into())
}
