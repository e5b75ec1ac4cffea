//! Streamed exec and attach through `corral-shim` (what corrald's streaming server uses):
//! the fds the shim passes, what the process reads and writes through them, the exit,
//! the kill when the session is dropped, the fan-out of a container's output to every
//! attacher and its CRI log, close_stdin. Needs root and a static busybox (see
//! [`support`]); each test prints why it skips otherwise.

mod support;

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use runtime::container::{resize_pty, ExecExit, StreamFds};
use runtime::shim::protocol::{Exec, Request, Streams, MAX_STREAMS};
use runtime::shim_client::PodShim;
use runtime::ErrorKind;
use support::*;

const ALL: Streams = Streams {
    stdin: true,
    stdout: true,
    stderr: true,
};

fn stream_exec(id: &str, args: &[&str], tty: bool, streams: Streams) -> Exec {
    Exec {
        id: id.into(),
        container_id: "box".into(),
        process: process(args, tty),
        timeout_ms: 0,
        max_output: 0,
        stream: Some(streams),
    }
}

/// Read `fd` (made non-blocking) until `done` says so of what came, or its end; fails
/// after 10 s.
fn read_until(fd: &OwnedFd, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let mut file = File::from(fd.try_clone().unwrap());
    let flags = nix::fcntl::fcntl(
        std::os::fd::AsRawFd::as_raw_fd(&file),
        nix::fcntl::FcntlArg::F_GETFL,
    )
    .unwrap();
    let flags = nix::fcntl::OFlag::from_bits_retain(flags) | nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(
        std::os::fd::AsRawFd::as_raw_fd(&file),
        nix::fcntl::FcntlArg::F_SETFL(flags),
    )
    .unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !done(&got) {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                assert!(
                    Instant::now() < until,
                    "timed out; read so far: {:?}",
                    String::from_utf8_lossy(&got)
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            // A pty master with no slave left.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
            Err(e) => panic!("read: {e}"),
        }
    }
    got
}

fn to_end(fd: &OwnedFd) -> String {
    String::from_utf8(read_until(fd, |_| false)).unwrap()
}

fn contains(text: &'static str) -> impl Fn(&[u8]) -> bool {
    move |got| String::from_utf8_lossy(got).contains(text)
}

fn write(fd: &OwnedFd, bytes: &[u8]) {
    File::from(fd.try_clone().unwrap())
        .write_all(bytes)
        .unwrap();
}

/// A pod with a running container "box" (`sleep`).
fn pod_with_box() -> (Pod, Client) {
    let pod = Pod::start();
    let mut client = pod.client();
    pod.container("box", &["sleep", "100000"]).run(&mut client);
    (pod, client)
}

/// Pids of live processes whose command line is exactly `args`.
fn processes_running(args: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = args
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .filter(|pid| running(*pid))
        .collect()
}

#[test]
fn streamed_exec_passes_its_pipes_and_answers_its_exit() {
    needs_root_and_busybox!();
    let (pod, mut client) = pod_with_box();
    let rt = rt();
    let shim = PodShim::new(&pod.state());
    let exec = stream_exec(
        "s1",
        &["sh", "-c", "echo hi; echo err >&2; exit 7"],
        false,
        Streams {
            stdin: false,
            stdout: true,
            stderr: true,
        },
    );
    let (fds, mut session) = rt.block_on(shim.exec_stream(exec)).expect("exec_stream");
    assert!(fds.stdin.is_none() && fds.pty.is_none(), "{fds:?}");
    assert_eq!(to_end(fds.stdout.as_ref().unwrap()), "hi\n");
    assert_eq!(to_end(fds.stderr.as_ref().unwrap()), "err\n");
    let exit = rt.block_on(session.wait()).unwrap();
    assert_eq!(
        exit,
        ExecExit {
            exit_code: 7,
            message: None
        }
    );
    // Told its exit, the shim keeps no record of it.
    wait_until("the record is dropped", Duration::from_secs(5), || {
        !client.status().processes.iter().any(|p| p.id == "s1")
    });
    drop(session);

    // stdin: `cat` echoes it and ends at its end of file.
    let exec = stream_exec("s2", &["cat"], false, ALL);
    let (mut fds, mut session) = rt.block_on(shim.exec_stream(exec)).expect("exec_stream");
    write(fds.stdin.as_ref().unwrap(), b"hello\n");
    assert_eq!(
        read_until(fds.stdout.as_ref().unwrap(), contains("hello\n")),
        b"hello\n"
    );
    fds.stdin = None;
    assert_eq!(to_end(fds.stdout.as_ref().unwrap()), "");
    assert_eq!(rt.block_on(session.wait()).unwrap().exit_code, 0);

    // An exec id in use is refused.
    let (_fds, _held) = rt
        .block_on(shim.exec_stream(stream_exec("s3", &["sleep", "100"], false, ALL)))
        .unwrap();
    let again = rt.block_on(shim.exec_stream(stream_exec("s3", &["true"], false, ALL)));
    assert_eq!(again.unwrap_err().kind(), ErrorKind::AlreadyExists);
}

#[test]
fn streamed_exec_on_a_terminal_is_resized() {
    needs_root_and_busybox!();
    let (pod, _client) = pod_with_box();
    let rt = rt();
    let shim = PodShim::new(&pod.state());
    let exec = stream_exec("t1", &["sh", "-c", "read x; stty size"], true, ALL);
    let (fds, mut session) = rt.block_on(shim.exec_stream(exec)).expect("exec_stream");
    let StreamFds {
        stdin: None,
        stdout: None,
        stderr: None,
        pty: Some(pty),
    } = fds
    else {
        panic!("one pty expected: {fds:?}");
    };
    resize_pty(&pty, 100, 30).unwrap();
    resize_pty(&pty, 0, 0).unwrap(); // ignored
    write(&pty, b"\n");
    let out = String::from_utf8(read_until(&pty, contains("\n30 100"))).unwrap();
    assert!(
        out.contains("30 100\r\n") || out.ends_with("30 100"),
        "{out:?}"
    );
    assert_eq!(rt.block_on(session.wait()).unwrap().exit_code, 0);
}

#[test]
fn a_command_that_cannot_run_is_an_exit_code_and_a_message() {
    needs_root_and_busybox!();
    let (pod, mut client) = pod_with_box();
    let rt = rt();
    let shim = PodShim::new(&pod.state());
    let exec = stream_exec("m1", &["no-such-command"], false, ALL);
    let (fds, mut session) = rt.block_on(shim.exec_stream(exec)).expect("exec_stream");
    assert!(
        fds.stdin.is_none() && fds.stdout.is_none() && fds.stderr.is_none() && fds.pty.is_none(),
        "{fds:?}"
    );
    let exit = rt.block_on(session.wait()).unwrap();
    assert_eq!(exit.exit_code, 127);
    let message = exit.message.unwrap_or_default();
    assert!(message.contains("no-such-command"), "{message:?}");
    // /etc is a directory: not executable.
    let exec = stream_exec("m2", &["/etc"], false, ALL);
    let (_, mut session) = rt.block_on(shim.exec_stream(exec)).expect("exec_stream");
    let exit = rt.block_on(session.wait()).unwrap();
    assert_eq!(exit.exit_code, 126, "{exit:?}");
    assert!(exit.message.is_some());
    wait_until("no record is left", Duration::from_secs(5), || {
        !client
            .status()
            .processes
            .iter()
            .any(|p| p.id == "m1" || p.id == "m2")
    });
    // ExecSync of the same is unchanged: the shell's message on stderr, 127.
    let answer = ok(client.call(&Request::Exec(Exec {
        stream: None,
        ..stream_exec("m3", &["no-such-command"], false, ALL)
    })));
    assert_eq!(answer["exit_code"], 127, "{answer}");
}

#[test]
fn dropping_the_session_kills_the_exec_tree() {
    needs_root_and_busybox!();
    let (pod, _client) = pod_with_box();
    let rt = rt();
    let shim = PodShim::new(&pod.state());
    let tree = ["sleep", "4321"];
    let exec = stream_exec("k1", &["sh", "-c", "sleep 4321 & sleep 4321"], false, ALL);
    let (fds, mut session) = rt.block_on(shim.exec_stream(exec)).expect("exec_stream");
    wait_until("both sleeps run", Duration::from_secs(5), || {
        processes_running(&tree).len() == 2
    });
    // Dropped while its `wait` is deferred in the shim.
    let waited = rt
        .block_on(async { tokio::time::timeout(Duration::from_millis(200), session.wait()).await });
    assert!(waited.is_err(), "the exec cannot have ended: {waited:?}");
    drop(session);
    wait_until("the exec's tree is gone", Duration::from_secs(2), || {
        processes_running(&tree).is_empty()
    });
    // The pipes' writers are gone with it.
    assert_eq!(to_end(fds.stdout.as_ref().unwrap()), "");
    // Dropped without a wait.
    let exec = stream_exec("k2", &["sleep", "4321"], false, ALL);
    let (_fds, session) = rt.block_on(shim.exec_stream(exec)).expect("exec_stream");
    wait_until("the sleep runs", Duration::from_secs(5), || {
        processes_running(&tree).len() == 1
    });
    drop(session);
    wait_until("the exec is gone", Duration::from_secs(2), || {
        processes_running(&tree).is_empty()
    });
}

#[test]
fn attach_fans_the_output_out_to_every_attacher_and_the_log() {
    needs_root_and_busybox!();
    let pod = Pod::start();
    let mut client = pod.client();
    let mut ctr = pod.container(
        "box",
        &["sh", "-c", "while read l; do echo \"got $l\"; done"],
    );
    ctr.req.stdin = true;
    ctr.run(&mut client);
    let rt = rt();
    let shim = PodShim::new(&pod.state());
    let (one, first) = rt.block_on(shim.attach("box", ALL)).expect("attach");
    let (two, second) = rt.block_on(shim.attach("box", ALL)).expect("attach");
    assert!(!first.tty() && !first.stdin_once());
    for fds in [&one, &two] {
        assert!(
            fds.stdin.is_some() && fds.stdout.is_some() && fds.stderr.is_some(),
            "{fds:?}"
        );
    }
    write(one.stdin.as_ref().unwrap(), b"x\n");
    for fds in [&one, &two] {
        let got = read_until(fds.stdout.as_ref().unwrap(), contains("got x\n"));
        assert_eq!(got, b"got x\n");
    }
    wait_until("the log has it", Duration::from_secs(5), || {
        log_lines(&ctr.log()).contains(&full("stdout", "got x"))
    });

    // The second detaches; the first still gets what follows.
    drop((two, second));
    write(one.stdin.as_ref().unwrap(), b"y\n");
    let got = read_until(one.stdout.as_ref().unwrap(), contains("got y\n"));
    assert_eq!(got, b"got y\n");

    // The container's exit closes the attachers' pipes.
    ok(client.call(&Request::Kill {
        id: "box".into(),
        signal: 9,
    }));
    client.wait("box");
    assert_eq!(to_end(one.stdout.as_ref().unwrap()), "");
    assert_eq!(to_end(one.stderr.as_ref().unwrap()), "");
    drop(first);

    // An exited container cannot be attached to; an unknown one is not found.
    let refused = rt.block_on(shim.attach("box", ALL)).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::FailedPrecondition, "{refused}");
    let missing = rt.block_on(shim.attach("nope", ALL)).unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound, "{missing}");
}

#[test]
fn attach_without_stdin_and_on_a_terminal() {
    needs_root_and_busybox!();
    let pod = Pod::start();
    let mut client = pod.client();
    // Made without stdin: no stdin fd, the output still comes.
    pod.container(
        "plain",
        &["sh", "-c", "while true; do echo tick; sleep 0.1; done"],
    )
    .run(&mut client);
    let rt = rt();
    let shim = PodShim::new(&pod.state());
    let (fds, _session) = rt.block_on(shim.attach("plain", ALL)).expect("attach");
    assert!(fds.stdin.is_none(), "{fds:?}");
    read_until(fds.stdout.as_ref().unwrap(), contains("tick\n"));

    // A tty: stdin is the pty master, all output is stdout.
    let mut tty = pod.container("tty", &["cat"]);
    tty.req.tty = true;
    tty.req.stdin = true;
    tty.process.set_terminal(Some(true));
    tty.run(&mut client);
    let (fds, session) = rt.block_on(shim.attach("tty", ALL)).expect("attach");
    assert!(session.tty());
    assert!(
        fds.stdin.is_some() && fds.stdout.is_some() && fds.stderr.is_none(),
        "{fds:?}"
    );
    write(fds.stdin.as_ref().unwrap(), b"over the pty\n");
    read_until(fds.stdout.as_ref().unwrap(), contains("over the pty\r\n"));

    drop((fds, session));

    // Attach sessions are bounded per pod; a closed one makes room.
    let mut sessions: Vec<_> = (0..MAX_STREAMS - 1)
        .map(|_| rt.block_on(shim.attach("plain", ALL)).expect("attach"))
        .collect();
    let over = rt.block_on(shim.attach("plain", ALL)).unwrap_err();
    assert_eq!(over.kind(), ErrorKind::FailedPrecondition, "{over}");
    sessions.pop();
    wait_until("a session is released", Duration::from_secs(5), || {
        rt.block_on(shim.attach("plain", ALL))
            .map(|s| sessions.push(s))
            .is_ok()
    });
}

#[test]
fn close_stdin_ends_a_cat_container() {
    needs_root_and_busybox!();
    let pod = Pod::start();
    let mut client = pod.client();
    let mut ctr = pod.container("box", &["cat"]);
    ctr.req.stdin = true;
    ctr.req.stdin_once = true;
    ctr.run(&mut client);
    let rt = rt();
    let shim = PodShim::new(&pod.state());
    let (mut fds, mut session) = rt.block_on(shim.attach("box", ALL)).expect("attach");
    assert!(session.stdin_once());
    write(fds.stdin.as_ref().unwrap(), b"a\n");
    read_until(fds.stdout.as_ref().unwrap(), contains("a\n"));
    fds.stdin = None;
    // The shim still holds its end: cat runs on.
    std::thread::sleep(Duration::from_millis(200));
    let status = client.status();
    let cat = status.processes.iter().find(|p| p.id == "box").unwrap();
    assert_eq!(cat.exit, None, "cat ended before close_stdin");
    rt.block_on(session.close_stdin()).expect("close_stdin");
    assert_eq!(client.wait("box").exit_code, 0);
    assert_eq!(to_end(fds.stdout.as_ref().unwrap()), "");
    // Exited: no more attaches.
    let refused = rt.block_on(shim.attach("box", ALL)).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::FailedPrecondition);
}

#[test]
fn a_slow_attacher_loses_output_but_never_holds_up_the_log() {
    needs_root_and_busybox!();
    let pod = Pod::start();
    let mut client = pod.client();
    // 3,000,000 bytes in lines of 100, once released by a line on stdin.
    let line = "a".repeat(99);
    let script = format!("read x; yes {line} | head -c 3000000");
    let mut ctr = pod.container("loud", &["sh", "-c", &script]);
    ctr.req.stdin = true;
    ctr.run(&mut client);
    let rt = rt();
    let shim = PodShim::new(&pod.state());
    let (fds, _session) = rt.block_on(shim.attach("loud", ALL)).expect("attach");
    write(fds.stdin.as_ref().unwrap(), b"go\n");
    // Nobody reads the attacher's pipe until the container has ended.
    assert_eq!(client.wait("loud").exit_code, 0);
    let lines = log_lines(&ctr.log());
    assert_eq!(lines.len(), 30_000, "the log has every line");
    assert!(lines.iter().all(|l| *l == full("stdout", &line)));
    let got = read_until(fds.stdout.as_ref().unwrap(), |_| false);
    assert!(
        !got.is_empty() && got.len() < 3_000_000,
        "the attacher got {} bytes",
        got.len()
    );
}
