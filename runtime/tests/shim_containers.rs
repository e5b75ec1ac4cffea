//! Containers in `corral-shim`, over its real socket protocol: create, start, kill, wait,
//! exec, reopen_log, forget; the CRI log file, the exit file, the OOM flag. Containers
//! run a static busybox (Debian's busybox-static) on an overlay of a temp dir. Needs root;
//! each test prints why it skips otherwise. Every test shuts its shim down (which kills
//! whatever still runs) even when it fails ([`Pod`]'s Drop).

mod support;

use std::fs;
use std::time::{Duration, Instant};

use std::path::Path;

use runtime::shim::protocol::{ExitStatus, Request};
use support::*;

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
