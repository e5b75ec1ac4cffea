//! Containers in `corral-shim`, over its real socket protocol: create, start, kill, wait,
//! exec, reopen_log, forget; the CRI log file, the exit file, the OOM flag. Containers
//! run a static busybox (Debian's busybox-static) on an overlay of a temp dir. Needs root;
//! each test prints why it skips otherwise. Every test shuts its shim down (which kills
//! whatever still runs) even when it fails ([`Pod`]'s Drop).

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
const BUSYBOX: &str = "/bin/busybox";
const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "sleep", "true", "false", "printf", "head", "yes", "kill", "ps", "id",
    "tr",
];

/// Why this test cannot run here, if it cannot.
fn skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root".into());
    }
    if !fs::read(BUSYBOX).is_ok_and(|elf| is_static_elf64(&elf)) {
        return Some(format!("needs a static {BUSYBOX} (busybox-static)"));
    }
    None
}

/// A little-endian ELF64 file without a PT_INTERP program header (no dynamic loader).
fn is_static_elf64(elf: &[u8]) -> bool {
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

macro_rules! needs_root_and_busybox {
    () => {
        if let Some(why) = skip_reason() {
            eprintln!("skipping: {why}");
            return;
        }
    };
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A pod state dir, a busybox image and the shim serving them; Drop shuts the shim down
/// (SIGKILL if it does not answer).
struct Pod {
    tmp: tempfile::TempDir,
    shim: Cell<Option<i32>>,
}

impl Pod {
    /// A running shim for a pod of its own (no shared PID namespace).
    fn start() -> Pod {
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

    fn state(&self) -> PathBuf {
        self.tmp.path().join("state")
    }

    fn image(&self) -> PathBuf {
        self.tmp.path().join("image")
    }

    fn client(&self) -> Client {
        Client::connect(&self.state())
    }

    /// Bundle, overlay dirs, exit file and log path for container `id`.
    fn container(&self, id: &str, args: &[&str]) -> Ctr {
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
struct Ctr {
    id: String,
    dir: PathBuf,
    process: Process,
    /// A PID namespace of its own (else the host's: a signal from the host reaches a
    /// process that is not a namespace's init without a handler of its own).
    pid_ns: bool,
    req: CreateContainer,
}

impl Ctr {
    fn log(&self) -> PathBuf {
        self.req.log_path.clone().unwrap()
    }

    /// Write config.json and ask the shim to create the container; the raw answer.
    fn create(&self, client: &mut Client) -> Value {
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
    fn run(&self, client: &mut Client) -> i32 {
        let created = ok(self.create(client));
        let pid = created["pid"].as_i64().expect("a pid") as i32;
        ok(client.call(&Request::StartContainer {
            id: self.id.clone(),
        }));
        pid
    }
}

fn process(args: &[&str], terminal: bool) -> Process {
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
fn make_image(dir: &Path) {
    for sub in ["bin", "proc", "dev", "tmp", "etc"] {
        fs::create_dir_all(dir.join(sub)).unwrap();
    }
    fs::copy(BUSYBOX, dir.join("bin/busybox")).unwrap();
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
}

/// One connection to the shim, speaking JSON lines.
struct Client {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Client {
    fn connect(dir: &Path) -> Client {
        let stream = UnixStream::connect(dir.join("shim.sock")).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    fn send(&mut self, request: &Request) {
        let mut line = serde_json::to_vec(request).unwrap();
        line.push(b'\n');
        self.writer.write_all(&line).unwrap();
    }

    fn recv(&mut self) -> Value {
        let mut answer = String::new();
        self.reader.read_line(&mut answer).expect("an answer");
        serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{answer:?}: {e}"))
    }

    fn call(&mut self, request: &Request) -> Value {
        self.send(request);
        self.recv()
    }

    fn wait(&mut self, id: &str) -> ExitStatus {
        let answer = ok(self.call(&Request::Wait { id: id.into() }));
        serde_json::from_value(answer).unwrap()
    }

    fn status(&mut self) -> StatusReply {
        serde_json::from_value(ok(self.call(&Request::Status))).unwrap()
    }

    fn exec(&mut self, container: &str, id: &str, args: &[&str], timeout_ms: u64) -> Value {
        self.call(&exec_request(container, id, args, timeout_ms))
    }
}

fn exec_request(container: &str, id: &str, args: &[&str], timeout_ms: u64) -> Request {
    Request::Exec(Exec {
        id: id.into(),
        container_id: container.into(),
        process: process(args, false),
        timeout_ms,
        max_output: 16 << 20,
        stream: None,
    })
}

fn ok(answer: Value) -> Value {
    assert_eq!(answer["ok"], true, "{answer}");
    answer
}

fn refused(answer: Value, kind: &str) -> Value {
    assert_eq!(answer["ok"], false, "{answer}");
    assert_eq!(answer["kind"], kind, "{answer}");
    answer
}

fn exec_reply(answer: Value) -> (ExecReply, String, String) {
    let reply: ExecReply = serde_json::from_value(ok(answer)).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let text = |s: &str| String::from_utf8(b64.decode(s).unwrap()).unwrap();
    let (out, err) = (text(&reply.stdout), text(&reply.stderr));
    (reply, out, err)
}

fn comm_of(pid: i32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim_end().to_string())
}

/// Alive and not a zombie.
fn running(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| Some(s.rsplit_once(')')?.1.trim_start().chars().next()? != 'Z'))
        .unwrap_or(false)
}

/// One CRI log line: (stream, tag, text), its timestamp checked.
fn parse_log_line(line: &str) -> (String, String, String) {
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

fn log_lines(path: &Path) -> Vec<(String, String, String)> {
    let text = fs::read_to_string(path).unwrap_or_default();
    assert!(text.is_empty() || text.ends_with('\n'), "{text:?}");
    text.lines().map(parse_log_line).collect()
}

fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn full(stream: &str, text: &str) -> (String, String, String) {
    (stream.into(), "F".into(), text.into())
}

#[test]
fn output_lands_in_the_log_and_the_exit_in_the_exit_file() {
    needs_root_and_busybox!();
    let pod = Pod::start();
    let mut client = pod.client();
    let ctr = pod.container("c1", &["sh", "-c", "echo out; echo err >&2; exit 3"]);
    let created = ok(ctr.create(&mut client));
    let pid = created["pid"].as_i64().unwrap() as i32;
    assert!(running(pid), "the init waits for its start");
    let status = client.status();
    let entry = status.processes.iter().find(|p| p.id == "c1").unwrap();
    assert_eq!((entry.pid, entry.started, &entry.exit), (pid, false, &None));
    // Errors before the start.
    refused(ctr.create(&mut client), "already_exists");
    refused(
        client.call(&Request::StartContainer { id: "nope".into() }),
        "not_found",
    );
    refused(
        client.call(&Request::Kill {
            id: "nope".into(),
            signal: 15,
        }),
        "not_found",
    );
    refused(
        client.call(&Request::Wait { id: "nope".into() }),
        "not_found",
    );

    ok(client.call(&Request::StartContainer { id: "c1".into() }));
    let exit = client.wait("c1");
    assert_eq!(
        (exit.pid, exit.exit_code, exit.signal, exit.oom_killed),
        (pid, 3, None, false)
    );
    let recorded = runtime::shim::exit_file::read(&ctr.req.exit_file)
        .unwrap()
        .expect("an exit file");
    assert_eq!(recorded, exit);
    // The log is complete once the exit is known.
    let mut lines = log_lines(&ctr.log());
    lines.sort();
    assert_eq!(lines, vec![full("stderr", "err"), full("stdout", "out")]);

    let status = client.status();
    let entry = status.processes.iter().find(|p| p.id == "c1").unwrap();
    assert!(entry.started);
    assert_eq!(entry.exit.as_ref(), Some(&exit));
    refused(
        client.call(&Request::StartContainer { id: "c1".into() }),
        "failed_precondition",
    );
    // Killing what has exited is fine; its log is not reopened.
    ok(client.call(&Request::Kill {
        id: "c1".into(),
        signal: 9,
    }));
    refused(
        client.call(&Request::ReopenLog { id: "c1".into() }),
        "failed_precondition",
    );
    // A second wait answers at once.
    assert_eq!(client.wait("c1"), exit);
}

#[test]
fn long_lines_are_cut_into_partials() {
    needs_root_and_busybox!();
    let pod = Pod::start();
    let mut client = pod.client();
    let ctr = pod.container(
        "long",
        &["sh", "-c", "printf '%0100000d' 7; echo; printf 'no end'"],
    );
    ctr.run(&mut client);
    assert_eq!(client.wait("long").exit_code, 0);
    let lines = log_lines(&ctr.log());
    let tags: String = lines.iter().map(|l| l.1.as_str()).collect();
    // 100 000 bytes: six 16 KiB parts and the rest; then the unterminated end as P.
    assert_eq!(
        tags,
        "PPPPPPFP",
        "{:?}",
        lines.iter().map(|l| l.2.len()).collect::<Vec<_>>()
    );
    let line: String = lines[..7].iter().map(|l| l.2.as_str()).collect();
    assert_eq!(line, format!("{}7", "0".repeat(99_999)));
    assert!(lines[..6].iter().all(|l| l.2.len() == 16 * 1024));
    assert_eq!(lines[7], ("stdout".into(), "P".into(), "no end".into()));
}

#[test]
fn tty_output_is_stdout() {
    needs_root_and_busybox!();
    let pod = Pod::start();
    let mut client = pod.client();
    let mut ctr = pod.container("tty", &["sh", "-c", "echo hello; echo oops >&2; exit 4"]);
    ctr.req.tty = true;
    ctr.process = process(&["sh", "-c", "echo hello; echo oops >&2; exit 4"], true);
    ctr.run(&mut client);
    assert_eq!(client.wait("tty").exit_code, 4);
    assert_eq!(
        log_lines(&ctr.log()),
        vec![full("stdout", "hello"), full("stdout", "oops")]
    );
}

#[test]
fn reopen_log_after_rotation() {
    needs_root_and_busybox!();
    let pod = Pod::start();
    let mut client = pod.client();
    let ctr = pod.container("rot", &["sh", "-c", "echo one; sleep 1; echo two"]);
    ctr.run(&mut client);
    let log = ctr.log();
    wait_until("the first line", Duration::from_secs(5), || {
        log_lines(&log).len() == 1
    });
    let rotated = log.with_extension("log.1");
    fs::rename(&log, &rotated).unwrap();
    ok(client.call(&Request::ReopenLog { id: "rot".into() }));
    refused(
        client.call(&Request::ReopenLog { id: "nope".into() }),
        "not_found",
    );
    assert_eq!(client.wait("rot").exit_code, 0);
    assert_eq!(log_lines(&rotated), vec![full("stdout", "one")]);
    assert_eq!(log_lines(&log), vec![full("stdout", "two")]);
}

#[test]
fn kill_and_waits_from_two_connections() {
    needs_root_and_busybox!();
    let pod = Pod::start();
    let mut client = pod.client();
    let mut ctr = pod.container("sleeper", &["sleep", "1000"]);
    ctr.pid_ns = false;
    let pid = ctr.run(&mut client);
    let (mut a, mut b) = (pod.client(), pod.client());
    a.send(&Request::Wait {
        id: "sleeper".into(),
    });
    b.send(&Request::Wait {
        id: "sleeper".into(),
    });
    // Both deferred; this connection is still served meanwhile.
    std::thread::sleep(Duration::from_millis(50));
    assert!(client.status().processes[0].exit.is_none());
    assert!(running(pid));
    ok(client.call(&Request::Kill {
        id: "sleeper".into(),
        signal: 15,
    }));
    for conn in [&mut a, &mut b] {
        let exit: ExitStatus = serde_json::from_value(ok(conn.recv())).unwrap();
        assert_eq!(
            (exit.pid, exit.exit_code, exit.signal),
            (pid, 143, Some(15))
        );
    }
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "reaped");
    refused(
        client.call(&Request::Kill {
            id: "sleeper".into(),
            signal: 99,
        }),
        "invalid_argument",
    );
    // The connections that waited go on serving.
    assert_eq!(a.status().processes.len(), 1);

    // Forget: a live one is refused, an exited one goes, twice is fine.
    let live = pod.container("live", &["sleep", "1000"]);
    live.run(&mut client);
    refused(
        client.call(&Request::Forget { id: "live".into() }),
        "failed_precondition",
    );
    ok(client.call(&Request::Forget {
        id: "sleeper".into(),
    }));
    ok(client.call(&Request::Forget {
        id: "sleeper".into(),
    }));
    let ids: Vec<String> = client
        .status()
        .processes
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(ids, vec!["live".to_string()]);
    refused(
        client.call(&Request::Wait {
            id: "sleeper".into(),
        }),
        "not_found",
    );
    // SIGKILL reaches a namespace's init.
    ok(client.call(&Request::Kill {
        id: "live".into(),
        signal: 9,
    }));
    assert_eq!(client.wait("live").exit_code, 137);
}

#[test]
fn kill_before_start_aborts_the_init() {
    needs_root_and_busybox!();
    let pod = Pod::start();
    let mut client = pod.client();
    let ctr = pod.container("never", &["sh", "-c", "echo should not run"]);
    let pid = ok(ctr.create(&mut client))["pid"].as_i64().unwrap() as i32;
    ok(client.call(&Request::Kill {
        id: "never".into(),
        signal: 9,
    }));
    let exit = client.wait("never");
    assert_eq!(exit.pid, pid);
    assert_ne!(exit.exit_code, 0);
    assert!(!running(pid));
    refused(
        client.call(&Request::StartContainer { id: "never".into() }),
        "failed_precondition",
    );
    assert!(log_lines(&ctr.log()).is_empty());
}

#[test]
fn exec_captures_output_and_exit_codes() {
    needs_root_and_busybox!();
    let pod = Pod::start();
    let mut client = pod.client();
    let ctr = pod.container("box", &["sleep", "1000"]);
    ctr.run(&mut client);

    let (reply, out, err) = exec_reply(client.exec("box", "e1", &["echo", "hi"], 0));
    assert_eq!((reply.exit_code, reply.timed_out), (0, false));
    assert_eq!((out.as_str(), err.as_str()), ("hi\n", ""));

    let (reply, out, err) = exec_reply(client.exec(
        "box",
        "e2",
        &["sh", "-c", "echo to-out; echo to-err >&2; exit 7"],
        0,
    ));
    assert_eq!(reply.exit_code, 7);
    assert_eq!((out.as_str(), err.as_str()), ("to-out\n", "to-err\n"));

    let (reply, _, _) = exec_reply(client.exec("box", "e3", &["nonexistent"], 0));
    assert_eq!(reply.exit_code, 127);

    // An exec in the container's PID namespace sees the container's init as PID 1.
    let (_, out, _) = exec_reply(client.exec("box", "e4", &["cat", "/proc/1/cmdline"], 0));
    assert_eq!(out, "sleep\u{0}1000\u{0}");

    // Answered execs leave no record; their ids may be used again.
    let ids: Vec<String> = client
        .status()
        .processes
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(ids, vec!["box".to_string()]);
    let (reply, out, _) =
        exec_reply(client.exec("box", "e1", &["sh", "-c", "yes | head -c 300000"], 0));
    assert_eq!((reply.exit_code, out.len()), (0, 300_000));

    // Output beyond max_output is dropped, and the process still finishes.
    let mut capped = exec_request(
        "box",
        "e5",
        &["sh", "-c", "yes | head -c 1000000; exit 2"],
        0,
    );
    if let Request::Exec(e) = &mut capped {
        e.max_output = 1000;
    }
    let (reply, out, _) = exec_reply(client.call(&capped));
    assert_eq!((reply.exit_code, out.len()), (2, 1000));

    // A tty exec: everything is stdout, as the terminal wrote it.
    let mut tty = exec_request("box", "e8", &["sh", "-c", "echo a; echo b >&2"], 0);
    if let Request::Exec(e) = &mut tty {
        e.process = process(&["sh", "-c", "echo a; echo b >&2"], true);
    }
    let (reply, out, err) = exec_reply(client.call(&tty));
    assert_eq!(reply.exit_code, 0);
    assert_eq!((out.as_str(), err.as_str()), ("a\r\nb\r\n", ""));

    // The answer comes at the exit, not when a backgrounded child lets go of the pipe.
    let began = Instant::now();
    let (reply, out, _) =
        exec_reply(client.exec("box", "e9", &["sh", "-c", "sleep 5 & echo started"], 0));
    assert_eq!((reply.exit_code, out.as_str()), (0, "started\n"));
    assert!(began.elapsed() < Duration::from_secs(4));

    refused(client.exec("nope", "e6", &["true"], 0), "not_found");
    refused(client.exec("box", "", &["true"], 0), "invalid_argument");

    // In an exited container: refused.
    ok(client.call(&Request::Kill {
        id: "box".into(),
        signal: 9,
    }));
    client.wait("box");
    refused(
        client.exec("box", "e7", &["true"], 0),
        "failed_precondition",
    );
}

#[test]
fn exec_timeout_kills_the_process() {
    needs_root_and_busybox!();
    let pod = Pod::start();
    let mut client = pod.client();
    let ctr = pod.container("box", &["sleep", "1000"]);
    ctr.run(&mut client);

    let mut execer = pod.client();
    let began = Instant::now();
    execer.send(&exec_request("box", "slow", &["sleep", "100"], 500));
    let mut pid = None;
    wait_until("the exec runs", Duration::from_secs(5), || {
        pid = client
            .status()
            .processes
            .iter()
            .find(|p| p.id == "slow")
            .map(|p| p.pid);
        pid.is_some()
    });
    let pid = pid.unwrap();
    assert!(running(pid));
    let (reply, _, _) = exec_reply(execer.recv());
    let took = began.elapsed();
    assert!(reply.timed_out, "{reply:?}");
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert!(!running(pid), "the timed-out exec is gone");
    // The container itself lives on.
    let status = client.status();
    assert_eq!(status.processes.len(), 1);
    assert!(status.processes[0].exit.is_none());

    // The timeout takes the whole tree: a shell's backgrounded child too.
    let (reply, _, _) = exec_reply(client.exec(
        "box",
        "tree",
        &["sh", "-c", "sleep 100 & echo $! > /tmp/child; wait"],
        300,
    ));
    assert!(reply.timed_out);
    let (_, out, _) = exec_reply(client.exec(
        "box",
        "look",
        &[
            "sh",
            "-c",
            "kill -0 $(cat /tmp/child) 2>/dev/null && echo alive || echo gone",
        ],
        0,
    ));
    assert_eq!(out, "gone\n");
}

#[test]
fn oom_kill_is_reported() {
    needs_root_and_busybox!();
    let pod = Pod::start();
    let mut client = pod.client();
    let mut ctr = pod.container("hog", &["sleep", "1000"]);
    let events = ctr.dir.join("memory.events");
    fs::write(&events, "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n").unwrap();
    ctr.req.oom_file = Some(events.clone());
    ctr.run(&mut client);
    // What the kernel would do: count the kill, then SIGKILL.
    fs::write(&events, "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n").unwrap();
    ok(client.call(&Request::Kill {
        id: "hog".into(),
        signal: 9,
    }));
    let exit = client.wait("hog");
    assert_eq!((exit.exit_code, exit.oom_killed), (137, true));
    let recorded = runtime::shim::exit_file::read(&ctr.req.exit_file)
        .unwrap()
        .unwrap();
    assert!(recorded.oom_killed);

    // The same count at exit: no OOM.
    let mut calm = pod.container("calm", &["sleep", "1000"]);
    calm.req.oom_file = Some(events);
    calm.run(&mut client);
    ok(client.call(&Request::Kill {
        id: "calm".into(),
        signal: 9,
    }));
    assert!(!client.wait("calm").oom_killed);
}

#[test]
fn shutdown_stops_containers_and_records_their_exits() {
    needs_root_and_busybox!();
    let pod = Pod::start();
    let mut client = pod.client();
    let mut ctr = pod.container("stubborn", &["sleep", "1000"]);
    ctr.pid_ns = false;
    let pid = ctr.run(&mut client);
    let waiting = pod.container("waiting", &["true"]);
    let waiting_pid = ok(waiting.create(&mut client))["pid"].as_i64().unwrap() as i32;
    let mut waiter = pod.client();
    waiter.send(&Request::Wait {
        id: "stubborn".into(),
    });
    std::thread::sleep(Duration::from_millis(20));
    ok(client.call(&Request::Shutdown { grace_ms: 2000 }));
    let exit: ExitStatus = serde_json::from_value(ok(waiter.recv())).unwrap();
    assert_eq!((exit.exit_code, exit.signal), (143, Some(15)));
    for p in [pid, waiting_pid] {
        assert!(!running(p), "pid {p} survived the shutdown");
    }
    for file in [&ctr.req.exit_file, &waiting.req.exit_file] {
        assert!(
            runtime::shim::exit_file::read(file).unwrap().is_some(),
            "{} written",
            file.display()
        );
    }
    pod.shim.set(None);
}

/// Anonymous RSS of a process in KiB (code pages of the binary left out).
fn rss_kib(pid: i32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("RssAnon:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

#[test]
fn heavy_output_keeps_the_shim_small() {
    needs_root_and_busybox!();
    let pod = Pod::start();
    let shim = pod.shim.get().unwrap();
    let mut client = pod.client();
    let before = rss_kib(shim);
    // 2 MB of two-byte lines on both streams, then a 5 MB line with no end.
    let ctr = pod.container(
        "noisy",
        &[
            "sh",
            "-c",
            "yes | head -c 2000000 & yes | head -c 2000000 >&2; wait; yes | tr -d '\\n' | head -c 5000000",
        ],
    );
    ctr.run(&mut client);
    assert_eq!(client.wait("noisy").exit_code, 0);
    let after = rss_kib(shim);
    println!("shim anonymous RSS: {before} KiB before, {after} KiB after");
    // The 64 KiB read buffer and the spec stay; the output went through.
    assert!(after < before + 1024, "{before} KiB -> {after} KiB");
    let lines = log_lines(&ctr.log());
    let count = |stream: &str, tag: &str, text: &str| {
        lines
            .iter()
            .filter(|l| l.0 == stream && l.1 == tag && l.2 == text)
            .count()
    };
    assert_eq!(count("stdout", "F", "y"), 1_000_000);
    assert_eq!(count("stderr", "F", "y"), 1_000_000);
    let tail: Vec<_> = lines.iter().filter(|l| l.2.starts_with("yy")).collect();
    assert!(tail.iter().all(|l| l.0 == "stdout" && l.1 == "P"));
    assert_eq!(tail.iter().map(|l| l.2.len()).sum::<usize>(), 5_000_000);
    assert_eq!(lines.len(), 2_000_000 + tail.len());
}
